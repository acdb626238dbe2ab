/**
 * One simulated host with one resource: the real cores wired the way marsd wires them,
 * on simulated disks and links, with the host's own timers (killed by a crash).
 *
 * - primary:   recovery (src/logger/recovery.ts), then the Logger (log writer, shadow
 *              index, writeback) as the resource's BlockBackend, and a FetchServer serving
 *              its log directory with the writer's durable end as the live end;
 * - secondary: LocalCopies + FetchClient (records verified on receipt) + Replayer (the
 *              replay engine over verified copies), and a FetchServer of its copies;
 * - retired:   a primary that stopped serving in a handover, still serving its logs;
 * - down:      crashed; its disks keep what a power loss leaves.
 *
 * The role sequencing of a handover is the cluster's (cluster-sim.ts); what a host does on
 * each step is here. Sync is not simulated: every member starts from the same zeroed disk.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { Random } from '../core/random.js';
import { FetchClient, FetchServer, LocalCopies, Replayer, staleSyncCopies, StorageLogSource, SwitchableLogSource, type VerifyStart } from '../fetch/index.js';
import { PeerConnection, type PeerLink } from '../net/index.js';
import { decodeSyncState } from '../sync/state-file.js';
import { isConsistentPhase, nextPhase, openPhase, type ReplicaPhase } from '../strategy/index.js';
import { loadSyncState, removeSyncState, SyncSourceSession, syncStateFileName, SyncTarget, type SyncSourceResource } from '../sync/index.js';
import { formatLogName, parseLogName, type LogFileName } from '../log/index.js';
import { logsToDelete } from '../strategy/index.js';
import { Logger } from '../logger/logger.js';
import { EmergencyFile } from '../logger/emergency-file.js';
import { decodeEmergencyState, emergencyStateFileName } from '../space/emergency-state.js';
import type { LoggerLimits } from '../logger/limits.js';
import { recover } from '../logger/recovery.js';
import { decodePosition, dirtyMarkFileName, loadDirtyMark, loadPosition, positionFileName, saveDirtyMark, savePosition, type DirtyMark, type ReplayPosition } from '../replay/position.js';
import type { Storage, StorageFile } from '../storage/storage.js';
import type { Scheduler, SimTimers } from './scheduler.js';
import { SimDisk, type DiskLatency } from './sim-disk.js';
import type { SimNet } from './sim-net.js';

export const simResource = 'r1';
/** The daemon's pause before a failed fetch is tried again (src/daemon/replica.ts). */
export const fetchRetryAfterFailureMs = 5_000;
const deviceFileName = 'device';

/** Deliberate bugs, for checking that the simulator finds them (never on in marsd). */
export interface Mutations {
  /** The fetch server's live end is the log's written end, not its fdatasync'd end. */
  readonly shipPastDurable: boolean;
  /** The replayer's device fdatasync is skipped, so a checkpoint may persist a position the device does not hold. */
  readonly skipReplaySync: boolean;
  /** A planned handover does not wait for the new primary to replay to the old one's end. */
  readonly earlyHandover: boolean;
  /** Replay keeps no dirty mark, so a restarted secondary says it is consistent while its device may hold records beyond its position. */
  readonly skipDirtyMark: boolean;
  /** log-delete keeps logs only from one above the lowest log another member needs. */
  readonly deleteNeededLog: boolean;
  /** A synced secondary counts as consistent once the sync is done, before replay reached the sync's end. */
  readonly consistentAtSyncDone: boolean;
  /** In emergency mode the primary's device fdatasync is skipped, so a FLUSH answers before the direct writes are durable. */
  readonly skipEmergencySync: boolean;
}

export const noMutations: Mutations = { shipPastDurable: false, skipReplaySync: false, earlyHandover: false, skipDirtyMark: false, deleteNeededLog: false, consistentAtSyncDone: false, skipEmergencySync: false };

export type HostRole =
  | { readonly kind: 'down' }
  | { readonly kind: 'primary'; readonly logger: Logger }
  /** Fetch and replay; `phase`: consistent, or replaying to a sync's end or the dirty mark (src/strategy/replica-phase.ts, as the daemon's replica). */
  | { readonly kind: 'secondary'; readonly copies: LocalCopies; fetch: FetchClient | undefined; readonly replayer: Replayer; phase: ReplicaPhase<ReplayPosition> }
  /** A full sync from the primary (join, invalidate); fetch runs from the sync's start once it is known, replay waits. */
  | { readonly kind: 'syncing'; readonly copies: LocalCopies; fetch: FetchClient | undefined; readonly target: SyncTarget; readonly connection: PeerConnection; start: ReplayPosition | undefined; held?: CopiesStart; dropping?: number; newStarts?: Promise<void> }
  | { readonly kind: 'retired' }
  /** Not a member (leave-resource): holds no history of the resource. */
  | { readonly kind: 'left' }
  /** A member whose device holds writes the history lacks (replica phase off-history at open): nothing runs until invalidate. */
  | { readonly kind: 'off-history'; readonly reason: string };

