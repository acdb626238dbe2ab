/**
 * A secondary's replication of one resource: fast full sync of the device from the
 * primary (when the copy is not consistent yet), fetch of the primary's log into local
 * copies, and replay of those copies onto the device. Each part has the operator's switch
 * (pause-sync, pause-fetch, pause-replay); `up`/`down` start and stop the whole.
 *
 * Order and consistency (docs/replication.md, docs/sync.md):
 * - a joining host has no replay position: sync runs; its first session records the
 *   primary's written-back position (the start position); fetch begins at that log at
 *   once, while sync copies the device;
 * - replay starts only once sync is done, from the start position (or the persisted replay
 *   position, after a restart), and the copy is consistent once replay has persisted a
 *   position at or beyond the sync's end position; then the sync state file goes;
 * - a host with a replay position and no sync state is consistent: fetch and replay
 *   continue from where they stopped; except while replay is below its dirty mark
 *   (`dirty-HOST`: the device may hold records beyond the position from before a crash),
 *   which, like the sync's end, is reached only on its own history.
 *
 * What decides is one value (src/strategy/replica-state.ts: the phase, the persisted
 * position, a failure, a handover's target, what the indicator was told), changed only by
 * `takeStep`; the class holds the handles that carry its decisions out.
 *
 * The version chain (src/replay/version-chain.ts) gains one link per log replayed to its end.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { doublingDelayMs, repeatEvery, type TimerHandle } from '../core/timers.js';
import type { Random } from '../core/random.js';
import { FetchClient, LocalCopies, Replayer, staleSyncCopies, type FetchStatus, type LogInfo, type ReplayedLog, type VerifyStart } from '../fetch/index.js';
import { fetchBackoffMsMax, replayNoSpaceRetryMsMax, replayNoSpaceRetryMsMin } from '../fetch/limits.js';
import { formatLogName, listLogFiles, parseLogName } from '../log/index.js';
import { PeerConnection, type PeerLink, type Timers } from '../net/index.js';
import { dirtyMarkFileName, loadDirtyMark, loadPosition, saveDirtyMark, savePosition, type DirtyMark, type ReplayPosition } from '../replay/position.js';
import { decodeChain, emptyChain, encodeChain, extendChainOnce, lastVersion, type VersionChain } from '../replay/version-chain.js';
import { fileSize, type Storage, type StorageFile } from '../storage/storage.js';
import { loadSyncState, removeSyncState, SyncTarget } from '../sync/index.js';
import { EmergencyFile } from '../logger/emergency-file.js';
import { openPhase, replicaStateAt, replicaStep, type PlaceLog, type ReplicaPhase, type ReplicaState, type ReplicaStateDecision, type ReplicaStateEvent, type ReplicaStateStep } from '../strategy/index.js';
import type { Bandwidth } from './bandwidth.js';
import type { CompressionName } from '../compress/index.js';
import { ReplicaRates } from './replica-rates.js';

/** The operator's switches of a secondary (`resource/R/desired/HOST`). */
export interface ReplicaSwitches {
  readonly fetch: boolean;
  readonly replay: boolean;
  readonly sync: boolean;
}

export interface ReplicaOptions {
  readonly resource: string;
  readonly host: string;
  readonly storage: Storage;
  readonly device: StorageFile;
  readonly sizeBytes: number;
  /** The device's own size (≥ sizeBytes): replay accepts records up to it, so that a resize's zero records may arrive before the new size. */
  readonly deviceBytes: number;
  /** The designated primary now (fetch and sync dial it). */
  readonly primary: () => string;
  readonly dial: (host: string, channel: 'fetch' | 'sync') => Promise<PeerLink>;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  readonly switches: ReplicaSwitches;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Something the indicator shows changed (consistency, the log this host still needs, a failure). */
  readonly onChange: () => void;
  /** Sync rate limit in bytes per second (0 = unlimited). */
  readonly syncRateBytesPerS?: number;
  /** The host's bandwidth limits for fetch and sync (and sync's yielding to fetch). */
  readonly bandwidth?: Bandwidth;
  /** Compressions this host can receive log data in. */
  readonly compressions?: readonly CompressionName[];
  /** Whether the resource is in near-sync mode (fetch then fdatasyncs and acknowledges at once). */
  readonly nearSync?: (resource: string) => boolean;
  /** Fetch connections to the source (marsd --parallel-connections). */
  readonly parallelConnections?: number;
  /** How long a failed fetch waits before it starts again (default fetchRetryAfterFailureMs; MARS_INTERVALS fetchRetryMs). */
  readonly fetchRetryMs?: number;
  /** Throws ENOSPC when fetch may not write `bytes` more into the log filesystem (the state reserve). */
  readonly copyRoom?: (bytes: number) => Promise<void>;
}

export interface ReplicaStatus {
  consistent: boolean;
  switches: ReplicaSwitches;
  sync: { state: string; sizeBytes: number; doneBytes: number; restBytes: number; rateBytesPerS: number; progressBytesPerS: number; rateLimitBytesPerS: number; receivedBytes: number; sentBytes: number; error: string | null; compression?: string | null } | null;
  /** restBytes: null while unknown (fetch does not run here, or has not heard the source's logs since it started). */
  fetch: { state: string; source: string; logName: string | null; localBytes: number; restBytes: number | null; rateBytesPerS: number; error: string | null; compression?: string | null; lastContactS?: number | null; connections?: number };
  replay: { state: string; position: PositionJson | null; restBytes: number; rateBytesPerS: number; error: string | null };
}

