/**
 * One resource on this host: its directory and device, and its role. On the primary:
 * recovery, then the logger that serves the export, and the log source that peers fetch
 * from. On a secondary: the Replica (sync, fetch, replay). Recovery runs before the
 * resource is exported; a resource whose log is corrupt stays unexported with the reason,
 * and the rest of the daemon carries on.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { fileSize, type StorageFile } from '../storage/storage.js';
import { FsStorage, openDevice } from '../storage/fs-storage.js';
import { Logger, type LoggerStatus } from '../logger/logger.js';
import type { LoggerLimits } from '../logger/limits.js';
import { recover, type RecoveryReport } from '../logger/recovery.js';
import { EmergencyFile } from '../logger/emergency-file.js';
import { formatLogName } from '../log/index.js';
import { loadPosition, savePosition, type ReplayPosition } from '../replay/position.js';
import { logsToDelete } from '../strategy/index.js';
import { listLogFiles, parseLogName } from '../log/index.js';
import type { Random } from '../core/random.js';
import { liveWriterEnd, RecentLogBytes, StorageLogSource, SwitchableLogSource, TeeLogStorage, type LogSource } from '../fetch/index.js';
import type { PeerLink, Timers } from '../net/index.js';
import { extendChainOnce, lastVersion } from '../replay/version-chain.js';
import type { SyncSourceResource } from '../sync/index.js';
import { loadResourceConfig, saveResourceConfig, resourceFormatVersion, type ResourceConfig } from './resource-config.js';
import { loadChain, Replica, saveChain, type ReplicaStatus, type ReplicaSwitches } from './replica.js';
import type { Bandwidth } from './bandwidth.js';
import type { CompressionName } from '../compress/index.js';

export type ResourceState =
  | { kind: 'recovering' }
  | { kind: 'serving'; logger: Logger; source: StorageLogSource }
  | { kind: 'replicating'; replica: Replica }
  | { kind: 'failed'; reason: string; code: string }
  | { kind: 'stopped' };

export interface ResourceContext {
  host: string;
  clock: Clock;
  limits: Partial<LoggerLimits>;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** The resource stopped serving (its export must disconnect its clients). */
  onFailed: (name: string) => void;
  /** Something the resource's indicator shows changed (a secondary's consistency, the log it needs). */
  onChange: (name: string) => void;
  /** Dials a peer on a bulk channel (fetch, sync). */
  dial: (host: string, channel: 'fetch' | 'sync') => Promise<PeerLink>;
  timers: Timers;
  random: Random;
  /** A secondary's sync rate limit, bytes per second (0 = unlimited). */
  syncRateBytesPerS?: number;
  /** The host's bandwidth limits for fetch and sync. */
  bandwidth?: Bandwidth;
  /** Compressions this host can receive log data in (fetch's HELLO). */
  compressions?: readonly CompressionName[];
  /** Whether the resource is in near-sync mode (a secondary then fdatasyncs and acknowledges at once). */
  nearSync?: (resource: string) => boolean;
  /** Fetch connections to the source (marsd --parallel-connections). */
  parallelConnections?: number;
  /** How long a failed fetch waits before it starts again (src/daemon/daemon-intervals.ts). */
  fetchRetryMs?: number;
  /** Throws ENOSPC when fetch may not write `bytes` more into the log filesystem (src/daemon/state-reserve.ts). */
  copyRoom?: (bytes: number) => Promise<void>;
}

/** The operator's switches for a secondary: everything runs unless paused. */
export const allSwitchesOn: ReplicaSwitches = { fetch: true, replay: true, sync: true };

export interface ResourceStatus {
  name: string;
  sizeBytes: number;
  devicePath: string;
  primary: string;
  state: 'recovering' | 'serving' | 'failed' | 'stopped';
  role: 'primary' | 'secondary';
  failure: string | undefined;
  replica: ReplicaStatus | undefined;
  logger: LoggerStatus | undefined;
  recovery: RecoveryReport | undefined;
  logFiles: { name: string; sizeBytes: number }[];
}

