/**
 * A simulated network of byte streams between hosts, with faults drawn from the run's
 * seed. The real PeerLink (frames, checksums, keepalive, idle timeout, bounded send
 * buffer) runs on top of a SimSocket, so the cores see exactly what they see over TCP.
 *
 * A stream behaves like TCP: bytes arrive whole and in order, after a delay (plus the
 * transfer time of a slow link), or the connection breaks. So the faults are:
 * - delay with jitter (in order), slow links (bytes per ms);
 * - loss: a lost segment that TCP cannot repair in time is a reset of the connection;
 * - corruption that TCP's checksum misses: one flipped bit in a chunk (the frame checksum
 *   must catch it);
 * - partitions: nothing crosses between the two sides; what was sent waits and arrives
 *   after the heal (retransmission), unless an end gave up first (idle timeout); dials
 *   across a partition fail after a delay;
 * - a crashed host's connections are reset (the kernel closes them) or, on power loss,
 *   go silent.
 * Duplication and reordering do not exist on a TCP stream; the authentication handshake
 * is not run here (it has its own tests): a link is authenticated when it opens.
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { FrameDecoder, PeerLink } from '../net/index.js';
import type { SimTimers } from './scheduler.js';

export interface NetFaults {
  /** One-way delay: uniform in [delayMsMin, delayMsMax]. */
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  /** Per chunk sent: the chance the connection is reset. */
  readonly resetChance: number;
  /** Per chunk sent: the chance one bit of it flips on the way. */
  readonly corruptChance: number;
  /** Bytes per ms of a slow link (when a pair is made slow). */
  readonly slowBytesPerMs: number;
}

type Item = { readonly kind: 'data'; data: Buffer; readonly dueMs: number } | { readonly kind: 'close'; readonly error: boolean; readonly dueMs: number };

/** One direction of a connection: items in order, each due at its time, held while partitioned. */
class Pipe {
  readonly items: Item[] = [];
  queuedBytes = 0;
  private armed = false;
  lastDueMs = 0;

  constructor(
    private readonly net: SimNet,
    readonly from: string,
    readonly to: string,
    private readonly deliver: (item: Item) => void,
  ) {}

  push(item: Item): void {
    this.items.push(item);
    if (item.kind === 'data') this.queuedBytes += item.data.length;
    this.lastDueMs = item.dueMs;
    this.pump();
  }

  pump(): void {
    if (this.armed || this.net.blocked(this.from, this.to)) return;
    const head = this.items[0];
    if (head === undefined) return;
    this.armed = true;
    this.net.timers.setTimeout(() => {
      this.armed = false;
      if (this.net.blocked(this.from, this.to)) return; // the heal pumps again
      const item = this.items.shift();
      if (item === undefined) return;
      if (item.kind === 'data') this.queuedBytes -= item.data.length;
      this.deliver(item);
      this.pump();
    }, Math.max(0, head.dueMs - this.net.clock.nowMs()));
  }
}

/** The end of a simulated connection that a PeerLink uses in place of a net.Socket. */
export class SimSocket extends EventEmitter {
  destroyed = false;
  other!: SimSocket;
  out!: Pipe;

  constructor(
    private readonly net: SimNet,
    readonly host: string,
  ) {
    super();
  }

  get writableLength(): number {
    return this.out.queuedBytes;
  }

  write(data: Buffer): boolean {
    if (this.destroyed) return false;
    const f = this.net.faults;
    if (this.net.random.chance(f.resetChance)) {
      this.net.resets++;
      this.reset();
      return false;
    }
    const chunk = Buffer.from(data);
    if (chunk.length > 0 && this.net.random.chance(f.corruptChance)) {
      this.net.corruptions++;
      const bit = this.net.random.int(chunk.length * 8);
      chunk[bit >> 3] = chunk[bit >> 3]! ^ (1 << (bit & 7));
    }
    const now = this.net.clock.nowMs();
    const delay = f.delayMsMin + this.net.random.int(f.delayMsMax - f.delayMsMin + 1);
    const transferMs = this.net.slow(this.host, this.other.host) ? Math.ceil(chunk.length / f.slowBytesPerMs) : 0;
    this.out.push({ kind: 'data', data: chunk, dueMs: Math.max(now + delay, this.out.lastDueMs) + transferMs });
    this.net.maxQueuedBytes = Math.max(this.net.maxQueuedBytes, this.out.queuedBytes);
    return true;
  }

  cork(): void {}
  uncork(): void {}
  end(): void {
    this.destroy();
  }

  /** Closes this end; the other end learns it after the data sent before. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const now = this.net.clock.nowMs();
    this.out.push({ kind: 'close', error: false, dueMs: Math.max(now + this.net.faults.delayMsMin, this.out.lastDueMs) });
    this.net.timers.setTimeout(() => this.emit('close'), 0);
  }

  /** A reset: both ends fail (the other after the delay). */
  reset(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const now = this.net.clock.nowMs();
    this.out.items.length = 0;
    this.out.queuedBytes = 0;
    this.out.push({ kind: 'close', error: true, dueMs: Math.max(now + this.net.faults.delayMsMin, this.out.lastDueMs) });
    this.net.timers.setTimeout(() => {
      this.emit('error', new Error('connection reset'));
      this.emit('close');
    }, 0);
  }

