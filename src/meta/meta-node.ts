/**
 * The metadata core of one host: events in (a local set or delete, a message from an
 * authenticated peer, a tick, a peer connected), a `Ready` of actions out (scopes to
 * persist, messages to send, keys that changed, rejected input to log). It reads no
 * wall clock, opens no file or socket and draws no random number of its own: the clock
 * and the seeded random source are passed in, so the simulator drives it exactly.
 *
 * Propagation: a change is pushed at once, to the members of its resource (resource
 * keys) or to `gossipFanout` random hosts that forward it once each (cluster keys).
 * Every tick runs anti-entropy, which sends only what the other side lacks: root digest,
 * then bucket sums, then keys of differing buckets. Tombstones are purged once every
 * member of their scope holds them (see `purgeRound`).
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { LamportClock } from '../core/lamport.js';
import type { Random } from '../core/random.js';
import { allBuckets, differingBuckets, diffKeys, keySummary, splitBatches } from './anti-entropy.js';
import { compareVersions, liveEntry, mergeEntry, tombstone, withSeenBy, type Entry } from './entry.js';
import { pickPeers } from './gossip.js';
import { parseHostRecord, withSignKey, type HostRecord } from './host-record.js';
import { canonicalJson, type JsonValue } from './json-value.js';
import { clusterScope, hostKey, parseKey, parseKeyOrThrow, resourceScope, scopeResource, type KeyInfo, type ScopeId } from './keys.js';
import {
  batchEntriesMax,
  clockSkewMsMax,
  gossipFanout,
  gossipPeersPerTick,
  hostsMax,
  keysInlineMax,
  messageAgeMsMax,
  purgedMemoryCountMax,
  purgedMemoryMsMax,
  scopeKeysMax,
  scopesPerMessageMax,
  summaryItemsMax,
  tombstonePurgeDelayMs,
  valueBytesMax,
  wantKeysMax,
} from './limits.js';
import { Membership } from './membership.js';
import type { DeltaMessage, DigestMessage, KeyedEntry, MetaMessage, PurgedNotice, PushMessage, ScopeDigest, ScopeSummary, SummaryMessage } from './messages.js';
import { ReadyBuilder, type Ready } from './ready.js';
import { holdEntry, ScopeTable } from './scope-table.js';
import { entrySignedBytes, signEntry, verifyBytes, type SigningKey } from './signing.js';

/** The stored state a node starts from: scope -> key -> entry (MetaStore.load). */
export type MetaSnapshot = ReadonlyMap<ScopeId, ReadonlyMap<string, Entry>>;

export interface MetaNodeOptions {
  readonly host: string;
  /** Time source of the Lamport clock, of staleness checks and of tombstone purging. */
  readonly clock: Clock;
  /** Gossip peer choices and bucket rotation. */
  readonly random: Random;
  /** This host's own key pair: it signs every version of the keys this host owns. */
  readonly signingKey: SigningKey;
  readonly snapshot?: MetaSnapshot;
}

interface PurgedMemory {
  readonly lamport: bigint;
  readonly atMs: number;
}

const hostKeyPrefix = hostKey('');

export class MetaNode {
  readonly host: string;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly signingKey: SigningKey;
  private readonly lamport: LamportClock;
  private readonly tables = new Map<ScopeId, ScopeTable>();
  private readonly membership: Membership;
  /** When this host saw that every member holds a tombstone (key -> ms). In memory only. */
  private readonly completeSinceMs = new Map<string, number>();
  /** Tombstones purged lately, to refuse their older copies and to tell slower peers. */
  private readonly purged = new Map<string, PurgedMemory>();

  constructor(options: MetaNodeOptions) {
    this.host = options.host;
    this.clock = options.clock;
    this.random = options.random;
    this.signingKey = options.signingKey;
    this.lamport = new LamportClock(options.clock);
    this.membership = new Membership(options.host);
    if (options.snapshot !== undefined) this.load(options.snapshot);
  }