/** Where the copies are verified from (replay's start, or the sync's): the first copy may begin inside a log. */
interface CopiesStart {
  start: ReplayPosition | undefined;
}

type Fetching = Extract<HostRole, { kind: 'secondary' | 'syncing' }>;

/** A role's fetch client now (a call, so that the compiler does not narrow it across awaits). */
function fetchOf(role: Fetching): FetchClient | undefined {
  return role.fetch;
}

function verifyStartOf(p: ReplayPosition | undefined): VerifyStart | undefined {
  return p === undefined ? undefined : { name: formatLogName(p.logNumber, p.logHost), offsetBytes: p.offsetBytes, nextSeq: p.nextSeq };
}

export interface HostContext {
  readonly scheduler: Scheduler;
  readonly net: SimNet;
  readonly random: Random;
  readonly sizeBytes: number;
  readonly limits: Partial<LoggerLimits>;
  readonly mutations: Mutations;
  readonly latency: DiskLatency;
  /** The host a secondary fetches from now. */
  readonly fetchSourceOf: (host: string) => string;
  /** The designated primary now (a sync dials it). */
  readonly primaryOf: () => string;
  readonly replayCheckpointBytes: number;
}

export class SimHost {
  readonly logDisk: SimDisk;
  readonly deviceDisk: SimDisk;
  role: HostRole = { kind: 'down' };
  timers: SimTimers;
  private storage: Storage | undefined;
  private device: StorageFile | undefined;
  /** What this host serves to fetch clients; switched on role changes, so open streams follow (as in the daemon). */
  private source = new SwitchableLogSource();
  private server: FetchServer | undefined;
  /** The primary's own log source (told when log files go). */
  private primarySource: StorageLogSource | undefined;
  /** Switches that survive restarts (the daemon keeps them in the metadata). */
  fetchPaused = false;
  replayPaused = false;
  /** pause-sync: a sync (running or the next one) asks for no ranges until resume-sync. */
  syncPaused = false;
  /** Fetch stopped because this host's log filesystem is low (the space monitor's emergency stage), not by the operator. */
  spacePaused = false;
  /** Left the resource (leave-resource); survives restarts until it joins again. */
  left = false;
  incarnation = 0;
  /** Full syncs finished here. */
  syncsDone = 0;
  /** Syncs here that began again at a new start while fetch ran or copies of the earlier start lay here (fetch went on from the new start). */
  syncStartsAgain = 0;
  /** The primary side of a sync: the start log of each peer's sync (log-delete keeps it until the peer reports its own need). */
  readonly syncHolds = new Map<string, number>();
  /** Sync links this host serves as primary (closed when it stops serving). */
  private syncLinks = new Set<PeerLink>();
  private readonly digestRandom: Random;

  constructor(
    readonly name: string,
    private readonly ctx: HostContext,
  ) {
    this.logDisk = new SimDisk(`${name}/log`, new Random(ctx.random.uint32()), ctx.latency);
    this.deviceDisk = new SimDisk(`${name}/device`, new Random(ctx.random.uint32()), ctx.latency);
    this.timers = ctx.scheduler.timers(name);
    this.digestRandom = new Random(ctx.random.uint32());
  }

  get up(): boolean {
    return this.role.kind !== 'down';
  }

  get clock(): Clock {
    return this.ctx.scheduler;
  }

  /** The device's bytes as the host sees them now (page cache included); read only, not a copy. */
  deviceImage(): Buffer {
    const image = this.deviceDisk.mem.view(deviceFileName) ?? Buffer.alloc(0);
    return image.length >= this.ctx.sizeBytes ? image.subarray(0, this.ctx.sizeBytes) : Buffer.concat([image, Buffer.alloc(this.ctx.sizeBytes - image.length)]);
  }

  /** A fresh member: a zeroed device, and (for a secondary) replay starting at log 1 of the first primary. */
  async create(firstPrimary: string): Promise<void> {
    await this.deviceDisk.mem.open(deviceFileName, 'create').then(async (f) => {
      await f.write(Buffer.alloc(this.ctx.sizeBytes), 0);
      await f.sync();
      await f.close();
    });
    await this.deviceDisk.mem.syncDir();
    await savePosition(this.logDisk.mem, this.name, { logNumber: 1, logHost: firstPrimary, offsetBytes: 0, nextSeq: 1n });
  }

