/**
 * marsd's cluster membership and metadata: the metadata core (MetaNode) loaded from
 * DIR/meta, its Readies carried out by the MetaShell, the peer connections, the join
 * channel, and an anti-entropy tick. Everything that decides lives in the core; this is
 * the wiring to files, sockets and timers.
 *
 * Frames from peers reach the core only after the handshake (PeerLink exists only then)
 * and after the codec (the edge); what the core refuses is logged once per peer and
 * reason (RefusalLog). Other areas see the metadata through `get`, `set` and `onChange`.
 */
import { randomInt } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { Random } from '../core/random.js';
import {
  clusterScope,
  decodeMetaMessage,
  hostKey,
  hostRecordValue,
  mergeKey,
  MetaNode,
  MetaStore,
  metaLimits,
  parseKey,
  type HostRecord,
  type JsonValue,
  type MetaMessage,
  type SigningKey,
  evictedHosts,
  evictedKey,
  joinReadies,
  removedHosts,
  removedKey,
  type Ready,
} from '../meta/index.js';
import { FrameType, RefusalLog, systemTimers, type ChannelName, type Frame, type PeerLink, type PeerLog, type TlsOptions } from '../net/index.js';
import { FsStorage } from '../storage/fs-storage.js';
import { adoptIdentity, loadIdentity, openMerge, parseMergeValue, repairIdentity, type HostIdentity } from './identity.js';
import { hostKeyPath, loadOrCreateHostKey } from './host-key.js';
import { serveJoin } from './join-protocol.js';
import { MetaShell } from './meta-shell.js';
import { reservationKey, reservationKeyPrefix, reservedElsewhere, withReservation } from './name-reservations.js';
import { PeerManager } from './peers.js';
import { parseAddress, paths, type HostConfig } from './state-dir.js';

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface ClusterOptions {
  readonly dir: string;
  readonly hostConfig: HostConfig;
  readonly clock: Clock;
  readonly tls: TlsOptions | undefined;
  readonly log: LogFn;
  /** A peer link that receives nothing for this long is closed (MARS_INTERVALS peerIdleMs; default src/net/limits.ts). */
  readonly linkIdleMs?: number;
}

/** The roots a peer last reported for the scopes it shares with this host (its digests). */
export interface PeerDigest {
  readonly roots: ReadonlyMap<string, { readonly root: bigint; readonly atMs: number }>;
}

function peerLog(log: LogFn): PeerLog & { error(f: Record<string, unknown>, m: string): void; info(f: Record<string, unknown>, m: string): void } {
  return {
    warn: (fields, message) => log('warn', message, fields),
    error: (fields, message) => log('error', message, fields),
    info: (fields, message) => log('info', message, fields),
  };
}

/** The IP address in "IP:PORT" or "[IPv6]:PORT", IPv4-mapped IPv6 folded to IPv4. */
export function ipOf(address: string): string | undefined {
  try {
    return parseAddress(address).host.replace(/^::ffff:/i, '');
  } catch {
    return undefined;
  }
}

export class Cluster {
  readonly node: MetaNode;
  readonly peers: PeerManager;
  private readonly shell: MetaShell;
  private readonly refusals: RefusalLog;
  private readonly digests = new Map<string, PeerDigest>();
  private readonly changeListeners: ((keys: readonly string[]) => void)[] = [];
  private onceListeners: (() => void)[] = [];
  private tickTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private adopting: Promise<void> = Promise.resolve();
  private bulkHandler: ((link: PeerLink) => void) | undefined;

  private constructor(
    private readonly o: ClusterOptions,
    private config: HostConfig,
    private identityValue: HostIdentity,
    signingKey: SigningKey,
    node: MetaNode,
    store: MetaStore,
  ) {
    this.node = node;
    this.refusals = new RefusalLog(peerLog(o.log), o.clock);
    this.shell = new MetaShell({
      node,
      store,
      send: (to, type, payload) => this.peers.send(to, type, payload),
      onChanged: (keys) => this.changed(keys),
      onRejected: (peer, code, detail) => this.refusals.refused(`${peer} at ${this.peers.remoteAddress(peer)}`, code, detail, peer),
      onPersistError: (error) => o.log('error', `cannot write metadata (nothing is sent until it can): ${error.message}`, { code: error.code }),
    });
    this.peers = new PeerManager({
      self: config.host,
      listen: config.listen,
      identity: () => this.identityValue,
      signingKey,
      peerKey: (host) => this.node.pinnedKey(host),
      tls: o.tls,
      clock: o.clock,
      timers: systemTimers,
      ...(o.linkIdleMs === undefined ? {} : { linkIdleMs: o.linkIdleMs }),
      random: new Random(randomInt(2 ** 31)),
      log: peerLog(o.log),
      acceptPeer: (host, channel, remote) => this.acceptPeer(host, channel, remote),
      isKnownAddress: (ip) => this.isKnownAddress(ip),
      onFrame: (peer, frame, link) => this.onFrame(peer, frame, link),
      onPeerUp: (peer) => this.shell.applyQuietly(this.node.peerConnected(peer)),
      onJoinLink: (link) => this.onJoinLink(link),
      onBulkLink: (link) => (this.bulkHandler === undefined ? link.close() : this.bulkHandler(link)),
    });
  }

