/**
 * The metadata scale experiment: n MetaNodes (the real core, no sockets) on one simulated
 * clock and network, deterministic from a seed. It measures what the original's full
 * mesh made O(n²): messages per host per second at rest, the messages one resource-key
 * update causes, and the anti-entropy rounds until a cluster-wide key reaches every host
 * (with push and gossip forwarding, and by anti-entropy alone).
 *
 * Every message is encoded with the real wire codec once, to count bytes. The cluster
 * starts converged: every host holds every host record, every member its resources' keys.
 */
import { ManualClock } from '../core/clock.js';
import { Random } from '../core/random.js';
import { liveEntry, type Entry } from '../meta/entry.js';
import { hostRecordValue } from '../meta/host-record.js';
import { canonicalJson } from '../meta/json-value.js';
import { clusterScope, hostKey, primaryKey, resourceScope, type ScopeId } from '../meta/keys.js';
import { antiEntropyIntervalMs } from '../meta/limits.js';
import { encodeMetaMessage } from '../meta/message-codec.js';
import type { MetaMessage, MetaMessageType } from '../meta/messages.js';
import { MetaNode } from '../meta/meta-node.js';
import { signEntry, testSigningKey } from '../meta/signing.js';
import type { Ready } from '../meta/ready.js';

export interface MetaSimOptions {
  readonly hosts: number;
  readonly seed: number;
  /** Resources per host on average (resources = hosts × this), each with 2 to 4 members. */
  readonly resourcesPerHost?: number;
  readonly intervalMs?: number;
  readonly latencyMsMin?: number;
  readonly latencyMsMax?: number;
  /** Probability that any message is lost. */
  readonly lossProbability?: number;
}

export interface Traffic {
  messages: number;
  bytes: number;
  readonly byType: Record<MetaMessageType, number>;
  readonly bytesByType: Record<MetaMessageType, number>;
}

function emptyTraffic(): Traffic {
  return { messages: 0, bytes: 0, byType: { push: 0, digest: 0, summary: 0, delta: 0 }, bytesByType: { push: 0, digest: 0, summary: 0, delta: 0 } };
}

/** Messages and bytes other than the digests every host sends at rest anyway. */
function beyondRest(t: Traffic): { messages: number; bytes: number } {
  return { messages: t.messages - t.byType.digest, bytes: t.bytes - t.bytesByType.digest };
}

interface SimEvent {
  readonly atMs: number;
  readonly seq: number;
  readonly host: string;
  readonly from: string | undefined;
  readonly message: MetaMessage | undefined;
}

/** A binary min-heap of events by (time, sequence): equal times keep their order. */
class EventQueue {
  private readonly heap: SimEvent[] = [];
  get size(): number {
    return this.heap.length;
  }
  peek(): SimEvent | undefined {
    return this.heap[0];
  }
  push(e: SimEvent): void {
    const h = this.heap;
    h.push(e);
    for (let i = h.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }
  pop(): SimEvent | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}

export const simStartMs = 1_700_000_000_000;

/** Host names of equal length, so that their order is the order of their numbers. */
export function simHostName(i: number, hosts: number): string {
  return `h${String(i).padStart(String(hosts - 1).length, '0')}`;
}

export class MetaSim {
  readonly clock = new ManualClock(simStartMs);
  readonly nodes = new Map<string, MetaNode>();
  readonly hostNames: string[];
  readonly resources = new Map<string, string[]>();
  readonly intervalMs: number;
  traffic: Traffic = emptyTraffic();
  /** Hosts that received a message other than a digest since the traffic was last reset. */
  touched = new Set<string>();
  /** Drop every push (to measure anti-entropy alone). */
  dropPushes = false;
  private readonly random: Random;
  private readonly queue = new EventQueue();
  private seq = 0;
  private readonly sizes = new WeakMap<MetaMessage, number>();

  constructor(private readonly options: MetaSimOptions) {
    this.random = new Random(options.seed);
    this.intervalMs = options.intervalMs ?? antiEntropyIntervalMs;
    this.hostNames = Array.from({ length: options.hosts }, (_, i) => simHostName(i, options.hosts));
    this.placeResources();
    this.createNodes();
    for (const host of this.hostNames) this.schedule(host, this.random.int(this.intervalMs), undefined, undefined);
  }

  private placeResources(): void {
    const count = Math.max(1, Math.round(this.hostNames.length * (this.options.resourcesPerHost ?? 1)));
    for (let r = 0; r < count; r++) {
      const size = Math.min(this.hostNames.length, 2 + this.random.int(3));
      const members = new Set<string>();
      while (members.size < size) members.add(this.hostNames[this.random.int(this.hostNames.length)]!);
      this.resources.set(`r${r}`, [...members].sort());
    }
  }