export interface PositionJson {
  logNumber: number;
  logHost: string;
  offsetBytes: number;
  nextSeq: string;
}

/** A fetch that failed for a reason other than diverged histories starts again after this long. */
export const fetchRetryAfterFailureMs = 5_000;

/** Replay checkpoints this long after it last caught up, or every 64 MiB, not at every catch-up. */
export const replayIdleCheckpointMs = 200;

/** How often the fetch and replay rates are sampled. */
export const rateSampleIntervalMs = 1000;

export const versionChainFilePrefix = 'versions-';
/** Links a stored chain keeps (older ones fold into its base version). */
export const versionChainEntriesMax = 1024;

export function positionJson(p: ReplayPosition): PositionJson {
  return { logNumber: p.logNumber, logHost: p.logHost, offsetBytes: p.offsetBytes, nextSeq: p.nextSeq.toString() };
}

export async function loadChain(storage: Storage, host: string): Promise<VersionChain> {
  const name = `${versionChainFilePrefix}${host}`;
  const raw = await storage.readAll(name);
  return raw === undefined ? emptyChain : decodeChain(raw, name);
}

export async function saveChain(storage: Storage, host: string, chain: VersionChain): Promise<void> {
  let kept = chain;
  if (chain.entries.length > versionChainEntriesMax) {
    const cut = chain.entries.length - versionChainEntriesMax;
    kept = { baseVersion: chain.entries[cut - 1]!.version, entries: chain.entries.slice(cut) };
  }
  await storage.writeAtomic(`${versionChainFilePrefix}${host}`, encodeChain(kept));
}

/** Bytes of the logs in `files` from `from` to their end. */
function bytesAfter(from: ReplayPosition, files: readonly { name: string; sizeBytes: number }[]): number {
  let total = 0;
  for (const f of files) {
    const n = parseLogName(f.name)?.logNumber ?? 0;
    if (n === from.logNumber) total += Math.max(0, f.sizeBytes - from.offsetBytes);
    else if (n > from.logNumber) total += f.sizeBytes;
  }
  return total;
}

/**
 * A former primary's last log file may be empty: a primary starts a fresh log at every
 * start, and this one received no write before the host became secondary. It holds no
 * record, but its name would claim its number for this host's history while the new
 * primary writes a log of that number: it is removed (and a replay position at its start
 * moves to the end of the log before it).
 */
async function dropEmptyOwnTail(storage: Storage, host: string): Promise<void> {
  const files = await listLogFiles(storage);
  const last = files.at(-1);
  const previous = files.at(-2);
  if (last === undefined || previous === undefined || last.host !== host || previous.logNumber !== last.logNumber - 1) return;
  const sizeOf = (name: string): Promise<number> => fileSize(storage, name);
  if ((await sizeOf(last.name)) !== 0) return;
  const position = await loadPosition(storage, host);
  if (position !== undefined && (position.logNumber > last.logNumber || (position.logNumber === last.logNumber && position.offsetBytes !== 0))) return;
  if (position?.logNumber === last.logNumber) {
    await savePosition(storage, host, { logNumber: previous.logNumber, logHost: previous.host, offsetBytes: await sizeOf(previous.name), nextSeq: position.nextSeq });
  }
  await storage.remove(last.name);
  await storage.syncDir();
}

/** The local copy with log number `logNumber`: its origin and length (it tells which history replay went through there). */
async function copyOfLog(storage: Storage, logNumber: number): Promise<PlaceLog | undefined> {
  const file = (await listLogFiles(storage)).find((f) => f.logNumber === logNumber);
  return file === undefined ? undefined : { logHost: file.host, lengthBytes: await fileSize(storage, file.name) };
}

function verifyStartOf(p: ReplayPosition | undefined): VerifyStart | undefined {
  return p === undefined ? undefined : { name: formatLogName(p.logNumber, p.logHost), offsetBytes: p.offsetBytes, nextSeq: p.nextSeq };
}

export class Replica {
  private sync: SyncTarget | undefined;
  private syncConnection: PeerConnection | undefined;
  private fetch: FetchClient | undefined;
  private replayer: Replayer | undefined;
  private switches: ReplicaSwitches;
  private chain: VersionChain;
  /**
   * What the copy's state decides from, one value (src/strategy/replica-state.ts): the phase
   * (syncing, replaying to the sync's end or the dirty mark, consistent, off the history),
   * the persisted position, a failure, a handover's target, what the indicator was told.
   * Changed only by `takeStep`.
   */
  private state: ReplicaState<ReplayPosition>;
  private stopped = false;
  private fetchSource = '';
  private readonly rates: ReplicaRates;
  private switching: Promise<void> = Promise.resolve();
  private sampler: { stop(): void } | undefined;
  /** Fetch stopped because this host's log filesystem is low (the space monitor's emergency stage); not an operator's switch. */
  private spacePaused = false;
  private afterSyncPersist: Promise<void> = Promise.resolve();
  /** Replay waited for room at the last sample (its start and end are logged). */
  private replayWaitedForRoom = false;