  /** Loads identity and metadata. Throws META_CORRUPT naming every damaged file (the daemon does not start). */
  static async open(o: ClusterOptions): Promise<Cluster> {
    const metaDir = paths.metaDir(o.dir);
    await mkdir(metaDir, { recursive: true, mode: 0o700 });
    const store = new MetaStore(new FsStorage(metaDir), metaDir);
    const loaded = await store.load(); // META_CORRUPT names every damaged file: the daemon does not start
    if (loaded.ignored.length > 0) o.log('warn', `${metaDir}: ignoring files that are not metadata: ${loaded.ignored.join(', ')}`);
    const { key, created } = await loadOrCreateHostKey(o.dir);
    if (created) o.log('warn', `${hostKeyPath(o.dir)} was missing: made a new host key (peers pin it on first sight)`);
    const node = new MetaNode({ host: o.hostConfig.host, clock: o.clock, random: new Random(randomInt(2 ** 31)), signingKey: key, snapshot: loaded.snapshot });
    let identity = await loadIdentity(o.dir, o.hostConfig);
    const config = await repairIdentity(o.dir, o.hostConfig, identity, node.get(mergeKey));
    if (config !== o.hostConfig) identity = await loadIdentity(o.dir, config);
    return new Cluster(o, config, identity, key, node, store);
  }

  get host(): string {
    return this.config.host;
  }

  get hostConfig(): HostConfig {
    return this.config;
  }

  get identity(): HostIdentity {
    return this.identityValue;
  }

  /**
   * Follows `cluster/merge`: when it tells this host's cluster to adopt another identity,
   * and opens with this host's secret, move to it (files first, then the connections).
   * Serialised: changes may arrive while a move is being written.
   */
  adoptMerge(): Promise<void> {
    this.adopting = this.adopting.catch(() => undefined).then(async () => {
      const value = parseMergeValue(this.node.get(mergeKey));
      const current = this.identityValue.current;
      if (value === undefined || value.clusterId === current.clusterId) return;
      const next = openMerge(value, current);
      if (next === undefined) return; // meant for another cluster's hosts, or not for us
      this.config = await adoptIdentity(this.o.dir, this.config, current, next);
      this.identityValue = { current: next, former: current };
      this.peers.identityChanged();
      this.o.log('info', `merged: this host now belongs to cluster ${next.clusterId} (was ${current.clusterId})`);
    });
    return this.adopting.catch((err: unknown) => this.o.log('error', `cannot adopt the merged cluster's identity: ${(err as Error).message}`));
  }

  onChange(listener: (keys: readonly string[]) => void): void {
    this.changeListeners.push(listener);
  }

  /** Calls `listener` once, at the next change of any key; the result cancels it. */
  onceChanged(listener: () => void): () => void {
    this.onceListeners.push(listener);
    return () => {
      this.onceListeners = this.onceListeners.filter((l) => l !== listener);
    };
  }