  /** The converged starting state, shared (immutable entries) between the nodes that hold it. */
  private createNodes(): void {
    const stamp = BigInt(simStartMs) * 1000n;
    const resourcesOf = new Map<string, string[]>(this.hostNames.map((h) => [h, []]));
    const resourceTables = new Map<string, Map<string, Entry>>();
    const keys = new Map(this.hostNames.map((h) => [h, testSigningKey(h)]));
    for (const [name, members] of this.resources) {
      const table = new Map<string, Entry>([[primaryKey(name), liveEntry(members[0]!, stamp, members[0]!)]]);
      for (const m of members) {
        resourcesOf.get(m)!.push(name);
        const key = `resource/${name}/replay/${m}`;
        table.set(key, signEntry(key, liveEntry(canonicalJson({ log: 1, offsetBytes: 0 })!, stamp, m), keys.get(m)!));
      }
      resourceTables.set(name, table);
    }
    const cluster = new Map<string, Entry>();
    for (const host of this.hostNames) {
      const signKey = keys.get(host)!;
      const value = canonicalJson(hostRecordValue({ address: `${host}:7777`, resources: resourcesOf.get(host)!, signKey: signKey.publicKeyText }))!;
      cluster.set(hostKey(host), signEntry(hostKey(host), liveEntry(value, stamp, host), signKey));
    }
    this.hostNames.forEach((host, i) => {
      const snapshot = new Map<ScopeId, ReadonlyMap<string, Entry>>([[clusterScope, cluster]]);
      for (const r of resourcesOf.get(host)!) snapshot.set(resourceScope(r), resourceTables.get(r)!);
      this.nodes.set(host, new MetaNode({ host, clock: this.clock, random: new Random((this.options.seed * 7919 + i) >>> 0), signingKey: keys.get(host)!, snapshot }));
    });
  }

  node(host: string): MetaNode {
    const node = this.nodes.get(host);
    if (node === undefined) throw new Error(`no host ${host}`);
    return node;
  }

  private schedule(host: string, delayMs: number, from: string | undefined, message: MetaMessage | undefined): void {
    this.queue.push({ atMs: this.clock.nowMs() + delayMs, seq: this.seq++, host, from, message });
  }

  /** Takes the actions of one event: messages go on the simulated network (persisting is free here). */
  apply(from: string, ready: Ready): void {
    const min = this.options.latencyMsMin ?? 1;
    const max = this.options.latencyMsMax ?? 50;
    for (const { to, message } of ready.send) {
      this.count(to, message);
      if (this.dropPushes && message.type === 'push') continue;
      if (this.random.chance(this.options.lossProbability ?? 0)) continue;
      this.schedule(to, min + this.random.int(max - min + 1), from, message);
    }
  }

  private count(to: string, message: MetaMessage): void {
    let size = this.sizes.get(message);
    if (size === undefined) {
      size = encodeMetaMessage(message).length;
      this.sizes.set(message, size);
    }
    this.traffic.messages++;
    this.traffic.bytes += size;
    this.traffic.byType[message.type]++;
    this.traffic.bytesByType[message.type] += size;
    if (message.type !== 'digest') this.touched.add(to);
  }

  resetTraffic(): void {
    this.traffic = emptyTraffic();
    this.touched = new Set();
  }

  /** Runs every event up to `untilMs` (simulated time). */
  runUntil(untilMs: number): void {
    for (let next = this.queue.peek(); next !== undefined && next.atMs <= untilMs; next = this.queue.peek()) {
      this.queue.pop();
      this.clock.advance(next.atMs - this.clock.nowMs());
      const node = this.node(next.host);
      if (next.message === undefined) {
        this.apply(next.host, node.tick());
        this.schedule(next.host, this.intervalMs, undefined, undefined);
      } else {
        this.apply(next.host, node.receive(next.from!, next.message));
      }
    }
    this.clock.advance(Math.max(0, untilMs - this.clock.nowMs()));
  }

  runRounds(rounds: number): void {
    this.runUntil(this.clock.nowMs() + rounds * this.intervalMs);
  }

  /** Hosts whose store shows `value` for `key`. */
  holders(key: string, value: unknown, hosts: readonly string[] = this.hostNames): number {
    const wanted = JSON.stringify(value);
    return hosts.filter((h) => JSON.stringify(this.node(h).get(key)) === wanted).length;
  }