  private constructor(
    private readonly o: ReplicaOptions,
    readonly copies: LocalCopies,
    state: ReplicaState<ReplayPosition>,
    chain: VersionChain,
  ) {
    this.switches = o.switches;
    this.state = state;
    this.chain = chain;
    this.rates = new ReplicaRates(o.clock);
  }

  /** Opens the local state: copies (the last one verified and cut), replay position, sync state, version chain. */
  static async open(o: ReplicaOptions): Promise<Replica> {
    await dropEmptyOwnTail(o.storage, o.host);
    // The first copy may begin at the sync's start (a hole before it): verified from where
    // replay is, or from the sync's start before replay ran; both are record boundaries.
    const held: { replica?: Replica } = {};
    const atOpen = (await loadPosition(o.storage, o.host)) ?? (await loadSyncState(o.storage).catch(() => undefined))?.startPosition;
    const copies = await LocalCopies.open(o.storage, () => verifyStartOf(held.replica?.replayStart ?? atOpen), o.copyRoom);
    try {
      held.replica = await Replica.openWith(o, copies);
      return held.replica;
    } catch (err) {
      // The copy being appended is open: close it rather than leave it to the garbage collector.
      await copies.close().catch(() => undefined);
      throw err;
    }
  }

  private static async openWith(o: ReplicaOptions, copies: LocalCopies): Promise<Replica> {
    if (copies.lastCheck !== undefined && copies.lastCheck.cutBytes > 0) {
      o.log('warn', `local copy ${copies.lastCheck.name} of ${o.resource} cut by ${copies.lastCheck.cutBytes} bytes after its last valid record: ${copies.lastCheck.reason ?? 'torn tail'}`, { resource: o.resource });
    }
    const position = await loadPosition(o.storage, o.host);
    let syncRecord = await loadSyncState(o.storage);
    if (syncRecord !== undefined && (syncRecord.resource !== o.resource || syncRecord.sizeBytes !== o.sizeBytes)) syncRecord = undefined;
    // Without a replay position replay never ran on this device's present history (a sync
    // comes first): an old mark means nothing, and the phase says to remove it.
    const dirtyMarkFile = await o.storage.exists(dirtyMarkFileName(o.host));
    const dirtyMark = position === undefined ? undefined : await loadDirtyMark(o.storage, o.host);
    const syncEnd = syncRecord?.endPosition;
    // A copy of the log the sync's end or the dirty mark names tells, for a position in a later log, which history replay went through.
    const copyBefore = (place: DirtyMark | undefined): Promise<PlaceLog | undefined> =>
      place === undefined || position === undefined || position.logNumber <= place.logNumber ? Promise.resolve(undefined) : copyOfLog(o.storage, place.logNumber);
    const opened = openPhase<ReplayPosition>({
      position,
      sync: syncRecord === undefined ? undefined : { start: syncRecord.startPosition, end: syncEnd },
      dirtyMarkFile,
      dirtyMark,
      syncEndLog: await copyBefore(syncEnd),
      dirtyMarkLog: await copyBefore(dirtyMark),
      // A former primary that stopped in emergency mode (another host took over with --force).
      directWrites: (await EmergencyFile.read(o.storage, o.host).catch(() => undefined))?.mode === 'emergency',
    });
    for (const d of opened.decisions) {
      if (d.kind === 'remove-sync-state') {
        await removeSyncState(o.storage);
      } else if (d.kind === 'remove-dirty-mark') {
        await o.storage.remove(dirtyMarkFileName(o.host));
      } else if (d.kind === 'off-history') {
        o.log('error', `${o.resource} is not consistent: ${d.reason}`, { resource: o.resource });
      }
    }
    const chain = await loadChain(o.storage, o.host);
    const replica = new Replica(o, copies, replicaStateAt(opened.phase, position), chain);
    const dirty = opened.phase.kind === 'replaying' ? opened.phase.dirtyUntil : undefined;
    if (dirty !== undefined) {
      o.log('warn', `${o.resource} is not consistent: before a crash replay wrote the device up to ${dirty.logNumber}:${dirty.offsetBytes} of ${dirty.logHost}, beyond its saved position ${position?.logNumber}:${position?.offsetBytes}; consistent again once replay gets there (the records are fetched from the primary if the local copy lost them)`, { resource: o.resource });
    }
    return replica;
  }

  get consistent(): boolean {
    return this.syncedNow && this.dirtyUntil === undefined;
  }

  /** Where the copy stands now (the phase and what goes with it). */
  private get phase(): ReplicaPhase<ReplayPosition> {
    return this.state.phase;
  }

  /** The persisted replay position as this replica last saved or found it. */
  private get position(): ReplayPosition | undefined {
    return this.state.position;
  }

  /** Takes the next value of the state and carries out what it says (the sync state's removal comes first: see persist). */
  private takeStep(step: ReplicaStateStep<ReplayPosition>): void {
    this.state = step.state;
    this.say(step.decisions);
  }

  private step(event: ReplicaStateEvent<ReplayPosition>): readonly ReplicaStateDecision<ReplayPosition>[] {
    const step = replicaStep(this.state, event);
    this.takeStep(step);
    return step.decisions;
  }