  /**
   * Resolves once `predicate` holds, checking at every metadata change and every
   * `recheckMs` (for local state that changes without a key); TIMEOUT after `timeoutMs`.
   */
  async waitUntil(what: string, predicate: () => boolean, timeoutMs: number, recheckMs = 50): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (predicate()) return;
      const rest = deadline - Date.now();
      if (rest <= 0) throw new MarsError('TIMEOUT', `${what}: not within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          cancel();
          resolve();
        }, Math.min(rest, recheckMs));
        const cancel = this.onceChanged(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * The hook of the bulk areas (log fetch, sync): authenticated links on their channels go
   * to `handler`; without one they are refused in the handshake. Dial with
   * `peers.dialChannel(host, 'fetch' | 'sync')`.
   */
  setBulkHandler(handler: ((link: PeerLink) => void) | undefined): void {
    this.bulkHandler = handler;
  }

  /** Starts listening, dialling the known hosts, and the anti-entropy tick. */
  async start(): Promise<void> {
    await this.adoptMerge();
    await this.shell.apply(this.node.signOwnEntries());
    const removed = this.removed();
    for (const host of this.node.hosts()) if (!removed.has(host)) this.peers.setHost(host, this.node.hostRecord(host)?.address);
    await this.peers.listen();
    this.scheduleTick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.tickTimer !== undefined) clearTimeout(this.tickTimer);
    await this.peers.close();
  }

  /** After leave-cluster: stop, and let no metadata write reach the store any more. */
  async stopForGood(): Promise<void> {
    await this.stop();
    await this.shell.close();
  }

  private scheduleTick(): void {
    if (this.stopped) return;
    this.tickTimer = setTimeout(() => {
      this.shell.retryDirty();
      this.shell.applyQuietly(this.node.tick());
      this.scheduleTick();
    }, metaLimits.antiEntropyIntervalMs);
    this.tickTimer.unref();
  }

  // ---- the metadata, for the rest of the daemon ---------------------------------------

  get(key: string): JsonValue | undefined {
    return this.node.get(key);
  }

  /** Sets a key (if its value differs) and resolves once it is durable and sent. */
  async set(key: string, value: unknown): Promise<void> {
    const canonical = this.node.valueToWrite(key, value);
    const current = this.node.get(key);
    if (canonical !== undefined && current !== undefined && JSON.stringify(canonical) === JSON.stringify(current)) return;
    await this.shell.apply(this.node.set(key, value));
  }

  async delete(key: string): Promise<void> {
    await this.shell.apply(this.node.delete(key));
  }

  /**
   * Sets several keys (those whose value differs) with one durable write per scope they
   * touch, instead of one write after another: keys of one scope land together or not at
   * all. Resolves once they are durable and sent. A refused key (set throws) is refused
   * as by set(): the keys before it are still written, then the error is thrown.
   */
  async setMany(entries: readonly (readonly [string, unknown])[]): Promise<void> {
    const changes = entries.filter(([key, value]) => {
      const canonical = this.node.valueToWrite(key, value);
      const current = this.node.get(key);
      return canonical === undefined || current === undefined || JSON.stringify(canonical) !== JSON.stringify(current);
    });
    const readies: Ready[] = [];
    let refused: Error | undefined;
    for (const [key, value] of changes) {
      try {
        readies.push(this.node.set(key, value));
      } catch (err) {
        refused = err instanceof Error ? err : new MarsError('EINVAL', String(err));
        break;
      }
    }
    if (readies.length > 0) await this.shell.apply(joinReadies(readies));
    if (refused !== undefined) throw refused;
  }

  /** Runs a Ready from the core (exchange, receive) through the shell. */
  apply(ready: Parameters<MetaShell['apply']>[0]): Promise<void> {
    return this.shell.apply(ready);
  }

  ownRecord(): HostRecord | undefined {
    return this.node.hostRecord(this.host);
  }

  /** Sets this host's record (address and resources). */
  async setOwnRecord(record: HostRecord): Promise<void> {
    await this.set(hostKey(this.host), hostRecordValue(record));
  }

  /**
   * The hosts of the cluster: those with a host record, less those removed with
   * leave-cluster --host (their records stay, signed by them; the removal is a key of its own).
   */
  hosts(): string[] {
    const removed = this.removed();
    return this.node.hosts().filter((h) => !removed.has(h));
  }

  /** Removed hosts, each with the host that removed it (leave-cluster --host). */
  removed(): Map<string, string> {
    const removed = new Map<string, string>();
    for (const key of this.node.keys('cluster/removed/')) {
      const remover = parseKey(key)?.owner;
      if (remover === undefined) continue;
      for (const host of removedHosts(this.node.get(key))) if (!removed.has(host)) removed.set(host, remover);
    }
    return removed;
  }

  /** leave-cluster --host DEAD: adds DEAD to this host's signed list of removed hosts. */
  async removeHost(dead: string): Promise<void> {
    const mine = new Set(removedHosts(this.node.get(removedKey(this.host))));
    mine.add(dead);
    await this.set(removedKey(this.host), [...mine].sort());
    this.peers.setHost(dead, undefined);
  }

  /** Hosts whose record lists the resource (any host; members or not of it ourselves). */
  hostsListing(resource: string): string[] {
    const evicted = evictedHosts(this.node.get(evictedKey(resource)));
    return this.node
      .hosts()
      .filter((h) => this.node.hostRecord(h)?.resources.includes(resource) === true && !evicted.includes(h))
      .sort();
  }

  /** Every resource name some host lists. */
  allResources(): Set<string> {
    const names = new Set<string>();
    for (const h of this.node.hosts()) for (const r of this.node.hostRecord(h)?.resources ?? []) names.add(r);
    return names;
  }

  lastDigest(peer: string): PeerDigest | undefined {
    return this.digests.get(peer);
  }

  // ---- events -------------------------------------------------------------------------

  private changed(keys: readonly string[]): void {
    for (const key of keys) {
      const info = parseKey(key);
      if (info?.scope === clusterScope && info.name === 'host' && info.owner !== undefined) {
        this.peers.setHost(info.owner, this.removed().has(info.owner) ? undefined : this.node.hostRecord(info.owner)?.address);
      }
      if (info?.scope === clusterScope && info.name === 'removed') for (const host of this.removed().keys()) this.peers.setHost(host, undefined);
    }
    if (keys.includes(mergeKey)) void this.adoptMerge();
    for (const listener of this.changeListeners) listener(keys);
    for (const listener of this.onceListeners.splice(0)) listener();
  }

  private onFrame(peer: string, frame: Frame, link: PeerLink): void {
    if (frame.type !== FrameType.meta) {
      this.refusals.refused(link.info.remoteAddress, 'BAD_REQUEST', `${peer} sent frame type ${frame.type} on the metadata channel`);
      link.close();
      return;
    }
    let message: MetaMessage;
    try {
      message = decodeMetaMessage(frame.payload);
    } catch (err) {
      const error = err instanceof MarsError ? err : new MarsError('META_BAD_MESSAGE', String(err));
      this.refusals.refused(`${peer} at ${link.info.remoteAddress}`, error.code, error.message);
      return;
    }
    if (message.type === 'digest') this.noteDigest(peer, message.scopes);
    this.shell.applyQuietly(this.node.receive(peer, message));
  }

  private noteDigest(peer: string, scopes: readonly { scope: string; root: bigint }[]): void {
    const roots = new Map(this.digests.get(peer)?.roots ?? []);
    const atMs = this.o.clock.nowMs();
    for (const s of scopes) roots.set(s.scope, { root: s.root, atMs });
    this.digests.set(peer, { roots });
  }

  /** The member that reserved `host` for another address at a join (name-reservations.ts), if any. */
  private reservedElsewhere(host: string, remoteAddress: string): boolean {
    const values = this.node.keys(reservationKeyPrefix).map((key): [string, JsonValue] => [key.slice(reservationKeyPrefix.length), this.node.get(key) ?? null]);
    return reservedElsewhere(values, host, ipOf(remoteAddress) ?? remoteAddress, this.o.clock.nowMs()) !== undefined;
  }

  private acceptPeer(host: string, channel: ChannelName, remoteAddress: string): boolean {
    const record = this.node.hostRecord(host);
    // A name already in the cluster, or reserved by another joiner, cannot join (or merge) again.
    if (channel === 'join') return record === undefined && !this.reservedElsewhere(host, remoteAddress);
    if (channel !== 'meta' && (this.bulkHandler === undefined || record === undefined)) return false; // bulk data only between known hosts
    if (record === undefined) return !this.reservedElsewhere(host, remoteAddress); // a new member, proven by the secret: its record follows
    const expected = ipOf(record.address);
    if (expected === undefined || expected === '0.0.0.0' || expected === '::') return true;
    return ipOf(remoteAddress) === expected;
  }

  private isKnownAddress(ip: string): boolean {
    for (const host of this.node.hosts()) {
      if (host !== this.host && ipOf(this.node.hostRecord(host)?.address ?? '') === ip) return true;
    }
    return false;
  }

  private onJoinLink(link: PeerLink): void {
    this.o.log('info', `sending the cluster's metadata to ${link.peerHost} at ${link.info.remoteAddress} (join channel)`);
    const ip = ipOf(link.info.remoteAddress) ?? link.info.remoteAddress;
    serveJoin(link, this.node.exportScope(clusterScope), this.node.stamp())
      .then(() => this.set(reservationKey(this.host), withReservation(this.node.get(reservationKey(this.host)), link.peerHost, ip, this.o.clock.nowMs())))
      .catch((err: unknown) => {
        this.o.log('warn', `join channel to ${link.info.remoteAddress} failed: ${(err as Error).message}`);
        link.close();
      });
  }
}