export class Resource {
  private state: ResourceState = { kind: 'stopped' };
  private device: StorageFile | undefined;
  private recovery: RecoveryReport | undefined;
  private switches: ReplicaSwitches = allSwitchesOn;
  /** The size of the device as last read (for resize checks across the cluster). */
  deviceBytes: number | undefined;
  /** The size of the device when the running replica opened (its replay's bound). */
  private replicaDeviceBytes = 0;
  /** The log number this host last needed (kept while stopped, for log deletion across the cluster). */
  private needsLogValue: number | undefined;
  /** Peers whose sync started here, with the log their start position is in (kept until they report). */
  readonly syncHolds = new Map<string, number>();
  private readonly served = new SwitchableLogSource();
  private emergencyFile: EmergencyFile | undefined;
  private lastLogFiles: { name: string; sizeBytes: number }[] = [];

  private constructor(
    private configValue: ResourceConfig,
    readonly storage: FsStorage,
    private readonly ctx: ResourceContext,
  ) {}

  get name(): string {
    return this.configValue.name;
  }

  /** What resource.json says: this host's device, the size, and the primary it was last told. */
  get config(): ResourceConfig {
    return this.configValue;
  }

  /** 'serving' also for a secondary whose replica runs. */
  get stateKind(): 'recovering' | 'serving' | 'failed' | 'stopped' {
    return this.state.kind === 'replicating' ? 'serving' : this.state.kind;
  }

  get isPrimaryRole(): boolean {
    return this.configValue.primary === this.ctx.host;
  }

  /** The switches a running secondary applies now. */
  get currentSwitches(): ReplicaSwitches {
    return this.switches;
  }

  /** The lowest log number this host still needs; undefined when it does not hold any back. */
  get needsLog(): number | undefined {
    if (this.state.kind === 'serving') this.needsLogValue = this.state.logger.writtenBackPosition.logNumber;
    if (this.state.kind === 'replicating') this.needsLogValue = this.state.replica.needsLog ?? this.needsLogValue;
    return this.needsLogValue;
  }

  /** A secondary's copy is consistent (sync done and replayed past its end); the primary's always is. */
  get consistent(): boolean | undefined {
    if (this.state.kind === 'replicating') return this.state.replica.consistent;
    if (this.state.kind === 'serving') return true;
    return undefined;
  }

  /** The last version of this host's chain ('' before the first complete log). */
  async version(): Promise<string> {
    if (this.state.kind === 'replicating') return this.state.replica.version;
    return lastVersion(await loadChain(this.storage, this.ctx.host).catch(() => ({ baseVersion: '', entries: [] })));
  }

  get failure(): string | undefined {
    return this.state.kind === 'failed' ? this.state.reason : undefined;
  }

  /** The designated primary changed in the metadata: remember it in resource.json (a running secondary redials). */
  async setPrimary(primary: string): Promise<void> {
    const next: ResourceConfig = { ...this.configValue, primary };
    await saveResourceConfig(this.storage, next);
    this.configValue = next;
    if (this.state.kind === 'replicating') this.state.replica.primaryChanged();
  }

  /** The running secondary's replica, if any. */
  get replica(): Replica | undefined {
    return this.state.kind === 'replicating' ? this.state.replica : undefined;
  }

  /**
   * Where this host's own log ends (the last log file it wrote as a primary), when it does
   * not serve as primary now: a planned handover waits until the new primary has replayed
   * up to here. A secondary's copies are verified and cut at start, so the end is valid.
   */
  async ownLogEnd(): Promise<{ logNumber: number; offsetBytes: number } | undefined> {
    if (this.state.kind === 'serving' || this.state.kind === 'recovering') return undefined;
    const files = await listLogFiles(this.storage);
    for (let i = files.length - 1; i >= 0; i--) {
      const f = files[i]!;
      if (parseLogName(f.name)?.host !== this.ctx.host) continue;
      const bytes = await fileSize(this.storage, f.name);
      if (bytes > 0) return { logNumber: f.logNumber, offsetBytes: bytes };
      // An empty own log (started at the last start, never written): its predecessor's end is where the history ends.
      const previous = files[i - 1];
      if (previous === undefined || previous.logNumber !== f.logNumber - 1) return undefined;
      return { logNumber: previous.logNumber, offsetBytes: await fileSize(this.storage, previous.name) };
    }
    return undefined;
  }