  private async openProcess(): Promise<void> {
    this.incarnation++;
    this.timers = this.ctx.scheduler.timers(`${this.name}#${this.incarnation}`);
    this.storage = this.logDisk.incarnation(this.timers);
    this.device = await this.deviceDisk.incarnation(this.timers).open(deviceFileName, 'write');
    const source = new SwitchableLogSource();
    this.source = source;
    this.server = new FetchServer({ sources: (r) => (r === simResource ? source : undefined) });
    this.ctx.net.accept(this.name, (link) => this.server?.adopt(link));
    this.syncLinks = new Set();
    const links = this.syncLinks;
    this.ctx.net.accept(
      this.name,
      (link) => {
        links.add(link);
        SyncSourceSession.serve(link, {
          resolve: (resource, peer) => (resource === simResource ? this.syncSource(peer) : undefined),
          digestSeed: () => BigInt(this.digestRandom.uint32()),
          onEnd: () => links.delete(link),
        });
      },
      'sync',
    );
  }

  /** What a syncing peer reads while this host serves as primary and logs (as the daemon's Resource.syncSource). */
  private syncSource(peer: string): SyncSourceResource | undefined {
    const role = this.role;
    if (role.kind !== 'primary' || role.logger.loggerMode !== 'logging') return undefined;
    const logger = role.logger;
    return {
      device: this.device!,
      sizeBytes: this.ctx.sizeBytes,
      startPosition: () => {
        const start = logger.writtenBackPosition;
        const held = this.syncHolds.get(peer);
        if (held === undefined || start.logNumber < held) this.syncHolds.set(peer, start.logNumber);
        return start;
      },
      endPosition: () => {
        // As the daemon's Resource.syncSource: no end in emergency mode (the log names no state of the device then).
        if (logger.loggerMode !== 'logging') throw new MarsError('EBUSY', `${this.name} is in emergency mode`);
        const end = logger.durableLogEnd();
        return { logNumber: end.logNumber, logHost: this.name, offsetBytes: end.endOffsetBytes, nextSeq: end.nextSeq };
      },
    };
  }

  private closeSyncLinks(): void {
    for (const link of [...this.syncLinks]) link.close();
    this.syncLinks.clear();
  }

  // ---- primary ----

  /**
   * Starts as primary: recovery of its own log, then the logger. Returns the recovered end.
   * In emergency mode (its state file says so) there is no recovery, as in the daemon's
   * Resource: the device holds every answered write and is used as it is; the logger starts
   * in emergency mode at the end of the last log written (`emergency`: true).
   */
  async startPrimary(): Promise<{ start: ReplayPosition; emergency: boolean }> {
    await this.openProcess();
    const storage = this.storage!;
    const saved = (await EmergencyFile.open(storage, this.name)).state;
    if (saved?.mode === 'emergency') {
      const endBytes = this.logDisk.mem.view(formatLogName(saved.logNumber, this.name))?.length ?? 0;
      const start: ReplayPosition = { logNumber: saved.logNumber, logHost: this.name, offsetBytes: endBytes, nextSeq: saved.nextSeq };
      await this.openLogger(start, true);
      return { start, emergency: true };
    }
    const from = (await loadPosition(storage, this.name)) ?? { logNumber: 1, logHost: this.name, offsetBytes: 0, nextSeq: 1n };
    const report = await recover({ storage, device: this.device!, deviceSizeBytes: this.ctx.sizeBytes, host: this.name, from });
    await this.openLogger(report.start);
    return { start: report.start, emergency: false };
  }

  /** Opens the logger at `start` (after recovery, or after replaying to the old primary's end; or in emergency mode after a restart in it). */
  async openLogger(start: ReplayPosition, startInEmergency = false): Promise<void> {
    const storage = this.storage!;
    const source: { value?: StorageLogSource } = {};
    const emergencyFile = await EmergencyFile.open(storage, this.name);
    const box: { logger?: Logger } = {};
    const real = this.device!;
    const device = this.ctx.mutations.skipEmergencySync ? { ...real, name: real.name, sync: () => (box.logger?.loggerMode === 'emergency' ? Promise.resolve() : real.sync()) } : real;
    const logger = await Logger.open({
      startInEmergency,
      storage,
      emergencyFile,
      device,
      sizeBytes: this.ctx.sizeBytes,
      host: this.name,
      clock: this.clock,
      timers: this.timers,
      start,
      limits: this.ctx.limits,
      onLogChange: () => source.value?.notifyChange(),
    });
    box.logger = logger;
    const written = (): { logNumber: number; endOffsetBytes: number } => {
      const p = logger.status().logPosition;
      return { logNumber: p.logNumber, endOffsetBytes: p.offsetBytes };
    };
    const live = (): { name: string; durableBytes: number; frozen: boolean } => {
      const end = this.ctx.mutations.shipPastDurable ? written() : logger.durableLogEnd();
      return { name: formatLogName(end.logNumber, this.name), durableBytes: end.endOffsetBytes, frozen: logger.loggerMode !== 'logging' };
    };
    source.value = new StorageLogSource({ storage, live });
    this.primarySource = source.value;
    this.source.set(source.value);
    this.role = { kind: 'primary', logger };
  }