  private load(snapshot: MetaSnapshot): void {
    let newest = 0n;
    for (const [scope, entries] of snapshot) {
      const table = new ScopeTable(scope);
      for (const [key, entry] of entries) {
        table.putHeld(key, holdEntry(key, entry));
        if (entry.lamport > newest) newest = entry.lamport;
      }
      this.tables.set(scope, table);
    }
    this.lamport.observe(newest);
    for (const [host, record] of this.hostRecords()) this.membership.update(host, undefined, record, () => this.hostRecords());
  }

  // ---- queries ------------------------------------------------------------------------

  /** The live value of a key, or undefined (absent or deleted). */
  get(key: string): JsonValue | undefined {
    const entry = this.entry(key);
    return entry === undefined || entry.deleted ? undefined : entry.value;
  }

  /** The stored version of a key, tombstones included. */
  entry(key: string): Entry | undefined {
    const info = parseKey(key);
    return info === undefined ? undefined : this.tables.get(info.scope)?.get(key);
  }

  /** Live keys starting with `prefix`, sorted. */
  keys(prefix = ''): string[] {
    const out: string[] = [];
    for (const table of this.tables.values()) {
      for (const [key, held] of table.heldEntries()) if (!held.entry.deleted && key.startsWith(prefix)) out.push(key);
    }
    return out.sort();
  }

  scopes(): ScopeId[] {
    return [...this.tables.keys()].sort();
  }

  /** The entries of a scope, for MetaStore.save (empty: remove the file). */
  exportScope(scope: ScopeId): ReadonlyMap<string, Entry> {
    const out = new Map<string, Entry>();
    const table = this.tables.get(scope);
    if (table !== undefined) for (const [key, held] of table.heldEntries()) out.set(key, held.entry);
    return out;
  }

  /** The root digest of a scope (0 when empty): equal roots, equal contents. */
  digest(scope: ScopeId): bigint {
    return this.tables.get(scope)?.root() ?? 0n;
  }

  hosts(): readonly string[] {
    return this.membership.hosts();
  }

  hostRecord(host: string): HostRecord | undefined {
    const value = this.get(hostKey(host));
    return value === undefined ? undefined : parseHostRecord(value);
  }

  /** Members of a resource this host belongs to; undefined otherwise. */
  membersOf(resource: string): ReadonlySet<string> | undefined {
    return this.membership.membersOf(resource);
  }

  /** The last Lamport stamp issued or observed. */
  lamportNow(): bigint {
    return this.lamport.peek();
  }

  /** A fresh Lamport stamp, for a message the shell composes itself (the join snapshot). */
  stamp(): bigint {
    return this.lamport.tick();
  }

  private *hostRecords(): Generator<[string, HostRecord]> {
    const table = this.tables.get(clusterScope);
    if (table === undefined) return;
    // Keys in a table have passed parseKey already: the prefix alone identifies host records.
    for (const [key, held] of table.heldEntries()) {
      if (key.startsWith(hostKeyPrefix) && !held.entry.deleted) yield [key.slice(hostKeyPrefix.length), parseHostRecord(held.entry.value)];
    }
  }

  // ---- local changes ------------------------------------------------------------------

  /** Sets a key this host may write. Throws EINVAL, META_NOT_OWNER, PEER_NOT_MEMBER or ENOSPC. */
  set(key: string, value: unknown): Ready {
    const info = this.checkLocalWrite(key);
    const canonical = this.valueToWrite(key, value);
    if (canonical === undefined) throw new MarsError('EINVAL', `${key}: value is not plain JSON`);
    if (JSON.stringify(canonical).length > valueBytesMax) throw new MarsError('EINVAL', `${key}: value larger than ${valueBytesMax} bytes`);
    const table = this.tableFor(info.scope);
    const before = table.get(key);
    if (before === undefined && table.size >= scopeKeysMax) throw new MarsError('ENOSPC', `${info.scope}: ${scopeKeysMax} keys already`);
    const out = new ReadyBuilder();
    const entry = this.signed(key, info, liveEntry(canonical, this.stampAfter(before), this.host));
    this.store(key, info, entry, out);
    this.pushChange(key, info, entry, out);
    return out.finish();
  }