  /** Says what a step decided: the daemon log, and the indicator (once per step, last). */
  private say(decisions: readonly ReplicaStateDecision<ReplayPosition>[]): void {
    const r = this.o.resource;
    for (const d of decisions) {
      if (d.kind === 'off-history') this.o.log('error', `${r} is not consistent: ${d.reason}`, { resource: r });
      if (d.kind === 'now-consistent' && d.after !== 'dirty-mark') this.o.log('info', `${r} is consistent: replay reached the end position of the sync`, { resource: r });
      if (d.kind === 'now-consistent' && d.after !== 'sync') this.o.log('info', `${r} is consistent again: replay passed where it had written the device before the crash`, { resource: r });
    }
    if (decisions.some((d) => d.kind === 'tell')) this.o.onChange();
  }

  /** Sync done (or not needed): consistent but for a dirty mark. */
  get synced(): boolean {
    return this.syncedNow;
  }

  /** No sync runs, and replay has persisted the end of the last one (the dirty mark aside: the replayer keeps it). */
  private get syncedNow(): boolean {
    return this.phase.kind === 'consistent' || (this.phase.kind === 'replaying' && this.phase.syncEnd === undefined);
  }

  /** While replay is below its dirty mark (after a crash): how far it must get to be consistent again. */
  get dirtyUntil(): DirtyMark | undefined {
    const phase = this.phase;
    if (phase.kind !== 'replaying' || phase.dirtyUntil === undefined) return undefined;
    // Replay may have applied past the mark before it persists a position there (the phase hears of persisted ones).
    return this.replayer === undefined ? phase.dirtyUntil : this.replayer.status().dirtyUntil;
  }

  /** Off the primary's history (phase off-history): why; only invalidate makes this copy usable again. */
  get offHistory(): string | undefined {
    return this.phase.kind === 'off-history' ? this.phase.reason : undefined;
  }

  /** The lowest log number this host still needs (for log deletion across the cluster). */
  get needsLog(): number | undefined {
    // A copy that only invalidate can make consistent needs no log: it holds none back.
    if (this.phase.kind === 'off-history') return undefined;
    const replayed = this.replayer?.status().persistedPosition ?? this.position;
    if (replayed !== undefined) return replayed.logNumber;
    return this.syncStart()?.logNumber;
  }

  /** The source's logs as fetch last heard of them (empty while fetch does not run). */
  get knownSourceLogs(): readonly LogInfo[] {
    return this.fetch?.knownSourceLogs ?? [];
  }

  /** Where replay stands (persisted), or will start (the sync's start): the copies are needed from here on. */
  get replayStart(): ReplayPosition | undefined {
    return this.replayer?.status().persistedPosition ?? this.position ?? this.syncStart();
  }

  /** The log number of the last local copy: the primary may delete logs before it under space pressure. */
  get fetchedLog(): number | undefined {
    const last = this.copies.last;
    return last === undefined ? undefined : parseLogName(last.name)?.logNumber;
  }

  /**
   * The log filesystem here is low (or fine again): fetch stops (or starts again) without
   * touching the operator's switch. The primary never waits for it: it keeps its log or,
   * in its own emergency, leaves a hole.
   */
  setSpacePaused(paused: boolean): Promise<void> {
    if (paused === this.spacePaused) return this.switching;
    this.spacePaused = paused;
    this.o.log(paused ? 'warn' : 'info', paused ? `fetch of ${this.o.resource} paused: the log filesystem is low` : `fetch of ${this.o.resource} resumes: log space is back`, { resource: this.o.resource });
    this.switching = this.switching
      .then(async () => {
        if (this.stopped) return;
        await this.runFetch(!paused);
        this.o.onChange();
      })
      .catch((err: unknown) => this.o.log('error', `pausing fetch of ${this.o.resource} for space failed: ${(err as Error).message}`, { resource: this.o.resource }));
    return this.switching;
  }

  /** The last version of the chain ('' when no log has been replayed to its end). */
  get version(): string {
    return lastVersion(this.chain);
  }

  /** Why this copy cannot go on by itself (shown as the indicator's failure): a failed sync, or a sync's end off the primary's history (invalidate). */
  get failed(): string | undefined {
    return this.state.failure ?? (this.phase.kind === 'off-history' ? this.phase.reason : undefined);
  }

  private syncStart(): ReplayPosition | undefined {
    return this.sync?.progress().startPosition ?? (this.phase.kind === 'syncing' ? this.phase.start : undefined);
  }

  private needsSync(): boolean {
    return this.phase.kind === 'syncing';
  }

  /** Starts sync (if needed), fetch and replay as the switches allow. */
  async start(): Promise<void> {
    this.sampler = repeatEvery(this.o.timers, rateSampleIntervalMs, () => this.sample());
    // A device that holds writes the primary's history lacks is left as it is until invalidate.
    if (this.phase.kind === 'off-history') return;
    if (this.needsSync()) await this.startSync();
    else if (this.position !== undefined) this.afterSync(this.position);
    this.startFetchIfKnown();
  }