  /** The last log files this host holds: [number, origin host, bytes] (split brain shows as one number with two origins). */
  async recentLogs(count: number): Promise<[number, string, number][]> {
    const files = (await listLogFiles(this.storage)).slice(-count);
    const logs: [number, string, number][] = [];
    for (const f of files) logs.push([f.logNumber, parseLogName(f.name)?.host ?? '?', await fileSize(this.storage, f.name)]);
    return logs;
  }

  /**
   * invalidate: forget this host's history of the resource (log files, replay position and
   * dirty mark, sync state, version chain) so that the next start syncs from the primary. The device
   * is left as it is: the fast full sync sends only the blocks that differ.
   */
  async forgetHistory(): Promise<void> {
    if (this.stateKind !== 'stopped' && this.stateKind !== 'failed') throw new MarsError('EBUSY', `resource ${this.name} must be stopped first`);
    for (const name of await this.storage.list()) {
      if (name.startsWith('log-') || name.startsWith('replay-') || name.startsWith('dirty-') || name.startsWith('versions-') || name.startsWith('emergency-') || name === 'sync-state') await this.storage.remove(name);
    }
    await this.storage.syncDir();
    this.needsLogValue = undefined;
    this.emergencyFile = undefined;
    this.state = { kind: 'stopped' };
  }

  /** Creates the resource directory and config; the caller then calls `start()`. */
  static async create(dir: string, config: Omit<ResourceConfig, 'formatVersion'>, ctx: ResourceContext): Promise<Resource> {
    const storage = await FsStorage.create(dir);
    const full: ResourceConfig = { formatVersion: resourceFormatVersion, ...config };
    if (config.primary === ctx.host) {
      // A new resource starts its history here; a secondary's starts with its sync.
      const start: ReplayPosition = { logNumber: 1, logHost: ctx.host, offsetBytes: 0, nextSeq: 1n };
      await savePosition(storage, ctx.host, start);
    }
    await saveResourceConfig(storage, full);
    return new Resource(full, storage, ctx);
  }

  static async load(dir: string, ctx: ResourceContext): Promise<Resource> {
    const storage = new FsStorage(dir);
    const config = await loadResourceConfig(storage, dir);
    return new Resource(config, storage, ctx);
  }

  /** Primary: recovery (replay of the own log from the written-back position), then serving. Secondary: the replica. */
  async start(switches: ReplicaSwitches = this.switches): Promise<void> {
    this.switches = switches;
    this.state = { kind: 'recovering' };
    try {
      this.device = await openDevice(this.config.devicePath);
      const deviceBytes = await this.device.size();
      if (deviceBytes < this.config.sizeBytes) {
        throw new MarsError('BAD_DEVICE', `device ${this.config.devicePath} has ${deviceBytes} bytes, the resource needs ${this.config.sizeBytes}`);
      }
      this.deviceBytes = deviceBytes;
      if (!this.isPrimaryRole) {
        const saved = await EmergencyFile.read(this.storage, this.ctx.host).catch(() => undefined);
        this.emergencyFile = saved === undefined ? undefined : await EmergencyFile.open(this.storage, this.ctx.host);
        await this.startReplica(this.device, deviceBytes);
        return;
      }
      const emergencyFile = await EmergencyFile.open(this.storage, this.ctx.host);
      this.emergencyFile = emergencyFile;
      const start = await this.recoverOrStayInEmergency(this.device, emergencyFile);
      await this.recordCompleteLogs(start.logNumber + (emergencyFile.inEmergency ? 1 : 0));
      const source: { value?: StorageLogSource } = {};
      // What the logger appends is kept in memory while a secondary fetches (its O_DIRECT writes bypass the page cache).
      const recent = new RecentLogBytes();
      const logger = await Logger.open({
        storage: new TeeLogStorage(this.storage, this.ctx.host, recent),
        device: this.device,
        sizeBytes: this.config.sizeBytes,
        host: this.ctx.host,
        clock: this.ctx.clock,
        timers: this.ctx.timers,
        start,
        limits: this.ctx.limits,
        emergencyFile,
        startInEmergency: emergencyFile.inEmergency,
        onEmergency: (reason) => {
          if (reason === undefined) this.ctx.log('warn', `${this.name} left emergency mode: logging again after a hole in the log numbering; secondaries need marsadm invalidate ${this.name}`, { resource: this.name });
          else this.ctx.log('error', `${this.name} is in emergency mode: writes go straight to the device, replication stopped (${reason})`, { resource: this.name });
          this.ctx.onChange(this.name);
        },
        onFailure: (err) => this.fail(err),
        onWritebackError: (err) => this.ctx.log('warn', `writeback of ${this.name} failed, retrying: ${err.message}`, { resource: this.name }),
        onPersistError: (err) => {
          if (err === undefined) this.ctx.log('info', `the writeback position of ${this.name} is saved again`, { resource: this.name });
          else this.ctx.log('warn', `cannot save the writeback position of ${this.name} (retrying; recovery would replay more): ${err.message}`, { resource: this.name });
        },
        onLogChange: () => source.value?.notifyChange(),
        onRotate: (previous) => void this.recordCompleteLogs(previous + 1),
      });
      source.value = new StorageLogSource({ storage: this.storage, live: liveWriterEnd({ durablePosition: () => logger.durableLogEnd(), frozen: () => logger.loggerMode !== 'logging' }, this.ctx.host), recent });
      this.state = { kind: 'serving', logger, source: source.value };
      this.served.set(source.value);
    } catch (err) {
      const e = err instanceof MarsError ? err : new MarsError('EIO', (err as Error).message, { cause: err });
      const started = this.state;
      this.state = { kind: 'stopped' };
      await this.release(started);
      this.fail(e);
      await this.device?.close().catch(() => undefined);
      this.device = undefined;
    }
  }