  /** Deletes a key (a tombstone); deleting a missing or deleted key changes nothing. */
  delete(key: string): Ready {
    const info = this.checkLocalWrite(key);
    const before = this.tables.get(info.scope)?.get(key);
    if (before === undefined || before.deleted) return new ReadyBuilder().finish();
    const out = new ReadyBuilder();
    const entry = this.signed(key, info, tombstone(this.stampAfter(before), this.host, [this.host]));
    this.store(key, info, entry, out);
    this.pushChange(key, info, entry, out);
    return out.finish();
  }

  /**
   * The canonical value `set` would store: this host's own record always carries its
   * public key (callers compare with it to skip writes that change nothing).
   */
  valueToWrite(key: string, value: unknown): JsonValue | undefined {
    return canonicalJson(key === hostKey(this.host) ? withSignKey(value as JsonValue, this.signingKey.publicKeyText) : value);
  }

  /** This host's public key, as its host record carries it. */
  get publicKeyText(): string {
    return this.signingKey.publicKeyText;
  }

  /**
   * Signs again, with a new stamp, every version of this host's own keys that does not
   * carry a valid signature of its key (metadata written before hosts signed), and adds the
   * key to its own record. The daemon calls it once at start.
   */
  signOwnEntries(): Ready {
    const out = new ReadyBuilder();
    const own = this.signingKey.publicKeyText;
    for (const table of [...this.tables.values()]) {
      for (const [key, held] of [...table.heldEntries()]) {
        const info = parseKey(key);
        if (info?.owner !== this.host) continue;
        const entry = held.entry;
        const recordKeyMissing = key === hostKey(this.host) && !entry.deleted && parseHostRecord(entry.value).signKey !== own;
        if (!recordKeyMissing && this.signatureValid(key, entry, own)) continue;
        const value = entry.deleted ? undefined : this.valueToWrite(key, entry.value);
        const fresh = value === undefined ? tombstone(this.stampAfter(entry), this.host, [this.host]) : liveEntry(value, this.stampAfter(entry), this.host);
        const signedEntry = this.signed(key, info, fresh);
        this.store(key, info, signedEntry, out);
        this.pushChange(key, info, signedEntry, out);
      }
    }
    return out.finish();
  }

  private signed(key: string, info: KeyInfo, entry: Entry): Entry {
    return info.owner === undefined ? entry : signEntry(key, entry, this.signingKey);
  }

  private signatureValid(key: string, entry: Entry, publicKeyText: string): boolean {
    if (entry.sig === undefined) return false;
    const bytes = entrySignedBytes(key, { lamport: entry.lamport, owner: entry.owner, deleted: entry.deleted, valueJson: JSON.stringify(entry.value) });
    return verifyBytes(publicKeyText, bytes, Buffer.from(entry.sig, 'base64'));
  }

  /** The key pinned for a host: the one in its live record here (undefined: none known yet). */
  pinnedKey(host: string): string | undefined {
    return host === this.host ? this.signingKey.publicKeyText : this.hostRecord(host)?.signKey;
  }

  private checkLocalWrite(key: string): KeyInfo {
    const info = parseKeyOrThrow(key);
    if (info.owner !== undefined && info.owner !== this.host) {
      throw new MarsError('META_NOT_OWNER', `${key} is owned by ${info.owner}, not by ${this.host}`);
    }
    if (info.resource !== undefined && !this.membership.isMember(info.resource, this.host)) {
      throw new MarsError('PEER_NOT_MEMBER', `${this.host} is not a member of resource ${info.resource}`);
    }
    return info;
  }

  /** A stamp newer than the clock and than the version it replaces (even if that is ahead of our clock). */
  private stampAfter(before: Entry | undefined): bigint {
    const stamp = this.lamport.tick();
    return before !== undefined && before.lamport >= stamp ? before.lamport + 1n : stamp;
  }

