/**
 * One resource on this host: its directory, recovery, and (on the primary) the logger
 * that serves it. Recovery runs before the resource is exported; a resource whose log is
 * corrupt stays unexported with the reason, and the rest of the daemon carries on.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import type { StorageFile } from '../storage/storage.js';
import { FsStorage, openDevice } from '../storage/fs-storage.js';
import { Logger, type LoggerStatus } from '../logger/logger.js';
import type { LoggerLimits } from '../logger/limits.js';
import { recover, type RecoveryReport } from '../logger/recovery.js';
import { loadPosition, savePosition, type ReplayPosition } from '../replay/position.js';
import { listLogFiles } from '../log/index.js';
import { loadResourceConfig, saveResourceConfig, resourceFormatVersion, type ResourceConfig } from './resource-config.js';

export type ResourceState =
  | { kind: 'recovering' }
  | { kind: 'serving'; logger: Logger }
  | { kind: 'failed'; reason: string; code: string }
  | { kind: 'stopped' };

export interface ResourceContext {
  host: string;
  clock: Clock;
  limits: Partial<LoggerLimits>;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** The resource stopped serving (its export must disconnect its clients). */
  onFailed: (name: string) => void;
}

export interface ResourceStatus {
  name: string;
  sizeBytes: number;
  devicePath: string;
  primary: string;
  state: ResourceState['kind'];
  failure: string | undefined;
  logger: LoggerStatus | undefined;
  recovery: RecoveryReport | undefined;
  logFiles: { name: string; sizeBytes: number }[];
}

export class Resource {
  private state: ResourceState = { kind: 'recovering' };
  private device: StorageFile | undefined;
  private recovery: RecoveryReport | undefined;

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

  get stateKind(): ResourceState['kind'] {
    return this.state.kind;
  }

  get failure(): string | undefined {
    return this.state.kind === 'failed' ? this.state.reason : undefined;
  }

  /** The designated primary changed in the metadata: remember it in resource.json. */
  async setPrimary(primary: string): Promise<void> {
    const next: ResourceConfig = { ...this.configValue, primary };
    await saveResourceConfig(this.storage, next);
    this.configValue = next;
  }

  /** Creates the resource directory and config; the caller then calls `start()`. */
  static async create(dir: string, config: Omit<ResourceConfig, 'formatVersion'>, ctx: ResourceContext): Promise<Resource> {
    const storage = await FsStorage.create(dir);
    const full: ResourceConfig = { formatVersion: resourceFormatVersion, ...config };
    const start: ReplayPosition = { logNumber: 1, logHost: ctx.host, offsetBytes: 0, nextSeq: 1n };
    await savePosition(storage, ctx.host, start);
    await saveResourceConfig(storage, full);
    return new Resource(full, storage, ctx);
  }

  static async load(dir: string, ctx: ResourceContext): Promise<Resource> {
    const storage = new FsStorage(dir);
    const config = await loadResourceConfig(storage, dir);
    return new Resource(config, storage, ctx);
  }

  /** Recovery (replay of the own log from the written-back position), then serving. */
  async start(): Promise<void> {
    try {
      this.device = await openDevice(this.config.devicePath);
      const deviceBytes = await this.device.size();
      if (deviceBytes < this.config.sizeBytes) {
        throw new MarsError('BAD_DEVICE', `device ${this.config.devicePath} has ${deviceBytes} bytes, the resource needs ${this.config.sizeBytes}`);
      }
      const position = await loadPosition(this.storage, this.ctx.host);
      if (position === undefined) throw new MarsError('BAD_STATE_DIR', `${this.storage.dir}: no replay position for host ${this.ctx.host}`);
      this.recovery = await recover({ storage: this.storage, device: this.device, deviceSizeBytes: this.config.sizeBytes, host: this.ctx.host, from: position });
      if (this.recovery.replayedRecords > 0 || this.recovery.tornTail !== undefined) {
        this.ctx.log('info', 'recovery replayed the log', { resource: this.name, ...summarize(this.recovery) });
      }
      const logger = await Logger.open({
        storage: this.storage,
        device: this.device,
        sizeBytes: this.config.sizeBytes,
        host: this.ctx.host,
        clock: this.ctx.clock,
        start: this.recovery.start,
        limits: this.ctx.limits,
        onFailure: (err) => this.fail(err),
        onWritebackError: (err) => this.ctx.log('warn', `writeback of ${this.name} failed, retrying: ${err.message}`, { resource: this.name }),
        onPersistError: (err) => {
          if (err === undefined) this.ctx.log('info', `the writeback position of ${this.name} is saved again`, { resource: this.name });
          else this.ctx.log('warn', `cannot save the writeback position of ${this.name} (retrying; recovery would replay more): ${err.message}`, { resource: this.name });
        },
      });
      this.state = { kind: 'serving', logger };
    } catch (err) {
      const e = err instanceof MarsError ? err : new MarsError('EIO', (err as Error).message, { cause: err });
      this.fail(e);
      await this.device?.close().catch(() => undefined);
      this.device = undefined;
    }
  }