  /**
   * Recovery replays the log from the written-back position, except in emergency mode: then
   * the device holds every answered write (and newer ones than the log), so nothing is
   * replayed and the logger starts in emergency mode at the end of the last log written.
   */
  private async recoverOrStayInEmergency(device: StorageFile, emergencyFile: EmergencyFile): Promise<ReplayPosition> {
    const emergency = emergencyFile.state;
    if (emergency?.mode === 'emergency') {
      const name = formatLogName(emergency.logNumber, this.ctx.host);
      const endBytes = (await this.storage.exists(name)) ? await fileSize(this.storage, name) : 0;
      this.ctx.log('warn', `${this.name} restarts in emergency mode: the device is used as it is, the log is not replayed`, { resource: this.name });
      this.recovery = undefined;
      return { logNumber: emergency.logNumber, logHost: this.ctx.host, offsetBytes: endBytes, nextSeq: emergency.nextSeq };
    }
    const position = await loadPosition(this.storage, this.ctx.host);
    if (position === undefined) throw new MarsError('BAD_STATE_DIR', `${this.storage.dir}: no replay position for host ${this.ctx.host}`);
    this.recovery = await recover({ storage: this.storage, device, deviceSizeBytes: this.config.sizeBytes, host: this.ctx.host, from: position });
    if (this.recovery.replayedRecords > 0 || this.recovery.tornTail !== undefined) {
      this.ctx.log('info', 'recovery replayed the log', { resource: this.name, ...summarize(this.recovery) });
    }
    return this.recovery.start;
  }

  /** Emergency mode of the primary: whether it is in it, and the last hole in the log numbering (0: none). */
  get emergency(): { active: boolean; hole: number; reason: string | undefined } | undefined {
    if (this.state.kind === 'serving') {
      const s = this.state.logger.status();
      return { active: s.mode !== 'logging', hole: s.holeLogNumber, reason: s.emergencyReason };
    }
    // Not serving (stopped, or a former primary now secondary): what the file said at the
    // last start. A device written directly in emergency mode holds writes no log has.
    const saved = this.emergencyFile?.state;
    if (saved === undefined || (saved.mode === 'logging' && saved.logNumber === 0)) return undefined;
    return { active: saved.mode === 'emergency', hole: saved.mode === 'logging' ? saved.logNumber : 0, reason: saved.mode === 'emergency' ? 'it stopped in emergency mode' : undefined };
  }