  /** A seeded choice, for the experiment driver. */
  pick<T>(items: readonly T[]): T {
    return items[this.random.int(items.length)]!;
  }
}

export interface MetaScaleResult {
  readonly hosts: number;
  readonly resources: number;
  readonly restMessagesPerHostPerS: number;
  readonly restBytesPerHostPerS: number;
  /** Means over `resourceUpdatesMeasured` updates of random resources' keys. */
  readonly resourceUpdate: { readonly members: number; readonly messages: number; readonly bytes: number; readonly hostsTouched: number };
  readonly clusterUpdate: { readonly rounds: number; readonly messages: number; readonly bytes: number };
  readonly clusterUpdateAntiEntropyOnly: { readonly rounds: number; readonly messages: number };
  readonly wallMs: number;
}

/** Rounds the cluster-wide measurements may take before the experiment gives up. */
export const clusterRoundsMax = 64;
/** Anti-entropy intervals measured at rest. */
export const restRounds = 3;

/** Resource-key updates measured (each on a random resource, by a random member), averaged. */
export const resourceUpdatesMeasured = 10;

function measureResourceUpdates(sim: MetaSim, seed: number): MetaScaleResult['resourceUpdate'] {
  const sum = { members: 0, messages: 0, bytes: 0, hostsTouched: 0 };
  for (let i = 0; i < resourceUpdatesMeasured; i++) {
    sim.resetTraffic();
    const [resource, members] = sim.pick([...sim.resources]);
    const writer = sim.pick(members);
    const key = `resource/${resource}/replay/${writer}`;
    const value = { log: 2 + i, offsetBytes: 4096 };
    sim.apply(writer, sim.node(writer).set(key, value));
    sim.runRounds(2);
    if (sim.holders(key, value, members) !== members.length) throw new Error(`${key} did not reach every member (seed ${seed})`);
    const caused = beyondRest(sim.traffic);
    sum.members += members.length;
    sum.messages += caused.messages;
    sum.bytes += caused.bytes;
    sum.hostsTouched += sim.touched.size;
  }
  const mean = (x: number): number => x / resourceUpdatesMeasured;
  return { members: mean(sum.members), messages: mean(sum.messages), bytes: mean(sum.bytes), hostsTouched: mean(sum.hostsTouched) };
}

/** Sets a cluster-wide key on one host and runs until every host has it; returns the rounds. */
function spreadClusterKey(sim: MetaSim, key: string, host: string, value: unknown, seed: number): number {
  sim.apply(host, sim.node(host).set(key, value));
  for (let round = 1; round <= clusterRoundsMax; round++) {
    sim.runRounds(1);
    if (sim.holders(key, value) === sim.hostNames.length) return round;
  }
  throw new Error(`${key} did not reach every host within ${clusterRoundsMax} rounds (seed ${seed})`);
}

export function runMetaScale(options: MetaSimOptions, wallClockMs: () => number = () => 0): MetaScaleResult {
  const startedMs = wallClockMs();
  const sim = new MetaSim(options);
  const seconds = (restRounds * sim.intervalMs) / 1000;
  sim.runRounds(1);
  sim.resetTraffic();
  sim.runRounds(restRounds);
  const rest = sim.traffic;
  if (rest.messages !== rest.byType.digest) throw new Error(`the converged cluster is not at rest (seed ${options.seed})`);

  const resourceUpdate = measureResourceUpdates(sim, options.seed);

  sim.resetTraffic();
  const origin = sim.pick(sim.hostNames);
  const rounds = spreadClusterKey(sim, `cluster/note/${origin}`, origin, 'pushed', options.seed);
  const clusterUpdate = { rounds, ...beyondRest(sim.traffic) };

  sim.runRounds(1);
  sim.resetTraffic();
  sim.dropPushes = true;
  const quiet = sim.pick(sim.hostNames);
  const aeRounds = spreadClusterKey(sim, `cluster/note/${quiet}`, quiet, 'anti-entropy', options.seed);
  const clusterUpdateAntiEntropyOnly = { rounds: aeRounds, messages: beyondRest(sim.traffic).messages };

  return {
    hosts: options.hosts,
    resources: sim.resources.size,
    restMessagesPerHostPerS: rest.messages / options.hosts / seconds,
    restBytesPerHostPerS: rest.bytes / options.hosts / seconds,
    resourceUpdate,
    clusterUpdate,
    clusterUpdateAntiEntropyOnly,
    wallMs: wallClockMs() - startedMs,
  };
}