  /** Planned handover, old side: stop serving (everything written back and durable), keep serving the logs. Returns the log's end. */
  async retire(): Promise<ReplayPosition> {
    if (this.role.kind !== 'primary') throw new Error(`${this.name} is not primary`);
    const logger = this.role.logger;
    this.closeSyncLinks();
    await logger.close();
    this.role = { kind: 'retired' };
    this.source.set(new StorageLogSource({ storage: this.storage! }));
    return logger.status().logPosition;
  }

  // ---- secondary ----

  /** Starts as secondary after a (re)start: a sync that is due first (as the daemon's Replica.open decides), or fetch and replay. */
  async startSecondary(): Promise<void> {
    await this.openProcess();
    if (this.left) {
      this.role = { kind: 'left' };
      return;
    }
    const storage = this.storage!;
    const position = await loadPosition(storage, this.name);
    const sync = await loadSyncState(storage);
    const dirtyMarkFile = await storage.exists(dirtyMarkFileName(this.name));
    const dirtyMark = position === undefined || this.ctx.mutations.skipDirtyMark ? undefined : await loadDirtyMark(storage, this.name);
    const end = sync?.endPosition;
    // As the daemon's replica: the copy of the log of the sync's end or of the dirty mark, for a position in a later log.
    const copyBefore = (place: DirtyMark | undefined): { logHost: string; lengthBytes: number } | undefined => {
      const log = place === undefined || position === undefined || position.logNumber <= place.logNumber ? undefined : this.logFilesNow().find((f) => f.logNumber === place.logNumber);
      return log === undefined ? undefined : { logHost: log.host, lengthBytes: this.logDisk.mem.view(log.name)?.length ?? 0 };
    };
    const directWrites = (await EmergencyFile.read(storage, this.name))?.mode === 'emergency';
    const opened = openPhase<ReplayPosition>({ position, sync: sync === undefined ? undefined : { start: sync.startPosition, end }, dirtyMarkFile, dirtyMark, syncEndLog: copyBefore(end), dirtyMarkLog: copyBefore(dirtyMark), directWrites });
    for (const d of opened.decisions) {
      if (d.kind === 'remove-sync-state') await removeSyncState(storage);
      if (d.kind === 'remove-dirty-mark') await storage.remove(dirtyMarkFileName(this.name));
    }
    // As the daemon's replica: a device with writes the history lacks is left as it is (no fetch, no replay) until invalidate.
    if (opened.phase.kind === 'off-history') {
      this.role = { kind: 'off-history', reason: opened.phase.reason };
      return;
    }
    if (opened.phase.kind === 'syncing') await this.startSync();
    else await this.becomeSecondary(opened.phase);
  }

  /** Fetch and replay from the persisted replay position (after a restart, or a retired primary after a handover). */
  async becomeSecondary(opened?: ReplicaPhase<ReplayPosition>): Promise<void> {
    const storage = this.storage!;
    const start = await loadPosition(storage, this.name);
    if (start === undefined) throw new MarsError('NOT_FOUND', `${this.name} has no replay position`);
    const dirtyMark = this.ctx.mutations.skipDirtyMark ? undefined : await loadDirtyMark(storage, this.name);
    const phase = opened ?? openPhase<ReplayPosition>({ position: start, sync: undefined, dirtyMarkFile: dirtyMark !== undefined, dirtyMark }).phase;
    const held: CopiesStart = { start };
    const copies = await LocalCopies.open(storage, () => verifyStartOf(held.start));
    this.installSecondary(start, copies, held, undefined, phase, dirtyMark);
  }