  private fail(err: MarsError): void {
    this.state = { kind: 'failed', reason: err.message, code: err.code };
    this.ctx.log('error', `resource ${this.name} is not served: ${err.message}`, { resource: this.name, code: err.code });
    this.ctx.onFailed(this.name);
  }

  /** The export, if this host serves the resource. */
  backend(): Logger | undefined {
    return this.state.kind === 'serving' && this.config.primary === this.ctx.host ? this.state.logger : undefined;
  }

  private serving(): Logger {
    if (this.state.kind === 'failed') throw new MarsError('RESOURCE_FAILED', `resource ${this.name} is not served: ${this.state.reason}`);
    if (this.state.kind !== 'serving') throw new MarsError('RESOURCE_FAILED', `resource ${this.name} is ${this.state.kind}`);
    return this.state.logger;
  }

  async logRotate(): Promise<number> {
    return this.serving().rotate();
  }

  /** Deletes the log files whose every record is written back to the device. */
  async logDelete(): Promise<string[]> {
    const logger = this.serving();
    // Bring the saved position up to date first, so that as much as possible can go. If it
    // cannot be saved (the log filesystem is full: the very case log-delete is run for),
    // what the last saved position allows is still deleted.
    await logger.drain().catch((err: unknown) => {
      this.ctx.log('warn', `log-delete ${this.name}: position not saved, deleting what the last saved one allows: ${(err as Error).message}`, { resource: this.name });
    });
    const keepFrom = logger.writtenBackPosition.logNumber;
    const deleted: string[] = [];
    for (const f of await listLogFiles(this.storage)) {
      if (f.logNumber >= keepFrom) continue;
      await this.storage.remove(f.name);
      deleted.push(f.name);
    }
    return deleted;
  }

  async status(): Promise<ResourceStatus> {
    const logFiles: { name: string; sizeBytes: number }[] = [];
    for (const f of await listLogFiles(this.storage)) {
      const file = await this.storage.open(f.name, 'read');
      try {
        logFiles.push({ name: f.name, sizeBytes: await file.size() });
      } finally {
        await file.close();
      }
    }
    return {
      name: this.name,
      sizeBytes: this.config.sizeBytes,
      devicePath: this.config.devicePath,
      primary: this.config.primary,
      state: this.state.kind,
      failure: this.state.kind === 'failed' ? this.state.reason : undefined,
      logger: this.state.kind === 'serving' ? this.state.logger.status() : undefined,
      recovery: this.recovery,
      logFiles,
    };
  }

  /** Clean stop: the log is synced, everything written back, files closed. */
  async stop(): Promise<void> {
    const state = this.state;
    this.state = { kind: 'stopped' };
    if (state.kind === 'serving') await state.logger.close();
    if (this.device !== undefined) {
      await this.device.sync().catch(() => undefined);
      await this.device.close();
      this.device = undefined;
    }
  }
}

function summarize(r: RecoveryReport): Record<string, unknown> {
  return {
    replayedRecords: r.replayedRecords,
    replayedBytes: r.replayedBytes,
    tornTail: r.tornTail === undefined ? undefined : `${r.tornTail.logName}@${r.tornTail.offsetBytes}`,
  };
}