  private pushChange(key: string, info: KeyInfo, entry: Entry, out: ReadyBuilder): void {
    const message: PushMessage = { type: 'push', sentLamport: this.lamport.tick(), entries: [{ key, entry }] };
    let targets: Iterable<string>;
    if (info.resource !== undefined) {
      targets = this.membership.membersOf(info.resource) ?? [];
    } else {
      const picked = new Set(pickPeers(this.random, this.membership.hosts(), gossipFanout, new Set([this.host])));
      // A host's own record also goes straight to its resource peers (join-resource is felt at once).
      if (key === hostKey(this.host)) for (const peer of this.membership.resourcePeers()) picked.add(peer);
      targets = picked;
    }
    for (const to of targets) if (to !== this.host) out.send(to, message);
  }

  // ---- storing ------------------------------------------------------------------------

  private tableFor(scope: ScopeId): ScopeTable {
    let table = this.tables.get(scope);
    if (table === undefined) {
      table = new ScopeTable(scope);
      this.tables.set(scope, table);
    }
    return table;
  }

  /** Puts a new version in its table and derives what follows from it. */
  private store(key: string, info: KeyInfo, entry: Entry, out: ReadyBuilder): void {
    const table = this.tableFor(info.scope);
    const before = table.get(key);
    table.putHeld(key, holdEntry(key, entry));
    out.persist(info.scope);
    if (!entry.deleted) this.completeSinceMs.delete(key);
    const visibleBefore = before === undefined || before.deleted ? undefined : JSON.stringify(before.value);
    const visibleAfter = entry.deleted ? undefined : JSON.stringify(entry.value);
    if (visibleBefore === visibleAfter) return;
    out.changed(key);
    if (info.name === 'host' && info.owner !== undefined && info.resource === undefined) this.hostRecordChanged(info.owner, before, entry, out);
  }

  private hostRecordChanged(host: string, before: Entry | undefined, after: Entry, out: ReadyBuilder): void {
    const recordBefore = before === undefined || before.deleted ? undefined : parseHostRecord(before.value);
    const recordAfter = after.deleted ? undefined : parseHostRecord(after.value);
    const resourcesBefore = host === this.host ? new Set(this.membership.resources()) : undefined;
    this.membership.update(host, recordBefore, recordAfter, () => this.hostRecords());
    if (resourcesBefore === undefined) return;
    // This host left a resource: its keys are no longer ours to keep or to serve.
    for (const resource of resourcesBefore) {
      if (this.membership.resources().has(resource)) continue;
      const scope = resourceScope(resource);
      const table = this.tables.get(scope);
      if (table !== undefined) for (const key of table.keys()) this.completeSinceMs.delete(key);
      this.tables.delete(scope);
      out.persist(scope);
    }
  }

  // ---- messages from peers ------------------------------------------------------------

  /** A message from an authenticated peer. Bad input is refused and reported, never thrown. */
  receive(peer: string, message: MetaMessage): Ready {
    const out = new ReadyBuilder();
    if (peer === this.host) {
      out.reject(peer, 'BAD_REQUEST', 'a message from this host itself');
      return out.finish();
    }
    if (!this.admit(peer, message.sentLamport, out)) return out.finish();
    switch (message.type) {
      case 'push':
        this.onPush(peer, message, out);
        break;
      case 'digest':
        this.onDigest(peer, message, out);
        break;
      case 'summary':
        this.onSummary(peer, message, out);
        break;
      case 'delta':
        this.onDelta(peer, message, out);
        break;
    }
    return out.finish();
  }

  private futureLimit(): bigint {
    return BigInt(Math.floor(this.clock.nowMs() + clockSkewMsMax)) * 1000n;
  }