  /** The process of this end died: no event reaches it any more; the other end sees a reset or, on power loss, nothing. */
  kill(silent: boolean): void {
    this.removeAllListeners();
    if (this.destroyed) return;
    this.destroyed = true;
    this.out.items.length = 0;
    this.out.queuedBytes = 0;
    if (!silent) this.out.push({ kind: 'close', error: true, dueMs: this.net.clock.nowMs() + this.net.faults.delayMsMin });
  }

  /** @internal from the pipe */
  receive(item: Item): void {
    if (this.destroyed) return;
    if (item.kind === 'data') {
      this.emit('data', item.data);
      if (this.other.out.queuedBytes === 0) this.other.emit('drain');
      return;
    }
    this.destroyed = true;
    if (item.error) this.emit('error', new Error('connection reset by peer'));
    this.emit('close');
  }
}

/** The bulk channels: log fetch and full sync. */
export type SimChannel = 'fetch' | 'sync';

/** Where a host accepts streams: gets the server end's PeerLink. */
export type Acceptor = (link: PeerLink) => void;

export class SimNet {
  private readonly partitions = new Set<string>();
  private readonly slowPairs = new Set<string>();
  private readonly acceptors = new Map<string, Acceptor>();
  private readonly sockets = new Map<string, Set<SimSocket>>();
  resets = 0;
  corruptions = 0;
  dials = 0;
  maxQueuedBytes = 0;

  constructor(
    readonly timers: SimTimers,
    readonly clock: Clock,
    readonly random: Random,
    public faults: NetFaults,
    private readonly hostTimers: (host: string) => SimTimers,
  ) {}

  private static key(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  blocked(a: string, b: string): boolean {
    return this.partitions.has(SimNet.key(a, b));
  }

  slow(a: string, b: string): boolean {
    return this.slowPairs.has(SimNet.key(a, b));
  }

  partition(a: string, b: string): void {
    this.partitions.add(SimNet.key(a, b));
  }

  setSlow(a: string, b: string, slow: boolean): void {
    if (slow) this.slowPairs.add(SimNet.key(a, b));
    else this.slowPairs.delete(SimNet.key(a, b));
  }

  healAll(): void {
    this.partitions.clear();
    this.slowPairs.clear();
    for (const set of this.sockets.values()) for (const s of set) s.out.pump();
  }

  get partitionCount(): number {
    return this.partitions.size;
  }

  /** `host` accepts fetch links with `acceptor` (undefined: it refuses them). */
  accept(host: string, acceptor: Acceptor | undefined, channel: SimChannel = 'fetch'): void {
    if (acceptor === undefined) this.acceptors.delete(`${host}/${channel}`);
    else this.acceptors.set(`${host}/${channel}`, acceptor);
  }

  /** A crash of `host`: its ends of every connection die. */
  killHost(host: string, silent: boolean): void {
    this.acceptors.delete(`${host}/fetch`);
    this.acceptors.delete(`${host}/sync`);
    for (const s of this.sockets.get(host) ?? []) s.kill(silent);
    this.sockets.delete(host);
  }

  /** Opens a link from `from` to `to` on a channel, after a delay; fails across a partition or to a host that does not accept. */
  async dial(from: string, to: string, channel: SimChannel = 'fetch'): Promise<PeerLink> {
    this.dials++;
    const timers = this.hostTimers(from);
    const f = this.faults;
    await timers.sleep(2 * (f.delayMsMin + this.random.int(f.delayMsMax - f.delayMsMin + 1)));
    const acceptor = this.acceptors.get(`${to}/${channel}`);
    if (this.blocked(from, to) || acceptor === undefined) {
      await timers.sleep(this.blocked(from, to) ? 1000 : 0); // a connect timeout, or a refusal
      throw new MarsError('PEER_CLOSED', `${to}: cannot connect from ${from}`);
    }
    const a = new SimSocket(this, from);
    const b = new SimSocket(this, to);
    a.other = b;
    b.other = a;
    a.out = new Pipe(this, from, to, (item) => b.receive(item));
    b.out = new Pipe(this, to, from, (item) => a.receive(item));
    for (const s of [a, b]) {
      let set = this.sockets.get(s.host);
      if (set === undefined) this.sockets.set(s.host, (set = new Set()));
      set.add(s);
      s.on('close', () => this.sockets.get(s.host)?.delete(s));
    }
    const link = (s: SimSocket, peer: string, t: SimTimers): PeerLink =>
      new PeerLink(s as never, new FrameDecoder(), { peerHost: peer, channel, clusterId: 'sim', remoteAddress: `${peer}:7777`, tls: false }, [], { timers: t, clock: this.clock });
    acceptor(link(b, from, this.hostTimers(to)));
    return link(a, to, timers);
  }
}