  private async startReplica(device: StorageFile, deviceBytes: number): Promise<void> {
    this.replicaDeviceBytes = deviceBytes;
    const replica = await Replica.open({
      resource: this.name,
      host: this.ctx.host,
      storage: this.storage,
      device,
      sizeBytes: this.config.sizeBytes,
      deviceBytes,
      primary: () => this.configValue.primary,
      dial: this.ctx.dial,
      clock: this.ctx.clock,
      timers: this.ctx.timers,
      random: this.ctx.random,
      switches: this.switches,
      log: this.ctx.log,
      onChange: () => this.ctx.onChange(this.name),
      ...(this.ctx.syncRateBytesPerS === undefined ? {} : { syncRateBytesPerS: this.ctx.syncRateBytesPerS }),
      ...(this.ctx.bandwidth === undefined ? {} : { bandwidth: this.ctx.bandwidth }),
      ...(this.ctx.compressions === undefined ? {} : { compressions: this.ctx.compressions }),
      ...(this.ctx.nearSync === undefined ? {} : { nearSync: this.ctx.nearSync }),
      ...(this.ctx.parallelConnections === undefined ? {} : { parallelConnections: this.ctx.parallelConnections }),
      ...(this.ctx.fetchRetryMs === undefined ? {} : { fetchRetryMs: this.ctx.fetchRetryMs }),
      ...(this.ctx.copyRoom === undefined ? {} : { copyRoom: this.ctx.copyRoom }),
    });
    this.state = { kind: 'replicating', replica };
    this.served.set(replica.copies.source);
    await replica.start();
  }

  /** The primary's version chain gains every complete log before `currentLogNumber` it does not hold yet. */
  private async recordCompleteLogs(currentLogNumber: number): Promise<void> {
    try {
      let chain = await loadChain(this.storage, this.ctx.host);
      const last = chain.entries.at(-1)?.logNumber ?? 0;
      let changed = false;
      const saved = this.emergencyFile?.state;
      const hole = saved?.mode === 'logging' ? saved.logNumber : 0;
      for (const f of await listLogFiles(this.storage)) {
        if (f.logNumber <= last || f.logNumber >= currentLogNumber) continue;
        const previous = chain.entries.at(-1)?.logNumber ?? 0;
        // An emergency's hole is a link of length 0: the chain stays one number per log.
        if (previous !== 0 && hole === previous + 1 && f.logNumber === hole + 1) chain = extendChainOnce(chain, { logNumber: hole, origin: this.ctx.host, lengthBytes: 0 });
        if (last !== 0 && f.logNumber !== (chain.entries.at(-1)?.logNumber ?? 0) + 1) break;
        chain = extendChainOnce(chain, { logNumber: f.logNumber, origin: parseLogName(f.name)!.host, lengthBytes: await fileSize(this.storage, f.name) });
        changed = true;
      }
      if (changed) await saveChain(this.storage, this.ctx.host, chain);
    } catch (err) {
      this.ctx.log('warn', `cannot record the version chain of ${this.name}: ${(err as Error).message}`, { resource: this.name });
    }
  }

  /**
   * Reads the open device's size again (a device grown underneath, by lvextend or a
   * longer file, is noticed without down/up); reported in the indicator for resize.
   */
  async refreshDeviceBytes(): Promise<void> {
    const device = this.device;
    if (device === undefined) return;
    const bytes = await device.size().catch(() => undefined);
    if (bytes !== undefined) this.deviceBytes = bytes;
  }

  /**
   * resize (grow only): the primary zeroes the new area through its log, so secondaries
   * replay the same zeroes; a secondary only records the new size (a pending sync starts
   * over with it). The device's size is read again first.
   */
  async resize(newSizeBytes: number): Promise<void> {
    if (newSizeBytes <= this.config.sizeBytes) return;
    await this.refreshDeviceBytes();
    const device = this.deviceBytes;
    if (device !== undefined && device < newSizeBytes) throw new MarsError('BAD_DEVICE', `device ${this.config.devicePath} has ${device} bytes, resize to ${newSizeBytes} needs more`);
    const state = this.state;
    if (state.kind === 'serving') await state.logger.grow(newSizeBytes);
    // A secondary restarts when its sync must start over with the new size, or when its
    // device grew since the replica opened (replay accepts records up to the device's end).
    const restart = state.kind === 'replicating' && (!state.replica.consistent || (device ?? 0) > this.replicaDeviceBytes);
    if (restart) await this.stop();
    const next: ResourceConfig = { ...this.configValue, sizeBytes: newSizeBytes };
    await saveResourceConfig(this.storage, next);
    this.configValue = next;
    if (restart) await this.start();
    this.ctx.log('info', `resource ${this.name} grew to ${newSizeBytes} bytes`, { resource: this.name });
  }