  private async startSync(): Promise<void> {
    const o = this.o;
    const target = await SyncTarget.open({
      resource: o.resource,
      device: o.device,
      sizeBytes: o.sizeBytes,
      storage: o.storage,
      clock: o.clock,
      timers: o.timers,
      paused: !this.switches.sync,
      copyMode: true,
      ...(o.syncRateBytesPerS === undefined ? {} : { rateBytesPerS: o.syncRateBytesPerS }),
      ...(o.bandwidth === undefined ? {} : { pacer: o.bandwidth.pacer(o.resource, 'sync') }),
      ...(o.compressions === undefined ? {} : { compressions: o.compressions }),
      onStartPosition: (p) => {
        o.log('info', `sync of ${o.resource} started at ${p.logNumber}:${p.offsetBytes} of ${p.logHost}`, { resource: o.resource });
        this.fetchFromNewStart(p);
        o.onChange();
      },
      onSourceChanged: (c) => {
        o.log('warn', `sync of ${o.resource} starts again at offset 0: its source is now ${c.to}; the ${c.discardedBytes} bytes copied from ${c.from ?? 'a host the sync state did not name'} are compared with it again`, { resource: o.resource });
        o.onChange();
      },
      onStateChange: () => o.onChange(),
    });
    // Copies wholly before the saved start (a crash between saving a new start and dropping
    // the copies of the earlier one) are never replayed: fetch would go on from them.
    const saved = target.progress().startPosition;
    if (saved !== undefined) await this.dropStaleCopies(saved, false);
    this.sync = target;
    this.syncConnection = this.syncConnectionTo(target);
    if (target.state !== 'done') this.syncConnection.start();
    target.whenDone().then(
      () => {
        if (this.stopped) return;
        const p = target.progress();
        o.log('info', `sync of ${o.resource} done; replay from ${p.startPosition?.logNumber}:${p.startPosition?.offsetBytes} makes the copy consistent at ${p.endPosition?.logNumber}:${p.endPosition?.offsetBytes}`, { resource: o.resource });
        this.syncConnection?.stop();
        // Replaying to the sync's end now; the save of its start (afterSync) is the first persist.
        const from = this.step({ kind: 'sync-done', start: p.startPosition!, end: p.endPosition }).find((d) => d.kind === 'start-replay');
        if (from !== undefined) this.afterSync(this.position ?? from.from);
      },
      (err: unknown) => {
        if (this.stopped) return;
        o.log('error', `sync of ${o.resource} failed: ${(err as Error).message}`, { resource: o.resource });
        this.step({ kind: 'failed', reason: `sync failed: ${(err as Error).message}` });
      },
    );
  }

  /** New sync starts whose copies are being dropped (startFetchIfKnown waits until none). */
  private droppingCopies = 0;

  /**
   * The source said the sync's start: the sync began, or began again from a new source
   * (after a role change) at another log. Copies of an earlier start are of no use to replay
   * and may name a log the new source no longer holds: fetch stops, they go, and fetch
   * starts from the new start.
   */
  private fetchFromNewStart(start: ReplayPosition): void {
    this.droppingCopies++;
    this.switching = this.switching
      .then(async () => {
        // Taken here, not at the call: a start said just before may have started one since.
        const fetch = this.fetch;
        this.fetch = undefined;
        await fetch?.stop();
        if (this.stopped) return;
        await this.dropStaleCopies(start, true);
      })
      .catch((err: unknown) => this.o.log('error', `dropping the earlier copies of ${this.o.resource} failed: ${(err as Error).message}`, { resource: this.o.resource }))
      .finally(() => {
        this.droppingCopies--;
        this.startFetchIfKnown();
      });
  }

  private async dropStaleCopies(start: ReplayPosition, startIsNew: boolean): Promise<void> {
    const stale = staleSyncCopies(await this.copies.names(), start.logNumber, startIsNew);
    if (stale.length === 0) return;
    await this.copies.drop(stale);
    this.o.log('warn', `sync of ${this.o.resource} starts at log ${start.logNumber}: dropped the copies of an earlier start of the sync (${stale.join(' ')})`, { resource: this.o.resource });
  }

  /** The sync's connection to the designated primary (a stopped one does not start again: primaryChanged makes a new one). */
  private syncConnectionTo(target: SyncTarget): PeerConnection {
    const o = this.o;
    return new PeerConnection({
      dial: () => o.dial(o.primary(), 'sync'),
      name: `sync ${o.resource}`,
      backoffMsMax: fetchBackoffMsMax,
      clock: o.clock,
      timers: o.timers,
      random: o.random,
      onOpen: (link) => target.linkOpened(link),
      onFrame: (frame) => target.frameReceived(frame),
      onClose: (error) => target.linkClosed(error),
    });
  }

  private startFetchIfKnown(): void {
    if (this.stopped || this.fetch !== undefined || this.droppingCopies > 0 || !this.switches.fetch || this.spacePaused) return;
    const start = this.position ?? this.syncStart();
    const from = start?.logNumber;
    if (start === undefined || from === undefined) return;
    const o = this.o;
    this.fetchSource = o.primary();
    this.fetch = new FetchClient({
      resource: o.resource,
      copies: this.copies,
      dial: () => {
        this.fetchSource = o.primary();
        return o.dial(this.fetchSource, 'fetch');
      },
      clock: o.clock,
      timers: o.timers,
      random: o.random,
      startLogNumber: from,
      // With no copy yet, the first one begins where replay starts: the log before it is never fetched.
      startOffsetBytes: start.offsetBytes,
      startNextSeq: start.nextSeq,
      onStatus: (s) => this.fetchStatusChanged(s),
      // Fetch dials the designated primary: a copy beyond its own open log is another history.
      primarySource: () => this.fetchSource,
      ...(o.compressions === undefined ? {} : { compressions: o.compressions }),
      ...(o.nearSync === undefined ? {} : { nearSync: () => o.nearSync?.(o.resource) === true }),
      ...(o.parallelConnections === undefined ? {} : { parallelConnections: o.parallelConnections }),
      ...(o.bandwidth === undefined ? {} : { pacer: o.bandwidth.pacer(o.resource, 'fetch'), onRestBytes: (bytes: number) => o.bandwidth?.noteFetchBehind(o.resource, bytes) }),
    });
    this.fetch.start();
  }