  /** The secondary role over `copies`, replay from `start`; fetch goes on (after a sync) or starts. */
  private installSecondary(start: ReplayPosition, copies: LocalCopies, held: CopiesStart, fetch: FetchClient | undefined, phase: ReplicaPhase<ReplayPosition>, dirtyMark?: DirtyMark): void {
    const storage = this.storage!;
    const device = this.ctx.mutations.skipReplaySync ? { ...this.device!, name: this.device!.name, sync: () => Promise.resolve() } : this.device!;
    const role: Extract<HostRole, { kind: 'secondary' }> = {
      kind: 'secondary',
      copies,
      fetch,
      phase,
      replayer: new Replayer({
        source: copies.source,
        device,
        deviceSizeBytes: this.ctx.sizeBytes,
        start,
        persist: async (p) => {
          await copies.sync();
          await savePosition(storage, this.name, p);
          held.start = p;
          // As the daemon's replica: consistent once replay persisted the sync's end (the sync state goes then) and the dirty mark.
          const step = nextPhase(role.phase, { kind: 'persisted', position: p });
          if (step.decisions.some((d) => d.kind === 'remove-sync-state')) await removeSyncState(storage);
          role.phase = step.phase;
        },
        ...(dirtyMark === undefined ? {} : { dirtyMark }),
        ...(this.ctx.mutations.skipDirtyMark ? {} : { persistDirtyMark: (mark) => saveDirtyMark(storage, this.name, mark) }),
        // As the daemon's replica: the sync's end and the dirty mark are passed only on their own history.
        onLogReplayed: (log) => {
          role.phase = nextPhase(role.phase, { kind: 'log-replayed', logNumber: log.logNumber, logHost: log.host, lengthBytes: log.lengthBytes, next: { logNumber: log.next.logNumber, logHost: log.next.host } }).phase;
        },
        onDamage: async (name, offsetBytes) => {
          if (this.role === role) await role.fetch?.reportDamage(name, offsetBytes);
        },
        checkpointBytes: this.ctx.replayCheckpointBytes,
        idleCheckpointMs: 100,
        timers: this.timers,
      }),
    };
    held.start = start;
    this.role = role;
    this.source.set(copies.source);
    if (role.fetch === undefined && !this.fetchOff) this.startFetch(role, start);
    if (!this.replayPaused) role.replayer.start();
  }

  /** A full sync from the primary: fetch begins at the sync's start once the source has said it; replay once the sync is done. */
  private async startSync(): Promise<void> {
    const storage = this.storage!;
    const held: CopiesStart = { start: undefined };
    const copies = await LocalCopies.open(storage, () => verifyStartOf(held.start));
    const box: { role?: Extract<HostRole, { kind: 'syncing' }> } = {};
    const target = await SyncTarget.open({
      resource: simResource,
      device: this.device!,
      sizeBytes: this.ctx.sizeBytes,
      storage,
      clock: this.clock,
      timers: this.timers,
      copyMode: true,
      paused: this.syncPaused,
      onStartPosition: (p) => {
        held.start = p;
        const role = box.role;
        if (role === undefined || this.role !== role) return;
        role.start = p;
        // As the daemon's replica: a new start drops the copies of an earlier one, then fetch goes on from it.
        void this.fetchFromNewStart(role, p);
      },
    });
    held.start = target.progress().startPosition;
    // As the daemon's replica: copies wholly before the saved start (a crash before they were dropped) go.
    if (held.start !== undefined) {
      const stale = staleSyncCopies(await copies.names(), held.start.logNumber, false);
      await copies.drop(stale);
      if (stale.length > 0) this.syncStartsAgain++;
    }
    const connection = new PeerConnection({
      dial: () => this.ctx.net.dial(this.name, this.ctx.primaryOf(), 'sync'),
      name: `sync ${simResource}`,
      clock: this.clock,
      timers: this.timers,
      random: new Random(this.ctx.random.uint32()),
      backoffMsMin: 50,
      backoffMsMax: 2_000,
      onOpen: (link) => target.linkOpened(link),
      onFrame: (frame) => target.frameReceived(frame),
      onClose: (error) => target.linkClosed(error),
    });
    const role: Extract<HostRole, { kind: 'syncing' }> = { kind: 'syncing', copies, fetch: undefined, target, connection, start: held.start };
    box.role = role;
    role.held = held;
    this.role = role;
    this.source.set(copies.source);
    if (held.start !== undefined && !this.fetchOff) this.startFetch(role, held.start);
    if (target.state !== 'done') connection.start();
    target.whenDone().then(
      () => {
        if (this.role === role) void this.syncDone(role);
      },
      () => undefined,
    );
  }

