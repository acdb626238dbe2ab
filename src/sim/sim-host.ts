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
import { FetchClient, FetchServer, LocalCopies, Replayer, StorageLogSource, SwitchableLogSource } from '../fetch/index.js';
import { formatLogName, parseLogName, type LogFileName } from '../log/index.js';
import { logsToDelete } from '../strategy/index.js';
import { Logger } from '../logger/logger.js';
import type { LoggerLimits } from '../logger/limits.js';
import { recover } from '../logger/recovery.js';
import { decodePosition, loadDirtyMark, loadPosition, positionFileName, saveDirtyMark, savePosition, type ReplayPosition } from '../replay/position.js';
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
}

export const noMutations: Mutations = { shipPastDurable: false, skipReplaySync: false, earlyHandover: false, skipDirtyMark: false, deleteNeededLog: false };

export type HostRole =
  | { readonly kind: 'down' }
  | { readonly kind: 'primary'; readonly logger: Logger }
  | { readonly kind: 'secondary'; readonly copies: LocalCopies; fetch: FetchClient | undefined; readonly replayer: Replayer }
  | { readonly kind: 'retired' };

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
  incarnation = 0;

  constructor(
    readonly name: string,
    private readonly ctx: HostContext,
  ) {
    this.logDisk = new SimDisk(`${name}/log`, new Random(ctx.random.uint32()), ctx.latency);
    this.deviceDisk = new SimDisk(`${name}/device`, new Random(ctx.random.uint32()), ctx.latency);
    this.timers = ctx.scheduler.timers(name);
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
  }

  // ---- primary ----

  /** Starts as primary: recovery of its own log, then the logger. Returns the recovered end. */
  async startPrimary(): Promise<ReplayPosition> {
    await this.openProcess();
    const storage = this.storage!;
    const from = (await loadPosition(storage, this.name)) ?? { logNumber: 1, logHost: this.name, offsetBytes: 0, nextSeq: 1n };
    const report = await recover({ storage, device: this.device!, deviceSizeBytes: this.ctx.sizeBytes, host: this.name, from });
    await this.openLogger(report.start);
    return report.start;
  }

  /** Opens the logger at `start` (after recovery, or after replaying to the old primary's end). */
  async openLogger(start: ReplayPosition): Promise<void> {
    const storage = this.storage!;
    const source: { value?: StorageLogSource } = {};
    const logger = await Logger.open({
      storage,
      device: this.device!,
      sizeBytes: this.ctx.sizeBytes,
      host: this.name,
      clock: this.clock,
      timers: this.timers,
      start,
      limits: this.ctx.limits,
      onLogChange: () => source.value?.notifyChange(),
    });
    const written = (): { logNumber: number; endOffsetBytes: number } => {
      const p = logger.status().logPosition;
      return { logNumber: p.logNumber, endOffsetBytes: p.offsetBytes };
    };
    const live = (): { name: string; durableBytes: number } => {
      const end = this.ctx.mutations.shipPastDurable ? written() : logger.durableLogEnd();
      return { name: formatLogName(end.logNumber, this.name), durableBytes: end.endOffsetBytes };
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
    await logger.close();
    this.role = { kind: 'retired' };
    this.source.set(new StorageLogSource({ storage: this.storage! }));
    return logger.status().logPosition;
  }

  // ---- secondary ----

  /** Starts as secondary after a (re)start. */
  async startSecondary(): Promise<void> {
    await this.openProcess();
    await this.becomeSecondary();
  }

  /** Fetch and replay from the persisted replay position (after a restart, or a retired primary after a handover). */
  async becomeSecondary(): Promise<void> {
    const storage = this.storage!;
    const start = await loadPosition(storage, this.name);
    if (start === undefined) throw new MarsError('NOT_FOUND', `${this.name} has no replay position`);
    const dirtyMark = this.ctx.mutations.skipDirtyMark ? undefined : await loadDirtyMark(storage, this.name);
    const copies = await LocalCopies.open(storage);
    const device = this.ctx.mutations.skipReplaySync ? { ...this.device!, name: this.device!.name, sync: () => Promise.resolve() } : this.device!;
    const role: Extract<HostRole, { kind: 'secondary' }> = {
      kind: 'secondary',
      copies,
      fetch: undefined,
      replayer: new Replayer({
        source: copies.source,
        device,
        deviceSizeBytes: this.ctx.sizeBytes,
        start,
        persist: async (p) => {
          await copies.sync();
          await savePosition(storage, this.name, p);
        },
        ...(dirtyMark === undefined ? {} : { dirtyMark }),
        ...(this.ctx.mutations.skipDirtyMark ? {} : { persistDirtyMark: (mark) => saveDirtyMark(storage, this.name, mark) }),
        onDamage: async (name, offsetBytes) => {
          if (this.role === role) await role.fetch?.reportDamage(name, offsetBytes);
        },
        checkpointBytes: this.ctx.replayCheckpointBytes,
        idleCheckpointMs: 100,
        timers: this.timers,
      }),
    };
    this.role = role;
    this.source.set(copies.source);
    if (!this.fetchPaused) this.startFetch(role, start.logNumber);
    if (!this.replayPaused) role.replayer.start();
  }

  private startFetch(role: Extract<HostRole, { kind: 'secondary' }>, fromLogNumber: number): void {
    const name = this.name;
    role.fetch = new FetchClient({
      resource: simResource,
      copies: role.copies,
      dial: () => this.ctx.net.dial(name, this.ctx.fetchSourceOf(name)),
      clock: this.clock,
      timers: this.timers,
      random: new Random(this.ctx.random.uint32()),
      startLogNumber: fromLogNumber,
      backoffMsMin: 50,
      backoffMsMax: 2_000,
      // As the daemon's replica does: a failure that is not a divergence (the source did not
      // hold the resource yet, lacked a log, was damaged) is retried after a pause.
      onStatus: (status) => {
        if (status.state !== 'failed' || status.error?.code === 'FETCH_DIVERGED') return;
        this.timers.setTimeout(() => {
          if (this.role === role && role.fetch?.status().state === 'failed') void this.restartFetch();
        }, fetchRetryAfterFailureMs);
      },
    });
    role.fetch.start();
  }

  /** The fetch source changed, or fetch is switched off and on: a new client from where the copies end. */
  async restartFetch(): Promise<void> {
    const role = this.role;
    if (role.kind !== 'secondary') return;
    const fetch = role.fetch;
    role.fetch = undefined;
    if (fetch !== undefined) {
      await fetch.stop();
      await role.copies.reopen();
    }
    if (!this.fetchPaused && this.role === role) this.startFetch(role, role.replayer.status().appliedPosition.logNumber);
  }

  async pauseFetch(): Promise<void> {
    this.fetchPaused = true;
    await this.restartFetch();
  }

  async resumeFetch(): Promise<void> {
    this.fetchPaused = false;
    if (this.role.kind === 'secondary' && this.role.fetch === undefined) await this.restartFetch();
  }

  async pauseReplay(): Promise<void> {
    this.replayPaused = true;
    if (this.role.kind === 'secondary') await this.role.replayer.pause();
  }

  resumeReplay(): void {
    this.replayPaused = false;
    if (this.role.kind === 'secondary') this.role.replayer.start(); // idle (started paused) or paused
  }

  /** Planned handover, new side: stop fetch and replay (the device is durable at the replayed position). */
  async stopSecondary(): Promise<void> {
    const role = this.role;
    if (role.kind !== 'secondary') return;
    if (role.fetch !== undefined) await role.fetch.stop();
    else await role.copies.close();
    await role.replayer.stop();
    this.role = { kind: 'retired' };
  }

  /**
   * A secondary whose replay is below the dirty mark found at its start: after a crash its
   * device may hold records beyond its position, so it is no prefix state yet (the daemon
   * says `is-consistent` 0 and refuses `primary --force`).
   */
  replayingToConsistency(): boolean {
    return this.role.kind === 'secondary' && this.role.replayer.status().dirtyUntil !== undefined;
  }

  /** The seq after which a secondary has replayed (its device holds the records before). */
  appliedSeq(): number {
    return this.role.kind === 'secondary' ? Number(this.role.replayer.status().appliedPosition.nextSeq) - 1 : -1;
  }

  // ---- log deletion ----

  /** The lowest log this host needs itself: the primary's written-back position, a secondary's persisted replay position. */
  ownNeed(): number | undefined {
    if (this.role.kind === 'primary') return this.role.logger.writtenBackPosition.logNumber;
    if (this.role.kind === 'secondary') return this.role.replayer.status().persistedPosition.logNumber;
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
    if (role.kind !== 'primary' && role.kind !== 'secondary') return [];
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

  /** The replay position on the log disk now (what a restart starts from). */
  positionOnDisk(): ReplayPosition | undefined {
    const raw = this.logDisk.mem.view(positionFileName(this.name));
    return raw === undefined ? undefined : decodePosition(raw, positionFileName(this.name));
  }

  // ---- faults ----

  /** Power loss or kill -9: the process dies at once; the disks keep what a crash leaves. */
  crash(silent: boolean): void {
    this.timers.kill();
    this.ctx.net.killHost(this.name, silent);
    this.logDisk.crash();
    this.deviceDisk.crash();
    this.role = { kind: 'down' };
    this.server = undefined;
  }
}
