/**
 * A link emulator for tests and benchmarks: a TCP proxy that makes loopback behave like a
 * long, thin, unreliable link (this machine has no `tc netem`). Each host gets a *front*,
 * a port that forwards to the host's real peer port; the host advertises the front
 * (`--advertise`), so every connection to it passes through the emulator. The front dials
 * the host from the IP address the connection came from, so that the host's check of the
 * peer's address (its host record) holds exactly as without the emulator.
 *
 * Each direction between two IP addresses is one shared link (all connections between
 * the two hosts share its bandwidth, as on a real line):
 *
 * - **rate**: a byte takes 8/rate s to go out; the link serialises chunks one after the
 *   other (a token bucket without burst); 0 = unlimited.
 * - **connection rate** (optional): each connection is serialised at most this fast too,
 *   as if one TCP window over the round trip capped it; several connections beat it.
 * - **buffer**: bytes accepted but not yet serialised; above it the senders' sockets are
 *   paused (the sender's TCP window fills: congestion shows as a slow, full pipe).
 * - **delay** and **jitter**: a chunk arrives delay + U[0, jitter] ms after it went out,
 *   never before the chunk sent before it on the same connection (TCP keeps order).
 * - **stall(ms)**: the link goes silent; what is in flight and what is sent meanwhile
 *   arrives after the stall (as TCP would retransmit it). **endStall()** ends it early.
 * - **blackhole**: nothing passes, new connections hang; connections open through it are
 *   reset when it ends (their streams lost bytes).
 * - **reset**: every connection through the link is reset (RST) at once.
 *
 * Jitter is drawn from a seeded source, so a run is reproducible as far as timers allow.
 * Every queue is bounded: unsent bytes by `bufferBytes`, bytes in flight by rate × delay.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Random } from '../../src/core/random.js';

export interface DirectionSpec {
  /** One-way delay in ms. */
  readonly delayMs: number;
  /** Extra delay, uniform in [0, jitterMs]. */
  readonly jitterMs: number;
  /** Bits per second; 0 = unlimited. */
  readonly rateBitsPerS: number;
  /** Bytes the link queues before it pushes back on senders. */
  readonly bufferBytes: number;
  /** Bits per second one connection gets at most (as one TCP window over a long round trip would allow); 0 or absent = the link's rate. */
  readonly connectionRateBitsPerS?: number;
}

export const loopbackSpec: DirectionSpec = { delayMs: 0, jitterMs: 0, rateBitsPerS: 0, bufferBytes: 4 * 1024 * 1024 };

/** A symmetric link with round trip `rttMs` and `mbit` Mbit/s each way; the buffer holds about 20 ms of data. */
export function wanSpec(rttMs: number, mbit: number, jitterMs = 0): DirectionSpec {
  const rateBitsPerS = mbit * 1_000_000;
  return { delayMs: rttMs / 2, jitterMs, rateBitsPerS, bufferBytes: Math.max(256 * 1024, Math.round((rateBitsPerS / 8) * 0.02)) };
}

interface Pending {
  readonly chunk: Buffer;
  readonly deliverAtMs: number;
}

/** One direction of one TCP connection: its delivery queue, in order. */
class Flow {
  private readonly queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastDeliverAtMs = 0;
  inFlightBytes = 0;
  /** When this connection's own serialiser is free (the connection rate). */
  freeAtMs = 0;
  /** The destination's socket buffer is full: the source waits for its drain. */
  blocked = false;

  constructor(
    readonly source: Socket,
    private readonly destination: Socket,
    private readonly direction: Direction,
  ) {}

  push(chunk: Buffer, deliverAtMs: number): void {
    const at = Math.max(deliverAtMs, this.lastDeliverAtMs);
    this.lastDeliverAtMs = at;
    this.queue.push({ chunk, deliverAtMs: at });
    this.inFlightBytes += chunk.length;
    if (this.queue.length === 1) this.arm();
  }

  /** The link's silence changed: deliver when due now (a pending delivery waited for the old end of a stall). */
  rearm(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.arm();
  }

