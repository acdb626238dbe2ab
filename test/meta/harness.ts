/**
 * A few MetaNodes on one manual clock with a network the test controls message by
 * message: deliver in any order, duplicate, drop, or deliver everything. Messages go
 * through the wire codec, so what the core sends is what a peer could decode.
 */
import { ManualClock } from '../../src/core/clock.js';
import { Random } from '../../src/core/random.js';
import { MetaNode } from '../../src/meta/meta-node.js';
import { decodeMetaMessage, encodeMetaMessage } from '../../src/meta/message-codec.js';
import type { MetaMessage } from '../../src/meta/messages.js';
import type { Ready, Rejection } from '../../src/meta/ready.js';
import { hostKey, resourceScope, clusterScope } from '../../src/meta/keys.js';
import { hostRecordValue } from '../../src/meta/host-record.js';
import { testSigningKey } from '../../src/meta/signing.js';

export interface InFlight {
  readonly from: string;
  readonly to: string;
  readonly bytes: Buffer;
  readonly sentAtMs: number;
}

export class Harness {
  readonly clock: ManualClock;
  readonly nodes = new Map<string, MetaNode>();
  inFlight: InFlight[] = [];
  /** Every message ever sent, for replaying stale copies. */
  readonly history: InFlight[] = [];
  readonly rejections: Rejection[] = [];
  sentCount = 0;

  constructor(
    readonly hosts: readonly string[],
    readonly resources: Readonly<Record<string, readonly string[]>>,
    seed: number,
    startMs = 1_700_000_000_000,
  ) {
    this.clock = new ManualClock(startMs);
    hosts.forEach((host, i) => this.nodes.set(host, new MetaNode({ host, clock: this.clock, random: new Random(seed * 1000 + i), signingKey: testSigningKey(host) })));
  }

  node(host: string): MetaNode {
    const node = this.nodes.get(host);
    if (node === undefined) throw new Error(`no node ${host}`);
    return node;
  }

  /** Every host writes its record and meets the first host, then everything is delivered. */
  bootstrap(): void {
    for (const host of this.hosts) {
      const resources = Object.entries(this.resources)
        .filter(([, members]) => members.includes(host))
        .map(([name]) => name);
      this.apply(host, this.node(host).set(hostKey(host), hostRecordValue({ address: `${host}:7777`, resources })));
    }
    const first = this.hosts[0]!;
    for (const host of this.hosts.slice(1)) this.apply(host, this.node(host).peerConnected(first));
    this.settle();
  }

  apply(from: string, ready: Ready): void {
    this.rejections.push(...ready.rejected);
    for (const { to, message } of ready.send) {
      const item = { from, to, bytes: encodeMetaMessage(message), sentAtMs: this.clock.nowMs() };
      this.inFlight.push(item);
      this.history.push(item);
      this.sentCount++;
    }
  }

  deliver(item: InFlight): void {
    const node = this.nodes.get(item.to);
    if (node === undefined) return;
    const message: MetaMessage = decodeMetaMessage(item.bytes);
    this.apply(item.to, node.receive(item.from, message));
  }

  /** Takes message `index` off the network and delivers it (or drops it). */
  take(index: number, mode: 'deliver' | 'drop' | 'duplicate'): void {
    if (this.inFlight.length === 0) return;
    const i = index % this.inFlight.length;
    const item = this.inFlight[i]!;
    if (mode !== 'duplicate') this.inFlight.splice(i, 1);
    if (mode !== 'drop') this.deliver(item);
  }

  /** Delivers until the network is empty (bounded). */
  settle(stepsMax = 100_000): void {
    for (let step = 0; this.inFlight.length > 0; step++) {
      if (step >= stepsMax) throw new Error('network did not settle');
      this.deliver(this.inFlight.shift()!);
    }
  }

  tickAll(): void {
    for (const [host, node] of this.nodes) this.apply(host, node.tick());
  }

  /** Anti-entropy rounds with a reliable network until every shared scope agrees. */
  converge(roundsMax = 60, stepMs = 5_000): number {
    for (let round = 0; round < roundsMax; round++) {
      if (this.converged()) return round;
      this.clock.advance(stepMs);
      this.tickAll();
      this.settle();
    }
    throw new Error('no convergence');
  }

  /** Every member of every scope holds the same digest. */
  converged(): boolean {
    const cluster = new Set([...this.nodes.values()].map((n) => n.digest(clusterScope)));
    if (cluster.size !== 1) return false;
    for (const [resource, members] of Object.entries(this.resources)) {
      const digests = new Set(members.map((m) => this.node(m).digest(resourceScope(resource))));
      if (digests.size !== 1) return false;
    }
    return true;
  }
}