  /** The sync's start is new (it began again from a new source): fetch stops, the copies of the earlier start go, fetch starts from the new one. */
  private fetchFromNewStart(role: Extract<HostRole, { kind: 'syncing' }>, start: ReplayPosition): Promise<void> {
    role.dropping = (role.dropping ?? 0) + 1;
    // One after another (as the daemon's replica chains them): a start said just before may have started a fetch.
    role.newStarts = (role.newStarts ?? Promise.resolve()).then(async () => {
      try {
        const fetch = role.fetch;
        role.fetch = undefined;
        if (fetch !== undefined) await fetch.stop();
        if (this.role !== role) return;
        const stale = staleSyncCopies(await role.copies.names(), start.logNumber, true);
        await role.copies.drop(stale);
        if (fetch !== undefined || stale.length > 0) this.syncStartsAgain++;
      } finally {
        role.dropping = (role.dropping ?? 1) - 1;
      }
      // restartFetch waits while copies are dropped: none started meanwhile.
      if (this.role === role && role.dropping === 0 && !this.fetchOff) this.startFetch(role, role.start ?? start);
    }).catch((err: unknown) => {
      // A crash of this host fails its storage: the role is gone then. Anything else is loud.
      if (this.role === role) throw err;
    });
    return role.newStarts;
  }

  /** The sync is done: its start is the first replay position (saved now, as the daemon does), replay starts, consistent at its end. */
  private async syncDone(role: Extract<HostRole, { kind: 'syncing' }>): Promise<void> {
    role.connection.stop();
    const p = role.target.progress();
    const step = nextPhase<ReplayPosition>({ kind: 'syncing', start: role.start }, { kind: 'sync-done', start: p.startPosition!, end: p.endPosition });
    const save = step.decisions.find((d) => d.kind === 'save-position');
    if (save?.kind === 'save-position') await savePosition(this.storage!, this.name, save.position);
    if (this.role !== role) return;
    this.syncsDone++;
    const saved = save?.kind === 'save-position' ? nextPhase(step.phase, { kind: 'persisted', position: save.position }) : step;
    if (saved.decisions.some((d) => d.kind === 'remove-sync-state')) await removeSyncState(this.storage!);
    if (this.role !== role) return;
    this.installSecondary(p.startPosition!, role.copies, role.held ?? { start: p.startPosition }, role.fetch, saved.phase);
  }

  /** Where fetch starts for a role: where replay stands, or the sync's start. */
  private fetchStart(role: Fetching): ReplayPosition | undefined {
    return role.kind === 'secondary' ? role.replayer.status().appliedPosition : role.start;
  }

  private startFetch(role: Fetching, from: ReplayPosition): void {
    const name = this.name;
    const client: FetchClient = new FetchClient({
      resource: simResource,
      copies: role.copies,
      dial: () => this.ctx.net.dial(name, this.ctx.fetchSourceOf(name)),
      clock: this.clock,
      timers: this.timers,
      random: new Random(this.ctx.random.uint32()),
      startLogNumber: from.logNumber,
      // With no copy yet, the first one begins where replay starts (as the daemon's replica).
      startOffsetBytes: from.offsetBytes,
      startNextSeq: from.nextSeq,
      // As the daemon's replica: the source is the designated primary (or another member, then no such claim).
      primarySource: () => {
        const source = this.ctx.fetchSourceOf(name);
        return source === this.ctx.primaryOf() ? source : undefined;
      },
      backoffMsMin: 50,
      backoffMsMax: 2_000,
      // As the daemon's replica does: a failure that is not a divergence (the source did not
      // hold the resource yet, lacked a log, was damaged) is retried after a pause.
      onStatus: (status) => {
        if (status.state !== 'failed' || status.error?.code === 'FETCH_DIVERGED') return;
        this.timers.setTimeout(() => {
          const now = this.role;
          if ((now.kind === 'secondary' || now.kind === 'syncing') && now.fetch === client && client.status().state === 'failed') void this.restartFetch();
        }, fetchRetryAfterFailureMs);
      },
    });
    role.fetch = client;
    client.start();
  }

  /** The fetch source changed, or fetch is switched off and on: a new client from where the copies end. */
  async restartFetch(): Promise<void> {
    const role = this.role;
    if (role.kind !== 'secondary' && role.kind !== 'syncing') return;
    const fetch = role.fetch;
    role.fetch = undefined;
    if (fetch !== undefined) {
      await fetch.stop();
      await role.copies.reopen();
    }
    const from = this.fetchStart(role);
    // Another restart may have started one while this one waited.
    if (!this.fetchOff && this.role === role && fetchOf(role) === undefined && from !== undefined && !(role.kind === 'syncing' && (role.dropping ?? 0) > 0)) this.startFetch(role, from);
  }

  private get fetchOff(): boolean {
    return this.fetchPaused || this.spacePaused;
  }