  /** Refuses messages stamped too far ahead (a clock that runs fast) or too old (stale copies). */
  private admit(peer: string, sentLamport: bigint, out: ReadyBuilder): boolean {
    if (sentLamport > this.futureLimit()) {
      out.reject(peer, 'META_CLOCK_SKEW', `message stamped more than ${clockSkewMsMax} ms ahead of this host's clock`);
      return false;
    }
    const oldest = BigInt(Math.floor(this.clock.nowMs() - messageAgeMsMax)) * 1000n;
    if (sentLamport < oldest) {
      out.reject(peer, 'META_STALE', `message stamped more than ${messageAgeMsMax} ms ago`);
      return false;
    }
    this.lamport.observe(sentLamport);
    return true;
  }

  /** True if this host exchanges the scope with the peer: the cluster with anyone, a resource among its members. */
  private shares(scope: ScopeId, peer: string): boolean {
    const resource = scopeResource(scope);
    if (resource === undefined) return true;
    return this.membership.isMember(resource, this.host) && this.membership.isMember(resource, peer);
  }

  private onPush(peer: string, message: PushMessage, out: ReadyBuilder): void {
    const { accepted, notices } = this.applyEntries(peer, message.entries, out);
    const forward = accepted.filter((item) => parseKey(item.key)?.scope === clusterScope);
    if (forward.length > 0) {
      const targets = pickPeers(this.random, this.membership.hosts(), gossipFanout, new Set([this.host, peer]));
      for (const batch of splitBatches(forward)) {
        const push: PushMessage = { type: 'push', sentLamport: this.lamport.tick(), entries: batch };
        for (const to of targets) out.send(to, push);
      }
    }
    if (notices.length > 0) out.send(peer, this.delta([], [], notices));
  }

  private onDigest(peer: string, message: DigestMessage, out: ReadyBuilder): void {
    const summaries: ScopeSummary[] = [];
    const answers: ScopeDigest[] = [];
    for (const digest of message.scopes) {
      if (!this.shares(digest.scope, peer)) {
        out.reject(peer, 'PEER_NOT_MEMBER', `${peer} and ${this.host} do not share ${digest.scope}`);
        continue;
      }
      if (message.reply === true) answers.push(this.scopeDigest(digest.scope));
      const table = this.tables.get(digest.scope);
      if ((table?.root() ?? 0n) === digest.root) continue;
      if ((table?.size ?? 0) <= keysInlineMax) summaries.push(keySummary(digest.scope, table, allBuckets, summaryItemsMax, 0));
      else summaries.push({ scope: digest.scope, kind: 'buckets', sums: [...table!.buckets()] });
    }
    this.sendSummaries(peer, summaries, out);
    // After the summaries: a root that differs now may be equal once they are answered.
    this.sendDigests(peer, answers, out, false);
  }

  private sendSummaries(peer: string, summaries: ScopeSummary[], out: ReadyBuilder): void {
    let batch: ScopeSummary[] = [];
    let items = 0;
    for (const summary of summaries) {
      const size = summary.kind === 'keys' ? summary.items.length : 0;
      if (batch.length > 0 && (items + size > summaryItemsMax || batch.length >= scopesPerMessageMax)) {
        out.send(peer, { type: 'summary', sentLamport: this.lamport.tick(), scopes: batch } satisfies SummaryMessage);
        batch = [];
        items = 0;
      }
      batch.push(summary);
      items += size;
    }
    if (batch.length > 0) out.send(peer, { type: 'summary', sentLamport: this.lamport.tick(), scopes: batch });
  }

  private onSummary(peer: string, message: SummaryMessage, out: ReadyBuilder): void {
    const replies: ScopeSummary[] = [];
    const send: KeyedEntry[] = [];
    const want: string[] = [];
    for (const summary of message.scopes) {
      if (!this.shares(summary.scope, peer)) {
        out.reject(peer, 'PEER_NOT_MEMBER', `${peer} and ${this.host} do not share ${summary.scope}`);
        continue;
      }
      const table = this.tables.get(summary.scope);
      if (summary.kind === 'buckets') {
        const buckets = differingBuckets(table, summary.sums);
        if (buckets.length > 0) replies.push(keySummary(summary.scope, table, buckets, summaryItemsMax, this.random.int(buckets.length)));
        continue;
      }
      const diff = diffKeys(table, summary);
      send.push(...diff.send);
      want.push(...diff.want);
    }
    this.sendSummaries(peer, replies, out);
    const first = splitBatches(send)[0] ?? [];
    if (first.length > 0 || want.length > 0) out.send(peer, this.delta(first, want.slice(0, wantKeysMax), []));
  }