  /** Applies the operator's switches on a running secondary. */
  async setSwitches(switches: ReplicaSwitches): Promise<void> {
    this.switches = switches;
    if (this.state.kind === 'replicating') await this.state.replica.setSwitches(switches);
  }

  /** The log source peers fetch from: the primary's own log, a secondary's verified copies (one object for the resource's lifetime). */
  logSource(): LogSource {
    return this.served;
  }

  /** What a syncing peer reads, if this host serves the resource as its primary. */
  syncSource(peer: string): SyncSourceResource | undefined {
    const state = this.state;
    const device = this.device;
    if (state.kind !== 'serving' || device === undefined || !this.isPrimaryRole) return undefined;
    // In emergency mode there is no log to continue from: a sync waits until logging resumes.
    if (state.logger.loggerMode !== 'logging') return undefined;
    const host = this.ctx.host;
    return {
      device,
      sizeBytes: this.config.sizeBytes,
      startPosition: () => {
        const start = state.logger.writtenBackPosition;
        const held = this.syncHolds.get(peer);
        if (held === undefined || start.logNumber < held) this.syncHolds.set(peer, start.logNumber);
        return start;
      },
      endPosition: () => {
        // A session that began before an emergency copied blocks that direct writes changed
        // meanwhile; the log's end then names no state of the device: no end until logging
        // resumes (the next session's end lies after the hole, which replay cannot cross).
        if (state.logger.loggerMode !== 'logging') throw new MarsError('EBUSY', `${this.name} is in emergency mode: the sync's end is known once logging resumes`);
        const end = state.logger.durableLogEnd();
        return { logNumber: end.logNumber, logHost: host, offsetBytes: end.endOffsetBytes, nextSeq: end.nextSeq };
      },
    };
  }

  private fail(err: MarsError): void {
    const before = this.state;
    this.state = { kind: 'failed', reason: err.message, code: err.code };
    // A logger or replica that failed while running still holds files: close them (later,
    // not inside the failing component's own callback), not the garbage collector.
    if (before.kind === 'serving' || before.kind === 'replicating') void Promise.resolve().then(() => this.release(before));
    this.ctx.log('error', `resource ${this.name} is not served: ${err.message}`, { resource: this.name, code: err.code });
    this.ctx.onFailed(this.name);
  }

  /** Closes what a state that is left behind holds open (its errors are already reported). */
  private async release(state: Resource['state']): Promise<void> {
    if (state.kind === 'serving') await state.logger.close().catch(() => undefined);
    if (state.kind === 'replicating') await state.replica.stop().catch(() => undefined);
  }

  /** The export, if this host serves the resource. */
  backend(): Logger | undefined {
    return this.state.kind === 'serving' && this.config.primary === this.ctx.host ? this.state.logger : undefined;
  }

  private serving(): Logger {
    if (this.state.kind === 'failed') throw new MarsError('RESOURCE_FAILED', `resource ${this.name} is not served: ${this.state.reason}`);
    if (this.state.kind === 'replicating') throw new MarsError('EINVAL', `${this.ctx.host} is a secondary of ${this.name}: only its primary ${this.config.primary} writes its log`);
    if (this.state.kind !== 'serving') throw new MarsError('RESOURCE_FAILED', `resource ${this.name} is ${this.state.kind}`);
    return this.state.logger;
  }

  async logRotate(): Promise<number> {
    return this.serving().rotate();
  }