  /** The space monitor's emergency stage here (or its end): fetch stops (or starts again) without touching the operator's switch. */
  async setSpacePaused(paused: boolean): Promise<void> {
    this.spacePaused = paused;
    if (paused) await this.restartFetch();
    else if ((this.role.kind === 'secondary' || this.role.kind === 'syncing') && this.role.fetch === undefined) await this.restartFetch();
  }

  async pauseFetch(): Promise<void> {
    this.fetchPaused = true;
    await this.restartFetch();
  }

  async resumeFetch(): Promise<void> {
    this.fetchPaused = false;
    if ((this.role.kind === 'secondary' || this.role.kind === 'syncing') && this.role.fetch === undefined) await this.restartFetch();
  }

  async pauseReplay(): Promise<void> {
    this.replayPaused = true;
    if (this.role.kind === 'secondary') await this.role.replayer.pause();
  }

  resumeReplay(): void {
    this.replayPaused = false;
    if (this.role.kind === 'secondary') this.role.replayer.start(); // idle (started paused) or paused
  }

  /** pause-sync: the sync asks for no more ranges; resolves once none is in flight and its progress is persisted (SyncTarget.pause, as the daemon's switch). */
  async pauseSync(): Promise<void> {
    this.syncPaused = true;
    if (this.role.kind === 'syncing') await this.role.target.pause();
  }

  resumeSync(): void {
    this.syncPaused = false;
    if (this.role.kind === 'syncing') this.role.target.resume();
  }

  /** Planned handover, new side: stop fetch and replay (the device is durable at the replayed position). */
  async stopSecondary(): Promise<void> {
    const role = this.role;
    if (role.kind !== 'secondary' && role.kind !== 'syncing') return;
    this.role = { kind: 'retired' };
    if (role.kind === 'syncing') {
      role.connection.stop();
      await role.target.close().catch(() => undefined);
    }
    if (role.fetch !== undefined) await role.fetch.stop();
    else await role.copies.close();
    if (role.kind === 'secondary') await role.replayer.stop();
  }

  /** invalidate: forget this host's history of the resource, then a full sync from the primary. */
  async invalidate(): Promise<void> {
    await this.stopSecondary();
    await this.forgetHistory();
    await this.startSync();
  }

  /** leave-resource: stop, forget the history; no longer a member (also after restarts). */
  async leave(): Promise<void> {
    await this.stopSecondary();
    this.left = true;
    await this.forgetHistory();
    this.role = { kind: 'left' };
    this.source.set(undefined);
  }

  /** join-resource: a member again, by a full sync. */
  async join(): Promise<void> {
    this.left = false;
    await this.startSync();
  }

  private async forgetHistory(): Promise<void> {
    const storage = this.storage!;
    for (const f of this.logFilesNow()) await storage.remove(f.name);
    // As the daemon's invalidate: the emergency state goes too (the history it described is forgotten).
    for (const name of [positionFileName(this.name), dirtyMarkFileName(this.name), syncStateFileName, emergencyStateFileName(this.name)]) if (await storage.exists(name)) await storage.remove(name);
    await storage.syncDir();
  }

  /**
   * Whether this host says its device is consistent (`is-consistent`): a secondary past
   * the dirty mark found at its start and, after a sync, past the sync's end.
   */
  consistent(): boolean {
    const role = this.role;
    if (role.kind !== 'secondary' || role.replayer.status().dirtyUntil !== undefined) return false;
    if (this.ctx.mutations.consistentAtSyncDone && role.phase.kind === 'replaying' && role.phase.dirtyUntil === undefined) return true;
    return isConsistentPhase(role.phase);
  }

  /** Why this member says it needs `invalidate` (its sync's end went off the primary's history), or undefined. */
  offHistory(): string | undefined {
    if (this.role.kind === 'off-history') return this.role.reason;
    return this.role.kind === 'secondary' && this.role.phase.kind === 'off-history' ? this.role.phase.reason : undefined;
  }

  /**
   * A secondary whose replay is below the dirty mark found at its start: after a crash its
   * device may hold records beyond its position, so it is no prefix state yet (the daemon
   * says `is-consistent` 0 and refuses `primary --force`).
   */
  replayingToConsistency(): boolean {
    return this.role.kind === 'secondary' && !this.consistent();
  }

  /** The seq after which a secondary has replayed (its device holds the records before). */
  appliedSeq(): number {
    return this.role.kind === 'secondary' ? Number(this.role.replayer.status().appliedPosition.nextSeq) - 1 : -1;
  }

  // ---- emergency mode (the primary's log filesystem is full) ----

  /** Whether this host serves as primary in emergency mode (writes go straight to the device). */
  inEmergency(): boolean {
    return this.role.kind === 'primary' && this.role.logger.loggerMode !== 'logging';
  }