  private onDelta(peer: string, message: DeltaMessage, out: ReadyBuilder): void {
    const { notices } = this.applyEntries(peer, message.entries, out);
    for (const notice of message.purged) this.applyPurgedNotice(peer, notice, out);
    const answer: KeyedEntry[] = [];
    for (const key of message.want) {
      const info = parseKey(key);
      if (info === undefined || !this.shares(info.scope, peer)) continue;
      const entry = this.tables.get(info.scope)?.get(key);
      if (entry !== undefined) answer.push({ key, entry });
      else this.noticeIfPurged(key, notices);
    }
    const first = splitBatches(answer)[0] ?? [];
    if (first.length > 0 || notices.length > 0) out.send(peer, this.delta(first, [], notices));
  }

  private delta(entries: readonly KeyedEntry[], want: readonly string[], purged: readonly PurgedNotice[]): DeltaMessage {
    return { type: 'delta', sentLamport: this.lamport.tick(), entries, want, purged: purged.slice(0, batchEntriesMax) };
  }

  private noticeIfPurged(key: string, notices: PurgedNotice[]): void {
    const memory = this.purged.get(key);
    if (memory !== undefined) notices.push({ key, lamport: memory.lamport });
  }

  /** Merges entries from a peer; returns the versions that were new here and purge notices for the peer. */
  private applyEntries(peer: string, entries: readonly KeyedEntry[], out: ReadyBuilder): { accepted: KeyedEntry[]; notices: PurgedNotice[] } {
    const accepted: KeyedEntry[] = [];
    const notices: PurgedNotice[] = [];
    // Host records first: they carry the keys that the other entries are checked against.
    const ordered = [...entries.filter((e) => e.key.startsWith(hostKeyPrefix)), ...entries.filter((e) => !e.key.startsWith(hostKeyPrefix))];
    for (const { key, entry } of ordered) {
      const info = this.checkIncoming(peer, key, entry, out);
      if (info === undefined) continue;
      const memory = this.purged.get(key);
      if (memory !== undefined && entry.lamport <= memory.lamport) {
        if (entry.deleted) notices.push({ key, lamport: memory.lamport });
        continue; // an old copy of a purged tombstone, or an even older value: never resurrect
      }
      const table = this.tableFor(info.scope);
      const local = table.get(key);
      if (local === undefined && table.size >= scopeKeysMax) {
        out.reject(peer, 'ENOSPC', `${info.scope}: ${scopeKeysMax} keys already`);
        continue;
      }
      const merged = withSeenBy(mergeEntry(local, entry), this.host);
      if (merged === local) continue;
      this.store(key, info, merged, out);
      if (local === undefined || compareVersions(local, merged) < 0) accepted.push({ key, entry: merged });
    }
    return { accepted, notices };
  }

  /** The checks on one incoming entry that the codec cannot make (they need this host's view). */
  private checkIncoming(peer: string, key: string, entry: Entry, out: ReadyBuilder): KeyInfo | undefined {
    const info = parseKey(key);
    if (info === undefined) {
      out.reject(peer, 'META_BAD_MESSAGE', `bad key ${JSON.stringify(key.slice(0, 300))}`);
      return undefined;
    }
    if (info.owner !== undefined && entry.owner !== info.owner) {
      out.reject(peer, 'META_NOT_OWNER', `${key} written by ${entry.owner}, not by its owner`);
      return undefined;
    }
    if (info.owner !== undefined && !this.signedByOwner(peer, key, info, info.owner, entry, out)) return undefined;
    if (!this.shares(info.scope, peer)) {
      out.reject(peer, 'PEER_NOT_MEMBER', `${key}: ${peer} and ${this.host} are not both members of ${info.resource}`);
      return undefined;
    }
    if (entry.lamport > this.futureLimit()) {
      out.reject(peer, 'META_CLOCK_SKEW', `${key}: stamped more than ${clockSkewMsMax} ms ahead`);
      return undefined;
    }
    if (info.name === 'host' && info.resource === undefined && info.owner !== undefined && !entry.deleted) {
      if (!this.membership.isHost(info.owner) && this.membership.hosts().length >= hostsMax) {
        out.reject(peer, 'EOVERFLOW', `${key}: the cluster has ${hostsMax} hosts already`);
        return undefined;
      }
    }
    this.lamport.observe(entry.lamport);
    return info;
  }