  private lastFetchState = '';
  private fetchStatusChanged(s: FetchStatus): void {
    const kind = s.state === 'failed' ? `failed ${s.error?.code ?? ''}` : s.state;
    if (kind === this.lastFetchState) return;
    const before = this.lastFetchState;
    this.lastFetchState = kind;
    if (s.state === 'failed' || before.startsWith('failed')) this.o.onChange();
    // A failure that is not a divergence of histories (the source lacked a log, damage at
    // the source, an I/O error) is retried after a pause: the source may be another one by then.
    if (s.state === 'failed' && s.error?.code !== 'FETCH_DIVERGED') this.retryFetchLater();
    if (s.state === 'failed' || s.state === 'paused-no-space' || (s.state === 'source-unreachable' && before !== '' && before !== 'idle')) {
      this.o.log('warn', `fetch of ${this.o.resource} ${this.fetchSourceWords()}: ${s.state}${s.error === undefined ? '' : `: ${s.error.message}`}`, { resource: this.o.resource });
    } else if (before.startsWith('failed') || before === 'paused-no-space' || before === 'source-unreachable') {
      this.o.log('info', `fetch of ${this.o.resource} ${this.fetchSourceWords()}: ${s.state}`, { resource: this.o.resource });
    }
  }

  /** Whom fetch reads from, for a log line: during a handover no primary is designated. */
  private fetchSourceWords(): string {
    return this.fetchSource === '' ? 'with no primary designated' : `from ${this.fetchSource}`;
  }

  private fetchRetry: TimerHandle | undefined;

  private retryFetchLater(): void {
    if (this.fetchRetry !== undefined || this.stopped) return;
    this.fetchRetry = this.o.timers.setTimeout(() => {
      this.fetchRetry = undefined;
      if (this.stopped || this.fetch?.status().state !== 'failed') return;
      this.o.log('info', `fetch of ${this.o.resource}: trying again after: ${this.fetch.status().error?.message ?? 'failure'}`, { resource: this.o.resource });
      this.primaryChanged();
    }, this.o.fetchRetryMs ?? fetchRetryAfterFailureMs);
  }

  /** Sync is done (or was not needed): replay from the persisted position or the sync's start. */
  private afterSync(start: ReplayPosition): void {
    if (this.stopped || this.replayer !== undefined) return;
    if (this.position === undefined) {
      // The first replay position is the sync's start: persisted now, so that a sync whose
      // end equals its start (nothing was written meanwhile) is consistent at once, and a
      // restart resumes replay rather than the sync.
      this.afterSyncPersist = this.persistWhenRoom(start).catch((err: unknown) => {
        this.step({ kind: 'failed', reason: `cannot save the replay position: ${(err as Error).message}` });
      });
    }
    const o = this.o;
    // The mark the phase waits for (found at open): below it the device is no prefix state.
    const dirtyMark = this.phase.kind === 'replaying' ? this.phase.dirtyUntil : undefined;
    this.replayer = new Replayer({
      source: this.copies.source,
      device: o.device,
      deviceSizeBytes: o.deviceBytes,
      start,
      persist: (p) => this.persist(p),
      ...(dirtyMark === undefined ? {} : { dirtyMark }),
      persistDirtyMark: (mark) => saveDirtyMark(o.storage, o.host, mark),
      onDamage: async (name, offsetBytes, reason) => {
        o.log('warn', `local copy ${name} of ${o.resource} is damaged at ${offsetBytes} (${reason}): fetching it again`, { resource: o.resource });
        await this.fetch?.reportDamage(name, offsetBytes);
      },
      onLogReplayed: (log) => this.logReplayed(log),
      idleCheckpointMs: replayIdleCheckpointMs,
      timers: o.timers,
    });
    const replayer = this.replayer;
    void this.afterSyncPersist.then(() => {
      if (!this.stopped && this.switches.replay) replayer.start();
    });
  }

  /**
   * The histories differ: fetch or replay found that the source holds another log with a
   * number this host holds, or a log this host holds longer than the source's complete one.
   */
  get divergence(): string | undefined {
    const fetch = this.fetch?.status();
    if (fetch?.state === 'failed' && fetch.error?.code === 'FETCH_DIVERGED') return fetch.error.message;
    const replay = this.replayer?.status();
    if (replay?.state === 'failed' && replay.error?.code === 'FETCH_DIVERGED') return replay.error.message;
    return undefined;
  }

  /** Where the copy stands (syncing, replaying to the sync's end or the dirty mark, consistent). */
  get copyPhase(): ReplicaPhase<ReplayPosition> {
    return this.phase;
  }

  /** The persisted replay position (what the device holds for sure). */
  get persistedPosition(): ReplayPosition | undefined {
    return this.replayer?.status().persistedPosition ?? this.position;
  }