  drop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.inFlightBytes = 0;
  }

  private arm(): void {
    const head = this.queue[0];
    if (head === undefined) return;
    const dueMs = Math.max(head.deliverAtMs, this.direction.link.silentUntilMs);
    this.timer = setTimeout(() => this.deliver(), Math.max(0, dueMs - performance.now()));
  }

  private deliver(): void {
    this.timer = undefined;
    const link = this.direction.link;
    if (link.blackholed) return this.drop();
    const now = performance.now();
    if (now < link.silentUntilMs) return this.arm();
    while (this.queue.length > 0 && this.queue[0]!.deliverAtMs <= now) {
      const { chunk } = this.queue.shift()!;
      this.inFlightBytes -= chunk.length;
      this.direction.deliveredBytes += chunk.length;
      if (!this.destination.destroyed && !this.destination.write(chunk) && !this.blocked) {
        this.blocked = true;
        this.source.pause();
        this.destination.once('drain', () => {
          this.blocked = false;
          this.direction.maybeResume();
        });
      }
    }
    this.direction.maybeResume();
    this.arm();
  }
}

/** One direction of a link: the serialiser shared by every connection between the two addresses. */
class Direction {
  private freeAtMs = 0;
  /** Bytes accepted and not yet serialised. */
  private unsentBytes = 0;
  readonly flows = new Set<Flow>();
  deliveredBytes = 0;
  spec: DirectionSpec;

  constructor(readonly link: Link, spec: DirectionSpec) {
    this.spec = spec;
  }

  add(flow: Flow): void {
    this.flows.add(flow);
  }

  remove(flow: Flow): void {
    flow.drop();
    this.flows.delete(flow);
  }

  send(flow: Flow, chunk: Buffer): void {
    if (this.link.blackholed) return;
    const now = performance.now();
    const startMs = Math.max(now, this.freeAtMs);
    const txMs = this.spec.rateBitsPerS > 0 ? (chunk.length * 8 * 1000) / this.spec.rateBitsPerS : 0;
    this.freeAtMs = startMs + txMs;
    const connectionRate = this.spec.connectionRateBitsPerS ?? 0;
    if (connectionRate > 0) flow.freeAtMs = Math.max(now, flow.freeAtMs) + (chunk.length * 8 * 1000) / connectionRate;
    const sentAtMs = Math.max(this.freeAtMs, flow.freeAtMs);
    this.unsentBytes += chunk.length;
    setTimeout(() => {
      this.unsentBytes -= chunk.length;
      this.maybeResume();
    }, Math.max(0, this.freeAtMs - now));
    const jitter = this.spec.jitterMs > 0 ? this.link.random.int(this.spec.jitterMs + 1) : 0;
    flow.push(chunk, sentAtMs + this.spec.delayMs + jitter);
    if (this.unsentBytes > this.spec.bufferBytes || flow.inFlightBytes > this.inFlightBytesMax()) flow.source.pause();
  }

  /** Bytes one connection may have on the way: what the link (or one connection) carries in one delay, plus its buffer. */
  private inFlightBytesMax(): number {
    const rate = this.spec.connectionRateBitsPerS !== undefined && this.spec.connectionRateBitsPerS > 0 ? Math.min(this.spec.connectionRateBitsPerS, this.spec.rateBitsPerS || Infinity) : this.spec.rateBitsPerS;
    const perMs = rate > 0 ? rate / 8000 : 1024 * 1024;
    return Math.round(perMs * (this.spec.delayMs + this.spec.jitterMs + 10)) + this.spec.bufferBytes;
  }

  maybeResume(): void {
    if (this.unsentBytes > this.spec.bufferBytes) return;
    const max = this.inFlightBytesMax();
    for (const flow of this.flows) if (flow.source.isPaused() && !flow.blocked && flow.inFlightBytes <= max && !flow.source.destroyed) flow.source.resume();
  }
}

/** Both directions between two IP addresses, and the faults that hit them together. */
export class Link {
  silentUntilMs = 0;
  blackholed = false;
  readonly sockets = new Set<Socket>();

  /** From the smaller address to the larger, and back. */
  readonly forward: Direction;
  readonly backward: Direction;

  constructor(
    readonly random: Random,
    spec: DirectionSpec,
  ) {
    this.forward = new Direction(this, spec);
    this.backward = new Direction(this, spec);
  }

  /** The link goes silent for `ms`: nothing arrives meanwhile, everything arrives after. */
  stall(ms: number): void {
    this.silentUntilMs = Math.max(this.silentUntilMs, performance.now() + ms);
  }

  /** Ends a stall now: what waited for its end arrives (in order, as TCP would retransmit it). */
  endStall(): void {
    this.silentUntilMs = 0;
    for (const direction of [this.forward, this.backward]) for (const flow of direction.flows) flow.rearm();
  }