  /**
   * An owned entry must carry its owner's signature under the owner's pinned key. This
   * host takes no other version of its own keys than the ones it holds (only their
   * seen-by sets grow). A host whose key is not known yet: its record is taken if it is
   * signed by the key it carries (first sight), its tombstones as they are (they protect
   * nothing), its other entries are left for a later round (no log: the record is on its way).
   */
  private signedByOwner(peer: string, key: string, info: KeyInfo, owner: string, entry: Entry, out: ReadyBuilder): boolean {
    const isRecord = info.name === 'host' && info.resource === undefined;
    if (owner === this.host) {
      const local = this.tables.get(info.scope)?.get(key);
      const order = local === undefined ? 1 : compareVersions(local, entry);
      if (order !== 0) {
        // An older version this host wrote itself (a peer that has not heard of the newer
        // one yet, or one whose tombstone was purged here) loses to what this host holds:
        // dropped without a word. Anything else is not this host's.
        const own = this.pinnedKey(this.host);
        if (order > 0 && own !== undefined && this.signatureValid(key, entry, own)) return false;
        out.reject(peer, 'META_BAD_SIGNATURE', `${key}: a version of this host's own key that it did not write`);
        return false;
      }
    }
    const pinned = this.pinnedKey(owner);
    if (pinned === undefined) {
      if (entry.deleted) return true;
      if (!isRecord) return false;
      const carried = parseHostRecord(entry.value).signKey;
      if (carried !== undefined && this.signatureValid(key, entry, carried)) return true;
      out.reject(peer, 'META_BAD_SIGNATURE', `${key}: a host record not signed by the key it carries`);
      return false;
    }
    if (!this.signatureValid(key, entry, pinned)) {
      out.reject(peer, 'META_BAD_SIGNATURE', `${key}: not signed by the pinned key of ${owner}`);
      return false;
    }
    if (isRecord && !entry.deleted && parseHostRecord(entry.value).signKey !== pinned) {
      out.reject(peer, 'META_BAD_SIGNATURE', `${key}: would change the pinned key of ${owner}`);
      return false;
    }
    return true;
  }

  private applyPurgedNotice(peer: string, notice: PurgedNotice, out: ReadyBuilder): void {
    const info = parseKey(notice.key);
    if (info === undefined || !this.shares(info.scope, peer)) return;
    const table = this.tables.get(info.scope);
    const entry = table?.get(notice.key);
    if (table === undefined || entry?.deleted !== true || entry.lamport !== notice.lamport) return;
    this.purge(table, notice.key, entry, out);
  }

  // ---- ticks --------------------------------------------------------------------------

  /** One anti-entropy round and tombstone purge; the shell calls it every `antiEntropyIntervalMs`. */
  tick(): Ready {
    const out = new ReadyBuilder();
    this.purgeRound(out);
    this.forgetOldPurges();
    const targets = new Map<string, ScopeDigest[]>();
    const add = (peer: string, scope: ScopeId): void => {
      const list = targets.get(peer) ?? [];
      list.push(this.scopeDigest(scope));
      targets.set(peer, list);
    };
    for (const resource of this.membership.resources()) {
      // Each pair of members is opened by the smaller name; the exchange runs both ways.
      for (const peer of this.membership.membersOf(resource) ?? []) if (this.host < peer) add(peer, resourceScope(resource));
    }
    for (const peer of pickPeers(this.random, this.membership.hosts(), gossipPeersPerTick, new Set([this.host]))) add(peer, clusterScope);
    for (const [peer, digests] of targets) this.sendDigests(peer, digests, out);
    return out.finish();
  }