  /** Calls onChange once a persisted replay position reaches `target` (a handover waits for it). */
  notifyWhenReplayed(target: ReplayPosition): void {
    this.step({ kind: 'wait-for', target });
    this.replayer?.checkpointSoon();
  }

  /** The designated primary changed: fetch and sync dial the new one now, not after their backoff. */
  primaryChanged(): void {
    if (this.stopped) return;
    const sync = this.sync;
    if (this.syncConnection !== undefined && sync !== undefined && sync.state !== 'done') {
      // A stopped PeerConnection stays stopped: the sync dials the new primary on a new one
      // (before, it stayed with the old, stopped, and never dialled again).
      this.syncConnection.stop();
      sync.linkClosed(undefined);
      this.syncConnection = this.syncConnectionTo(sync);
      this.syncConnection.start();
    }
    if (this.fetch !== undefined) {
      const fetch = this.fetch;
      this.fetch = undefined;
      this.switching = this.switching
        .then(async () => {
          await fetch.stop();
          await this.copies.reopen();
          this.startFetchIfKnown();
        })
        .catch((err: unknown) => this.o.log('error', `restarting fetch of ${this.o.resource} failed: ${(err as Error).message}`, { resource: this.o.resource }));
    }
  }

  /** A method, so that the compiler does not narrow the flag across awaits. */
  private isStopped(): boolean {
    return this.stopped;
  }