  /** The last hole in the log numbering this primary left (0: none). */
  hole(): number {
    return this.role.kind === 'primary' ? this.role.logger.lastHole : 0;
  }

  /** The last hole its emergency state file records (0: none), also while it is down. */
  holeOnDisk(): number {
    const raw = this.logDisk.mem.view(emergencyStateFileName(this.name));
    if (raw === undefined) return 0;
    const state = decodeEmergencyState(raw, emergencyStateFileName(this.name));
    return state.mode === 'logging' ? state.logNumber : 0;
  }

  /**
   * The space monitor's emergency stage on the primary: the logger switches to direct
   * writes, then every log it has written goes (as Resource.logDelete in emergency mode).
   * Returns the names deleted.
   */
  async enterEmergency(reason: string): Promise<string[]> {
    const role = this.role;
    if (role.kind !== 'primary') return [];
    await role.logger.enterEmergency(reason);
    if (this.role !== role || role.logger.loggerMode !== 'emergency') return [];
    const last = role.logger.durableLogEnd().logNumber;
    const files = this.logFilesNow().filter((f) => f.logNumber <= last);
    for (const f of files) await this.storage!.remove(f.name);
    if (files.length > 0) this.primarySource?.notifyChange();
    return files.map((f) => f.name);
  }

  /** Space is back: logging again after a hole in the log numbering. */
  async leaveEmergency(): Promise<boolean> {
    const role = this.role;
    if (role.kind !== 'primary') return false;
    return role.logger.leaveEmergency();
  }

  // ---- log deletion ----

  /** The lowest log this host needs itself: the primary's written-back position, a secondary's persisted replay position. */
  ownNeed(): number | undefined {
    if (this.role.kind === 'primary') return this.role.logger.writtenBackPosition.logNumber;
    if (this.role.kind === 'secondary') return this.role.replayer.status().persistedPosition.logNumber;
    if (this.role.kind === 'syncing') return this.role.start?.logNumber;
    return undefined;
  }

  /** The log files on the log disk now, in log order. */
  logFilesNow(): LogFileName[] {
    return this.logDisk.mem
      .listNow()
      .map((name) => parseLogName(name))
      .filter((f) => f !== undefined)
      .sort((a, b) => a.logNumber - b.logNumber);
  }

  /**
   * log-delete as the daemon's Resource.logDelete does it (the same pure choice): the files
   * below this host's own need and `floor`, never the last. `inspect` sees them before they go.
   */
  async deleteLogs(floor: number, inspect: (files: readonly LogFileName[]) => void): Promise<string[]> {
    const role = this.role;
    if (role.kind !== 'primary' && role.kind !== 'secondary' && role.kind !== 'syncing') return [];
    const storage = this.storage!;
    // As the daemon: the saved position brought up to date first, so that as much as possible goes.
    if (role.kind === 'primary') await role.logger.drain().catch(() => undefined);
    if (this.role !== role) return [];
    const files = logsToDelete(this.logFilesNow(), this.ownNeed(), floor);
    inspect(files);
    for (const f of files) await storage.remove(f.name);
    if (files.length > 0) {
      if (role.kind === 'primary') this.primarySource?.notifyChange();
      else role.copies.source.notifyChange();
    }
    return files.map((f) => f.name);
  }

  /** The start of a sync on the log disk now (what a restart resumes from), if one is recorded. */
  /** Whether the sync state on the log disk says the whole device is copied (replay to its end runs). */
  syncDoneOnDisk(): boolean {
    const raw = this.logDisk.mem.view(syncStateFileName);
    return raw !== undefined && decodeSyncState(raw, syncStateFileName).endPosition !== undefined;
  }

  syncStartOnDisk(): ReplayPosition | undefined {
    const raw = this.logDisk.mem.view(syncStateFileName);
    return raw === undefined ? undefined : decodeSyncState(raw, syncStateFileName).startPosition;
  }

  /** The replay position on the log disk now (what a restart starts from). */
  positionOnDisk(): ReplayPosition | undefined {
    const raw = this.logDisk.mem.view(positionFileName(this.name));
    return raw === undefined ? undefined : decodePosition(raw, positionFileName(this.name));
  }

  // ---- faults ----

  /** Power loss or kill -9: the process dies at once; the disks keep what a crash leaves. */
  crash(silent: boolean): void {
    this.timers.kill();
    this.syncLinks.clear();
    this.ctx.net.killHost(this.name, silent);
    this.logDisk.crash();
    this.deviceDisk.crash();
    this.role = { kind: 'down' };
    this.server = undefined;
  }
}