  /**
   * Deletes the log files every member has replayed past: below this host's own need (the
   * primary: written back to its device; a secondary: replayed) and below `floor`, the
   * lowest log another member still needs.
   */
  async logDelete(floor: number = Number.MAX_SAFE_INTEGER): Promise<string[]> {
    let own: number | undefined;
    if (this.state.kind === 'replicating') {
      own = this.state.replica.needsLog;
    } else {
      const logger = this.serving();
      if (logger.loggerMode === 'emergency') return this.deleteLogsThrough(logger.durableLogEnd().logNumber);
      // Bring the saved position up to date first, so that as much as possible can go. If it
      // cannot be saved (the log filesystem is full: the very case log-delete is run for),
      // what the last saved position allows is still deleted.
      await logger.drain().catch((err: unknown) => {
        this.ctx.log('warn', `log-delete ${this.name}: position not saved, deleting what the last saved one allows: ${(err as Error).message}`, { resource: this.name });
      });
      own = logger.writtenBackPosition.logNumber;
    }
    const deleted: string[] = [];
    for (const f of logsToDelete(await listLogFiles(this.storage), own, floor)) {
      await this.storage.remove(f.name);
      deleted.push(f.name);
    }
    if (deleted.length > 0) {
      const state = this.state;
      if (state.kind === 'serving') state.source.notifyChange();
      if (state.kind === 'replicating') state.replica.copies.source.notifyChange();
    }
    return deleted;
  }

  /**
   * In emergency mode the primary needs none of its logs: its device holds every write, a
   * restart does not replay, and replication resumes only through invalidate. So every log
   * goes up to the frozen one (`lastLogNumber`): on a filesystem that holds nothing but
   * that log, keeping it would keep the primary in emergency mode until an operator made
   * room. A log that leaving emergency mode creates meanwhile has a higher number.
   */
  private async deleteLogsThrough(lastLogNumber: number): Promise<string[]> {
    const deleted: string[] = [];
    for (const f of await listLogFiles(this.storage)) {
      if (f.logNumber > lastLogNumber) continue;
      await this.storage.remove(f.name);
      deleted.push(f.name);
    }
    if (deleted.length > 0 && this.state.kind === 'serving') this.state.source.notifyChange();
    return deleted;
  }

  /** The log files and their sizes as last listed for status (for the space monitor's messages). */
  logFilesNow(): { name: string; sizeBytes: number }[] {
    return this.lastLogFiles;
  }

  async status(): Promise<ResourceStatus> {
    const logFiles: { name: string; sizeBytes: number }[] = [];
    for (const f of await listLogFiles(this.storage)) {
      const sizeBytes = await fileSize(this.storage, f.name).catch(() => undefined);
      if (sizeBytes !== undefined) logFiles.push({ name: f.name, sizeBytes });
    }
    this.lastLogFiles = logFiles;
    return {
      name: this.name,
      sizeBytes: this.config.sizeBytes,
      devicePath: this.config.devicePath,
      primary: this.config.primary,
      state: this.stateKind,
      role: this.isPrimaryRole ? 'primary' : 'secondary',
      failure: this.state.kind === 'failed' ? this.state.reason : this.state.kind === 'replicating' ? this.state.replica.failed : undefined,
      replica: this.state.kind === 'replicating' ? await this.state.replica.status() : undefined,
      logger: this.state.kind === 'serving' ? this.state.logger.status() : undefined,
      recovery: this.recovery,
      logFiles,
    };
  }

  /** Clean stop: the log is synced, everything written back (replay checkpointed), files closed. */
  async stop(): Promise<void> {
    const needs = this.needsLog;
    const state = this.state;
    this.state = { kind: 'stopped' };
    this.served.set(undefined);
    this.needsLogValue = needs;
    if (state.kind === 'serving') await state.logger.close();
    if (state.kind === 'replicating') await state.replica.stop();
    if (this.device !== undefined) {
      await this.device.sync().catch(() => undefined);
      await this.device.close();
      this.device = undefined;
    }
  }

  /** Clean stop for good (the resource is deleted or left on this host): fetch streams on its logs end and close their files. */
  async retire(): Promise<void> {
    await this.stop();
    this.served.close();
  }
}

function summarize(r: RecoveryReport): Record<string, unknown> {
  return {
    replayedRecords: r.replayedRecords,
    replayedBytes: r.replayedBytes,
    tornTail: r.tornTail === undefined ? undefined : `${r.tornTail.logName}@${r.tornTail.offsetBytes}`,
  };
}