  /** On: nothing passes. Off: connections that lost bytes are reset. */
  setBlackhole(on: boolean): void {
    if (this.blackholed === on) return;
    this.blackholed = on;
    if (!on) this.reset();
  }

  /** Resets every connection through the link. */
  reset(): void {
    for (const socket of this.sockets) {
      if (socket.destroyed) continue;
      try {
        socket.resetAndDestroy();
      } catch {
        socket.destroy();
      }
    }
  }
}

function plainIp(address: string | undefined): string {
  const a = address ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

export class LinkEmulator {
  private readonly servers: Server[] = [];
  private readonly links = new Map<string, Link>();
  private readonly random: Random;
  private defaultSpec: DirectionSpec;
  /** Connections made through the emulator (for tests: a reset really cut something). */
  connections = 0;

  constructor(seed: number, spec: DirectionSpec = loopbackSpec) {
    this.random = new Random(seed);
    this.defaultSpec = spec;
  }

  /**
   * A front for the peer port `target` ("IP:PORT"): listens on the same IP, a free port;
   * returns its "IP:PORT", which the host advertises.
   */
  async front(target: string): Promise<string> {
    const [ip, portText] = splitAddress(target);
    const server = createServer((downstream) => this.connectPair(downstream, ip, Number(portText)));
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, ip, resolve);
    });
    const address = server.address();
    if (address === null || typeof address !== 'object') throw new Error('front has no address');
    return `${ip}:${address.port}`;
  }

  /** The link between two IP addresses (created with the default spec on first use). */
  link(a: string, b: string): Link {
    const key = a < b ? `${a}|${b}` : `${b}|${a}`;
    let link = this.links.get(key);
    if (link === undefined) {
      link = new Link(this.random, this.defaultSpec);
      this.links.set(key, link);
    }
    return link;
  }

  /** The direction from `from` to `to`. */
  direction(from: string, to: string): Direction {
    const link = this.link(from, to);
    return from < to ? link.forward : link.backward;
  }

  /** Sets both directions of every link, present and future. */
  setAll(spec: DirectionSpec): void {
    this.defaultSpec = spec;
    for (const link of this.links.values()) {
      link.forward.spec = spec;
      link.backward.spec = spec;
    }
  }

  /** Sets one direction of one link. */
  setDirection(from: string, to: string, spec: DirectionSpec): void {
    this.direction(from, to).spec = spec;
  }

  /** Bytes delivered from `from` to `to` so far. */
  deliveredBytes(from: string, to: string): number {
    return this.direction(from, to).deliveredBytes;
  }

  async close(): Promise<void> {
    for (const link of this.links.values()) for (const s of link.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private connectPair(downstream: Socket, targetIp: string, targetPort: number): void {
    const clientIp = plainIp(downstream.remoteAddress);
    const link = this.link(clientIp, targetIp);
    downstream.pause();
    downstream.on('error', () => undefined);
    link.sockets.add(downstream);
    if (link.blackholed) {
      // Nothing answers; the connection hangs until the blackhole ends (then it is reset).
      downstream.on('close', () => link.sockets.delete(downstream));
      return;
    }
    this.connections++;
    const upstream = connect({ host: targetIp, port: targetPort, localAddress: clientIp });
    upstream.on('error', () => undefined);
    link.sockets.add(upstream);
    const up = this.direction(clientIp, targetIp);
    const down = this.direction(targetIp, clientIp);
    const upFlow = new Flow(downstream, upstream, up);
    const downFlow = new Flow(upstream, downstream, down);
    up.add(upFlow);
    down.add(downFlow);
    const close = (): void => {
      link.sockets.delete(downstream);
      link.sockets.delete(upstream);
      up.remove(upFlow);
      down.remove(downFlow);
      // A reset travels as a reset; an orderly end as an end (after what is in flight would be lost: close both).
      if (!downstream.destroyed) downstream.destroy();
      if (!upstream.destroyed) upstream.destroy();
    };
    downstream.on('close', close);
    upstream.on('close', close);
    upstream.on('connect', () => downstream.resume());
    downstream.on('data', (chunk: Buffer) => up.send(upFlow, chunk));
    upstream.on('data', (chunk: Buffer) => down.send(downFlow, chunk));
  }
}

function splitAddress(address: string): [string, string] {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at), address.slice(at + 1)];
}