  /** A connection to the peer is (re)established: exchange every shared scope now, not at the next tick. */
  peerConnected(peer: string): Ready {
    return this.exchange(peer, false);
  }

  /**
   * Opens an exchange of every scope shared with the peer now; with `askReply`, the peer
   * also answers with its own digests, so that the shell can tell when both hold the same
   * (wait-cluster, leave-cluster).
   */
  exchange(peer: string, askReply: boolean): Ready {
    const out = new ReadyBuilder();
    if (peer === this.host) return out.finish();
    this.sendDigests(peer, this.sharedDigests(peer), out, askReply);
    return out.finish();
  }

  /** The digests of every scope this host shares with the peer (the cluster, and common resources). */
  sharedDigests(peer: string): ScopeDigest[] {
    const digests = [this.scopeDigest(clusterScope)];
    for (const resource of this.membership.resources()) {
      if (this.membership.isMember(resource, peer)) digests.push(this.scopeDigest(resourceScope(resource)));
    }
    return digests;
  }

  scopeDigest(scope: ScopeId): ScopeDigest {
    const table = this.tables.get(scope);
    return { scope, root: table?.root() ?? 0n, count: table?.size ?? 0 };
  }

  private sendDigests(peer: string, digests: readonly ScopeDigest[], out: ReadyBuilder, askReply = false): void {
    for (let i = 0; i < digests.length; i += scopesPerMessageMax) {
      const scopes = digests.slice(i, i + scopesPerMessageMax);
      const head = { type: 'digest', sentLamport: this.lamport.tick(), scopes } as const;
      out.send(peer, askReply ? { ...head, reply: true } : head);
    }
  }

  /**
   * Purges a tombstone once every member of its scope is in its seen-by set and has been
   * for `tombstonePurgeDelayMs`: by then every message sent before a member had the
   * tombstone is older than `messageAgeMsMax` and is refused, so nothing can bring back
   * an older value of the key.
   */
  private purgeRound(out: ReadyBuilder): void {
    const nowMs = this.clock.nowMs();
    for (const table of [...this.tables.values()]) {
      if (table.tombstones().size === 0) continue;
      const resource = scopeResource(table.scope);
      const members = resource === undefined ? this.membership.hosts() : [...(this.membership.membersOf(resource) ?? [])];
      for (const key of [...table.tombstones()]) {
        const entry = table.get(key)!;
        const seen = new Set(entry.seenBy);
        if (members.length === 0 || !members.every((host) => seen.has(host))) {
          this.completeSinceMs.delete(key);
          continue;
        }
        const since = this.completeSinceMs.get(key);
        if (since === undefined) this.completeSinceMs.set(key, nowMs);
        else if (nowMs - since >= tombstonePurgeDelayMs) this.purge(table, key, entry, out);
      }
    }
  }

  private purge(table: ScopeTable, key: string, entry: Entry, out: ReadyBuilder): void {
    table.remove(key);
    this.completeSinceMs.delete(key);
    this.purged.delete(key);
    this.purged.set(key, { lamport: entry.lamport, atMs: this.clock.nowMs() });
    if (this.purged.size > purgedMemoryCountMax) {
      const oldest = this.purged.keys().next();
      if (oldest.done !== true) this.purged.delete(oldest.value);
    }
    if (table.size === 0) this.tables.delete(table.scope);
    out.persist(table.scope);
  }

  private forgetOldPurges(): void {
    const oldestMs = this.clock.nowMs() - purgedMemoryMsMax;
    for (const [key, memory] of this.purged) {
      if (memory.atMs >= oldestMs) break; // insertion order is purge order
      this.purged.delete(key);
    }
  }
}