  /**
   * The first position after a sync (its start), saved before replay runs. With no room for
   * the file it is tried again, as replay's own saves are (replayNoSpaceRetryMsMin..Max),
   * until it lands or the replica stops; any other failure fails the replica.
   */
  private async persistWhenRoom(p: ReplayPosition): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.persist(p);
        return;
      } catch (err) {
        if (!(err instanceof MarsError) || err.code !== 'ENOSPC' || this.stopped) throw err;
        const delayMs = doublingDelayMs(attempt, replayNoSpaceRetryMsMin, replayNoSpaceRetryMsMax);
        if (attempt === 0) this.o.log('warn', `${this.o.resource}: no room to save the replay position after the sync (${err.message}): trying again until there is`, { resource: this.o.resource });
        await new Promise<void>((resolve) => this.o.timers.setTimeout(resolve, delayMs));
        if (this.isStopped()) return; // the next start saves it (the sync state says where)
      }
    }
  }

  private async persist(p: ReplayPosition): Promise<void> {
    // Replay applies verified copy bytes before they are fdatasync'd; a position is saved
    // only once the copy holds it durably, so that after a crash the copy reaches at least
    // as far as the position (recovery as a primary relies on that). A failed fdatasync is
    // never retried (the kernel may have dropped what it could not write), so its ENOSPC is
    // no "wait for space" (the Replayer's StateNoSpace) but an I/O error that fails replay.
    await this.copies.sync().catch((err: unknown) => {
      throw new MarsError('EIO', `fdatasync of the local log copy failed: ${(err as Error).message}`, { cause: err });
    });
    await savePosition(this.o.storage, this.o.host, p);
    const event = { kind: 'persisted', position: p } as const;
    // Consistent only once the sync state is gone (a crash before that finds it passed at open).
    if (replicaStep(this.state, event).decisions.some((d) => d.kind === 'remove-sync-state')) await removeSyncState(this.o.storage);
    this.step(event);
  }

  private async logReplayed(log: ReplayedLog): Promise<void> {
    this.step({ kind: 'log-replayed', logNumber: log.logNumber, logHost: log.host, lengthBytes: log.lengthBytes, next: { logNumber: log.next.logNumber, logHost: log.next.host } });
    this.chain = extendChainOnce(this.chain, { logNumber: log.logNumber, origin: log.host, lengthBytes: log.lengthBytes });
    await saveChain(this.o.storage, this.o.host, this.chain);
  }

  /** Applies the operator's switches; resolves once paused parts have stopped touching disk and network. */
  setSwitches(next: ReplicaSwitches): Promise<void> {
    this.switching = this.switching.then(() => this.applySwitches(next)).catch((err: unknown) => {
      this.o.log('error', `switching ${this.o.resource} failed: ${(err as Error).message}`, { resource: this.o.resource });
    });
    return this.switching;
  }

  get currentSwitches(): ReplicaSwitches {
    return this.switches;
  }

  private async applySwitches(next: ReplicaSwitches): Promise<void> {
    const before = this.switches;
    this.switches = next;
    if (this.stopped) return;
    if (before.sync !== next.sync && this.sync !== undefined) {
      if (next.sync) this.sync.resume();
      else await this.sync.pause();
    }
    if (before.replay !== next.replay && this.replayer !== undefined) {
      if (next.replay) {
        await this.afterSyncPersist;
        this.replayer.start(); // from paused, or idle when it was switched off before it ever ran
      }
      else await this.replayer.pause();
    }
    if (before.fetch !== next.fetch) await this.runFetch(next.fetch);
    this.o.onChange();
  }

  /** Starts fetch (its copies reopened) or stops it and waits until it has. */
  private async runFetch(on: boolean): Promise<void> {
    if (on) {
      await this.copies.reopen();
      this.startFetchIfKnown();
    } else if (this.fetch !== undefined) {
      const fetch = this.fetch;
      this.fetch = undefined;
      await fetch.stop();
    }
  }

  /** Stops everything: sync progress persisted, fetch's copy synced, replay checkpointed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.sampler?.stop();
    if (this.fetchRetry !== undefined) this.o.timers.clearTimeout(this.fetchRetry);
    await this.switching;
    await this.afterSyncPersist;
    this.syncConnection?.stop();
    await this.sync?.close().catch(() => undefined);
    await this.replayer?.stop();
    if (this.fetch !== undefined) await this.fetch.stop();
    else await this.copies.close();
  }

  /** For `view`. */
  async status(): Promise<ReplicaStatus> {
    const files: { name: string; sizeBytes: number }[] = [];
    for (const f of await listLogFiles(this.o.storage)) {
      const info = await this.copies.source.info(f.name).catch(() => undefined);
      if (info !== undefined) files.push({ name: f.name, sizeBytes: info.durableBytes });
    }
    const fetch = this.fetch?.status();
    const last = this.copies.last ?? (files.length === 0 ? undefined : { name: files.at(-1)!.name, verifiedBytes: files.at(-1)!.sizeBytes });
    this.rates.noteFetched(last?.name, last?.verifiedBytes ?? 0);
    const replay = this.replayer?.status();
    const applied = replay?.appliedPosition ?? this.position;
    if (applied !== undefined) this.rates.noteReplayed(applied);
    const sync = this.sync?.progress();
    const syncShown = sync !== undefined && !(sync.state === 'done' && this.syncedNow) ? sync : undefined;
    const waitingForSync = this.replayer === undefined && this.sync !== undefined;
    return {
      consistent: this.consistent,
      switches: this.switches,
      sync:
        syncShown === undefined
          ? null
          : {
              state: syncShown.state,
              sizeBytes: syncShown.sizeBytes,
              doneBytes: syncShown.doneBytes,
              restBytes: syncShown.restBytes,
              rateBytesPerS: Math.round(this.rates.syncWire.rateBytesPerS()),
              progressBytesPerS: Math.round(syncShown.rateBytesPerS),
              rateLimitBytesPerS: syncShown.rateLimitBytesPerS,
              receivedBytes: syncShown.receivedBytes,
              sentBytes: syncShown.sentBytes,
              error: syncShown.lastError?.message ?? (this.state.failure ?? null),
              compression: syncShown.compression ?? null,
            },
      fetch: {
        // Off the history, the copy waits for invalidate: `view` says Failed, with the reason.
        state: this.phase.kind === 'off-history' ? 'failed' : !this.switches.fetch ? 'paused' : this.spacePaused ? 'paused-no-space' : (fetch?.state ?? 'waiting-for-sync'),
        source: this.fetchSource === '' ? this.o.primary() : this.fetchSource,
        logName: last?.name ?? null,
        localBytes: last?.verifiedBytes ?? 0,
        // Unknown (null) until fetch has heard from its source: the local copy alone cannot tell how far the primary has gone.
        restBytes: fetch?.fetchRestBytes ?? null,
        rateBytesPerS: Math.round(this.rates.fetch.rateBytesPerS()),
        error:
          this.phase.kind === 'off-history'
            ? this.phase.reason
            : this.spacePaused && this.switches.fetch
              ? 'ENOSPC: log space below the emergency threshold: fetch waits until replayed copies are deleted'
              : fetch?.error === undefined
                ? null
                : `${fetch.error.code}: ${fetch.error.message}`,
        compression: fetch?.compression ?? null,
        connections: fetch?.connections ?? 0,
        lastContactS: fetch?.lastContactMs === undefined ? null : Math.max(0, Math.floor((this.o.clock.nowMs() - fetch.lastContactMs) / 1000)),
      },
      replay: {
        state: waitingForSync ? 'waiting-for-sync' : (replay?.state ?? 'idle'),
        position: applied === undefined ? null : positionJson(applied),
        restBytes: applied === undefined || waitingForSync ? 0 : bytesAfter(applied, files),
        rateBytesPerS: Math.round(this.rates.replay.rateBytesPerS()),
        error: replay?.error === undefined ? null : `${replay.error.code}: ${replay.error.message}`,
      },
    };
  }

  /** Feeds the fetch rate meter from the copy's end (called on status and by the daemon's sampler). */
  sample(): void {
    const sync = this.sync?.progress();
    if (sync !== undefined) {
      const wireBytes = sync.receivedBytes + sync.sentBytes;
      this.rates.noteSyncWire(wireBytes);
    }
    this.step({ kind: 'fetched', logNumber: this.fetchedLog });
    const last = this.copies.last;
    this.rates.noteFetched(last?.name, last?.verifiedBytes ?? 0);
    const replay = this.replayer?.status();
    if (replay !== undefined) this.rates.noteReplayed(replay.appliedPosition);
    const waiting = replay?.state === 'paused-no-space';
    if (waiting !== this.replayWaitedForRoom) {
      this.replayWaitedForRoom = waiting;
      const r = this.o.resource;
      if (waiting) this.o.log('warn', `replay of ${r} waits for room for its state files: ${replay.error?.message ?? 'no space left'}`, { resource: r });
      else this.o.log('info', `replay of ${r} has room again`, { resource: r });
      this.o.onChange();
    }
  }
}
