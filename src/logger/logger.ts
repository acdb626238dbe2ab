/**
 * The primary's write path for one resource (a BlockBackend):
 *
 *   write -> append a record to the log -> put the data in the shadow index -> answer
 *   FLUSH/FUA -> group-commit fdatasync of the log -> answer
 *   background: writeback of the shadow index to the device, in offset order, then
 *   fdatasync the device, then persist the position up to which the device holds the log.
 *
 * Ordering duties:
 * - writeback writes only records that are already durable in the log (it syncs the log
 *   first), so the device never holds a write the log could forget in a crash;
 * - the writeback position is persisted only after the device is fdatasync'd;
 * - reads capture the shadow extents before reading the device, so writeback draining
 *   an extent during the read cannot expose older device bytes.
 *
 * Emergency mode (the log filesystem is full, or the space monitor says so): the logger
 * stops logging rather than fail a write. Entering it, new writes wait while the appends
 * in the writer settle, writeback stops, the whole shadow index is written to the device
 * and the device fdatasync'd; only THEN is the emergency state saved (emergency-HOST, in
 * place, no new space needed), and only after that does the first write go straight to
 * the device. So recovery never replays old log records over newer direct writes, and
 * nothing answered is lost at any step. In emergency mode FLUSH and FUA are a device
 * fdatasync. Leaving it, the log continues in log N+2: N+1 is the hole that secondaries
 * stop at (docs/replication.md "Emergency mode").
 */
import { MarsError } from '../core/errors.js';
import { LamportClock } from '../core/lamport.js';
import type { Clock } from '../core/clock.js';
import { heldTimers, type Timers } from '../core/timers.js';
import type { BlockBackend } from '../nbd/backend.js';
import type { StorageFile, Storage, WriteJob } from '../storage/storage.js';
import { readAt } from '../storage/storage.js';
import { LogWriter, recordPayloadBytesMax, type LogPosition } from '../log/index.js';
import { savePosition, type ReplayPosition } from '../replay/position.js';
import { ShadowIndex, extentCostBytes, overlayExtents, type Extent } from './shadow-index.js';
import { Admission } from './admission.js';
import { loggerLimitsDefault, type LoggerLimits } from './limits.js';
import type { EmergencyFile } from './emergency-file.js';
import { payloadPool as processPayloadPool, type PayloadPool } from '../nbd/payload-pool.js';
import { PayloadRefs } from './payload-refs.js';

export interface LoggerOptions {
  /** The resource directory (log files and the position file). */
  storage: Storage;
  device: StorageFile;
  sizeBytes: number;
  host: string;
  clock: Clock;
  /** The host's timers (the simulator's virtual ones); default the real ones. */
  timers?: Timers;
  /** Where the log continues: recovery found it. */
  start: ReplayPosition;
  limits?: Partial<LoggerLimits>;
  /** Called when writeback fails for good: the resource must stop serving. */
  onFailure?: (err: MarsError) => void;
  /** Called after every persisted writeback position (for status and log deletion). */
  onWrittenBack?: (position: ReplayPosition) => void;
  /** Called when a writeback step failed and will be retried. */
  onWritebackError?: (err: Error) => void;
  /** Called when saving the written-back position failed (and with undefined once it works again). */
  onPersistError?: (err: MarsError | undefined) => void;
  /** Called when the durable end of the log moved or the log rotated (log shipping waits for it). */
  onLogChange?: () => void;
  /** Called after each rotation with the log that became complete and its final length. */
  onRotate?: (previousLogNumber: number, previousEndOffsetBytes: number) => void;
  /** The emergency state file; without it the logger never enters emergency mode (a write fails with ENOSPC instead). */
  emergencyFile?: EmergencyFile;
  /** Start in emergency mode (a restart in it): `start` is the end of the last log written. */
  startInEmergency?: boolean;
  /** Called when emergency mode was entered (with the reason) or left (undefined). */
  onEmergency?: (reason: string | undefined) => void;
  /** Where written-back payload buffers go for reuse (payload-refs.ts); default the process's, which NBD connections take from. */
  payloadPool?: PayloadPool;
}

/** Where emergency mode stands: logging, switching to direct writes, direct writes, switching back. */
export type LoggerMode = 'logging' | 'entering' | 'emergency' | 'leaving';

export interface LoggerStatus {
  logPosition: ReplayPosition;
  writtenBack: ReplayPosition;
  shadowBytes: number;
  shadowExtents: number;
  writesWaiting: number;
  appendedRecords: number;
  appendedBytes: number;
  writebackRounds: number;
  failure: string | undefined;
  /** Why the written-back position could not be saved lately (it is retried), if so. */
  positionError: string | undefined;
  mode: LoggerMode;
  /** Why emergency mode was entered (while in it). */
  emergencyReason: string | undefined;
  /** The last log number skipped by an emergency (0: none). */
  holeLogNumber: number;
  /**
   * WRITE payload buffers: the process's pool (handed out reused / newly allocated, given
   * back and kept / dropped, bytes free) and this logger's (referenced by the shadow index,
   * retired and waiting to go back).
   */
  payloadBuffers?: { reused: number; allocated: number; kept: number; dropped: number; freeBytes: number; referenced: number; retired: number };
}

type Kind = 'write' | 'trim' | 'zeroes';

export class Logger implements BlockBackend {
  readonly canMultiConn = true;
  /** Grows with `grow` (resize); never shrinks. */
  sizeBytes: number;
  private readonly limits: LoggerLimits;
  private readonly pool: PayloadPool;
  private readonly payloadRefs: PayloadRefs;
  private readonly shadow: ShadowIndex;
  /** Reads that captured shadow extents and await the device: payload buffers are not given back meanwhile. */
  private capturingReads = 0;
  private readonly admission: Admission;
  private readonly lamport: LamportClock;
  private readonly timers: Timers;
  private lastInserted: { seq: number; position: ReplayPosition };
  private writtenBack: ReplayPosition;
  private writebackRunning: Promise<void> | undefined;
  private wakeWriteback: (() => void) | undefined;
  private writebackStopped = false;
  private writebackFailures = 0;
  /** Records up to this seq are on the device (page cache); their extents are out of the shadow. */
  private writtenBackSeq: number;
  private writtenBackPending: ReplayPosition;
  /** Records up to this seq are on the device and fdatasync'd, and the position says so. */
  private persistedSeq: number;
  private logSyncTimerSet = false;
  /** The log fdatasync started by writeback, while it runs. */
  private logSync: Promise<void> | undefined;
  private logSyncDue = false;
  /** The writeback loop waits for the device's fdatasync (persistPosition): the log-sync timer starts the log's itself. */
  private deviceSyncing = false;
  private persistTimerSet = false;
  private persistRetrySet = false;
  private persistDue = false;
  private readonly drainWaiters: { throughSeq: number; resolve: () => void; reject: (err: MarsError) => void }[] = [];
  private persistError: MarsError | undefined;
  private failure: MarsError | undefined;
  private closing = false;
  private appendedRecords = 0;
  private appendedBytes = 0;
  private writebackRounds = 0;

  private writer: LogWriter | undefined;
  private mode: LoggerMode = 'logging';
  /** Settles when a switch of mode (entering, leaving) is over. */
  private modeChange: Promise<void> | undefined;
  private emergencyReason: string | undefined;
  /** Where the log ended when it stopped (emergency): the hole follows it. */
  private frozenEnd: { logNumber: number; endOffsetBytes: number; nextSeq: bigint } | undefined;
  private holeLogNumber: number;
  /** Appends waiting for the log writer; entering emergency waits for them. */
  private appendsInLog = 0;
  /** Writes going straight to the device; leaving emergency waits for them. */
  private directWrites = 0;
  private readonly idleWaiters: (() => void)[] = [];
  /** Emergency mode: the batch of direct writes being gathered, and whether one is being written. */
  private gathering: DirectBatch | undefined;
  private directRunning = false;
  private writebackPaused = false;

  private constructor(
    private readonly options: LoggerOptions,
    writer: LogWriter | undefined,
  ) {
    this.writer = writer;
    this.pool = options.payloadPool ?? processPayloadPool;
    this.payloadRefs = new PayloadRefs(this.pool);
    this.shadow = new ShadowIndex(this.payloadRefs);
    const emergency = options.emergencyFile?.state;
    this.holeLogNumber = emergency?.mode === 'logging' ? emergency.logNumber : 0;
    if (writer === undefined) {
      const start = options.start;
      this.mode = 'emergency';
      this.writebackPaused = true;
      this.emergencyReason = 'emergency mode at start (space has not come back yet)';
      this.frozenEnd = { logNumber: start.logNumber, endOffsetBytes: start.offsetBytes, nextSeq: start.nextSeq };
    }
    this.sizeBytes = options.sizeBytes;
    this.limits = { ...loggerLimitsDefault, ...options.limits };
    this.admission = new Admission(this.limits.shadowBytesMax, this.limits.admissionWaitersMax, () => this.kickWriteback());
    this.lamport = new LamportClock(options.clock);
    this.timers = options.timers ?? heldTimers;
    this.lastInserted = { seq: Number(options.start.nextSeq) - 1, position: options.start };
    this.writtenBack = options.start;
    this.writtenBackPending = options.start;
    this.writtenBackSeq = this.lastInserted.seq;
    this.persistedSeq = this.lastInserted.seq;
  }

  static async open(options: LoggerOptions): Promise<Logger> {
    if (options.startInEmergency === true) return new Logger(options, undefined);
    const writer = await Logger.openWriter(options, options.start);
    // The written-back position starts at `start` (the device holds everything before it:
    // recovery or replay put it there), so it is saved now: the saved one may still name the
    // log before, which log-delete would otherwise remove while a restart needs it.
    try {
      await savePosition(options.storage, options.host, options.start);
    } catch (err) {
      await writer.close().catch(() => undefined);
      throw err;
    }
    return new Logger(options, writer);
  }

  private static openWriter(options: LoggerOptions, start: ReplayPosition): Promise<LogWriter> {
    const limits = { ...loggerLimitsDefault, ...options.limits };
    return LogWriter.open(options.storage, {
      host: options.host,
      logNumber: start.logNumber,
      startOffsetBytes: start.offsetBytes,
      nextSeq: start.nextSeq,
      rotateBytes: limits.logRotateBytes,
      onDurable: () => options.onLogChange?.(),
      onRotate: (event) => {
        options.onRotate?.(event.previousLogNumber, event.previousEndOffsetBytes);
        options.onLogChange?.();
      },
    });
  }

  // ---- BlockBackend ----

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkServing();
    if (this.shadow.covers(offsetBytes, lengthBytes)) {
      const target = Buffer.allocUnsafe(lengthBytes);
      this.shadow.overlay(offsetBytes, target);
      return target;
    }
    const captured = this.shadow.extentsIn(offsetBytes, lengthBytes);
    this.capturingReads++;
    try {
      const target = await readAt(this.options.device, offsetBytes, lengthBytes);
      if (target.length < lengthBytes) throw new MarsError('EIO', `short read from device at ${offsetBytes}`);
      overlayExtents(captured, offsetBytes, target);
      return target;
    } finally {
      this.capturingReads--;
    }
  }

  write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    const appended = this.append('write', offsetBytes, data.length, ownedCopy(data));
    return fua ? appended.then(() => this.flush()) : appended;
  }

  async flush(): Promise<void> {
    this.checkServing();
    for (;;) {
      if (this.mode === 'logging') {
        try {
          await this.writer!.sync();
          return;
        } catch (err) {
          if (!this.mayEnterEmergency(err)) throw err;
          void this.enterEmergency(`log sync failed: ${(err as Error).message}`);
        }
      } else if (this.mode === 'emergency') {
        await this.options.device.sync();
        return;
      } else {
        await this.modeChange;
      }
      this.checkServing();
    }
  }

  async trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    await this.appendRange('trim', offsetBytes, lengthBytes);
    if (fua) await this.flush();
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    await this.appendRange('zeroes', offsetBytes, lengthBytes);
    if (fua) await this.flush();
  }

  /**
   * A TRIM or WRITE_ZEROES of any length: one record per recordPayloadBytesMax (a record
   * never describes more), appended in offset order. NBD promises no atomicity for a
   * request, so a crash may keep a prefix of the pieces, as it may of a device's own.
   */
  private async appendRange(kind: 'trim' | 'zeroes', offsetBytes: number, lengthBytes: number): Promise<void> {
    const end = offsetBytes + lengthBytes;
    for (let at = offsetBytes; at < end; at += recordPayloadBytesMax) {
      await this.append(kind, at, Math.min(recordPayloadBytesMax, end - at), null);
    }
  }

  // ---- the write path ----
  //
  // A write that the admission gate lets in at once (the usual case) goes to the log
  // writer in the same turn, with one promise of its own (the writer's) and no async
  // frames: at tens of thousands of 4 KiB writes per second, each await and async frame
  // was a measurable share of the main thread. The rest (waiting for budget, emergency
  // mode, a switch of mode) takes appendSlow.

  private append(kind: Kind, offsetBytes: number, lengthBytes: number, data: Buffer | null): Promise<void> {
    if (this.mode === 'logging' && this.failure === undefined && !this.closing) {
      const costBytes = extentCostBytes(lengthBytes, data === null);
      if (this.admission.tryAcquire(costBytes)) return this.appendToLog(kind, offsetBytes, lengthBytes, data, costBytes);
    }
    return this.appendSlow(kind, offsetBytes, lengthBytes, data);
  }

  private async appendSlow(kind: Kind, offsetBytes: number, lengthBytes: number, data: Buffer | null): Promise<void> {
    this.checkServing();
    if (this.mode !== 'logging') return this.appendDirect(kind, offsetBytes, lengthBytes, data);
    const costBytes = extentCostBytes(lengthBytes, data === null);
    await this.admission.acquire(costBytes);
    if (this.mode !== 'logging' as LoggerMode) {
      this.admission.release(costBytes);
      return this.appendDirect(kind, offsetBytes, lengthBytes, data);
    }
    return this.appendToLog(kind, offsetBytes, lengthBytes, data, costBytes);
  }

  /** Appends the record (admission taken); settles once it is in the log and in the shadow index. */
  private appendToLog(kind: Kind, offsetBytes: number, lengthBytes: number, data: Buffer | null, costBytes: number): Promise<void> {
    this.appendsInLog++;
    let appended: Promise<LogPosition>;
    try {
      this.checkServing();
      const lamport = this.lamport.tick();
      appended =
        kind === 'write'
          ? this.writer!.append({ kind, lamport, offsetBytes, payload: data! })
          : this.writer!.append({ kind, lamport, offsetBytes, lengthBytes });
    } catch (err) {
      appended = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return appended.then(
      (pos) => this.appended(offsetBytes, lengthBytes, data, costBytes, pos),
      (err: unknown) => this.appendFailed(kind, offsetBytes, lengthBytes, data, costBytes, err instanceof Error ? err : new Error(String(err))),
    );
  }

  private appended(offsetBytes: number, lengthBytes: number, data: Buffer | null, costBytes: number, pos: LogPosition): void {
    // Settled in the writer (entering emergency mode waits for that) before anything else.
    this.appendsInLog--;
    this.wakeIdleWaiters();
    const seq = Number(pos.seq);
    this.shadow.insert(offsetBytes, lengthBytes, data, seq);
    this.lastInserted = {
      seq,
      position: { logNumber: pos.logNumber, logHost: this.options.host, offsetBytes: pos.endOffsetBytes, nextSeq: pos.seq + 1n },
    };
    this.appendedRecords++;
    this.appendedBytes += lengthBytes;
    this.admission.release(costBytes);
    this.admission.setShadowBytes(this.shadow.bytes);
    if (this.deviceSyncing) this.armLogSyncTimer(); // else the writeback loop arms it when it has nothing to write back
    this.kickWriteback();
  }

  /** The writer refused the record: out of log space goes on in emergency mode, anything else fails the write. */
  private appendFailed(kind: Kind, offsetBytes: number, lengthBytes: number, data: Buffer | null, costBytes: number, err: Error): Promise<void> {
    this.appendsInLog--;
    this.wakeIdleWaiters();
    this.admission.release(costBytes);
    if (!this.mayEnterEmergency(err)) return Promise.reject(err);
    void this.enterEmergency(`log append failed: ${err.message}`);
    return this.appendDirect(kind, offsetBytes, lengthBytes, data);
  }

  // ---- emergency mode ----

  /** A log-space error, and an emergency state file to record the switch in. */
  private mayEnterEmergency(err: unknown): boolean {
    return err instanceof MarsError && err.code === 'ENOSPC' && this.options.emergencyFile !== undefined && !this.closing;
  }

  /** In emergency mode: the write goes straight to the device (after a switch of mode is over). */
  private async appendDirect(kind: Kind, offsetBytes: number, lengthBytes: number, data: Buffer | null): Promise<void> {
    while (this.mode === 'entering' || this.mode === 'leaving') await this.modeChange;
    this.checkServing();
    if (this.mode === 'logging') return this.append(kind, offsetBytes, lengthBytes, data);
    this.directWrites++;
    try {
      await this.writeDirect(kind === 'write' ? { positionBytes: offsetBytes, data: data! } : { positionBytes: offsetBytes, zeroBytes: lengthBytes }, lengthBytes);
    } finally {
      this.directWrites--;
      this.wakeIdleWaiters();
    }
    this.appendedRecords++;
    this.appendedBytes += lengthBytes;
  }

  /**
   * Group commit for direct writes: a write joins the batch being gathered, unless it
   * overlaps a write there (then it waits for that batch and joins a later one, so the
   * newer data lands last); one batch is written at a time.
   */
  private async writeDirect(job: WriteJob, lengthBytes: number): Promise<void> {
    const start = job.positionBytes;
    const end = start + lengthBytes;
    for (;;) {
      let batch = this.gathering;
      if (batch !== undefined && batch.ranges.some(([s, e]) => s < end && start < e)) {
        await batch.done.catch(() => undefined);
        continue;
      }
      if (batch === undefined || batch.jobs.length >= this.limits.directBatchJobsMax || batch.bytes + lengthBytes > this.limits.writebackBatchBytesMax) {
        if (batch !== undefined) {
          await batch.done.catch(() => undefined);
          continue;
        }
        batch = newDirectBatch();
        this.gathering = batch;
      }
      batch.jobs.push(job);
      batch.ranges.push([start, end]);
      batch.bytes += lengthBytes;
      if (!this.directRunning) void this.runDirectBatches();
      return batch.done;
    }
  }

  private async runDirectBatches(): Promise<void> {
    this.directRunning = true;
    try {
      for (let batch = this.gathering; batch !== undefined; batch = this.gathering) {
        this.gathering = undefined;
        try {
          await this.options.device.writeBatch(batch.jobs);
          batch.resolve();
        } catch (err) {
          batch.reject(err instanceof Error ? err : new Error(String(err)));
        }
      }
    } finally {
      this.directRunning = false;
    }
  }

  private wakeIdleWaiters(): void {
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async until(condition: () => boolean): Promise<void> {
    while (!condition()) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops logging: the appends in the writer settle, writeback stops, everything the shadow
   * index holds goes to the device and is fdatasync'd, the emergency state is saved, and
   * only then do writes go straight to the device. Resolves when the switch is over.
   */
  enterEmergency(reason: string): Promise<void> {
    if (this.mode !== 'logging' || this.failure !== undefined || this.closing || this.options.emergencyFile === undefined) return this.modeChange ?? Promise.resolve();
    this.mode = 'entering';
    this.emergencyReason = reason;
    this.modeChange = this.switchToDirect(this.options.emergencyFile).finally(() => {
      this.modeChange = undefined;
    });
    return this.modeChange;
  }

  private async switchToDirect(file: EmergencyFile): Promise<void> {
    await this.until(() => this.appendsInLog === 0);
    this.writebackPaused = true;
    this.kickWriteback();
    await this.writebackRunning;
    const writer = this.writer!;
    await writer.sync().catch(() => undefined); // best effort: more of the log can be shipped
    try {
      await this.writeExtents(this.shadow.snapshot());
      await this.options.device.sync();
      const end = writer.position();
      await file.save('emergency', end.logNumber, end.nextSeq);
    } catch (err) {
      this.fail(new MarsError('EIO', `cannot enter emergency mode: ${(err as Error).message}`, { cause: err }));
      this.mode = 'logging';
      return;
    }
    await writer.close().catch(() => undefined);
    this.frozenEnd = writer.durablePosition();
    this.writer = undefined;
    const end = writer.position();
    this.shadow.dropThrough(Number.MAX_SAFE_INTEGER);
    this.admission.setShadowBytes(0);
    const position: ReplayPosition = { logNumber: end.logNumber, logHost: this.options.host, offsetBytes: end.endOffsetBytes, nextSeq: end.nextSeq };
    this.lastInserted = { seq: Number(end.nextSeq) - 1, position };
    this.writtenBackSeq = this.lastInserted.seq;
    this.persistedSeq = this.lastInserted.seq;
    this.writtenBack = position;
    this.writtenBackPending = position;
    this.mode = 'emergency';
    this.settleDrainWaiters();
    this.options.onEmergency?.(this.emergencyReason);
    this.options.onLogChange?.();
  }

  /**
   * Leaves emergency mode: the device is fdatasync'd, the log continues in log N+2 (N+1 is
   * the hole), its start is saved as the written-back position, and then the emergency
   * state says logging again. False (still in emergency mode) when a step failed, say for
   * lack of space; it is tried again later.
   */
  async leaveEmergency(): Promise<boolean> {
    if (this.mode !== 'emergency' || this.failure !== undefined || this.closing) return false;
    const file = this.options.emergencyFile!;
    this.mode = 'leaving';
    let done!: () => void;
    this.modeChange = new Promise<void>((resolve) => (done = resolve));
    let writer: LogWriter | undefined;
    const frozen = this.frozenEnd!;
    const hole = frozen.logNumber + 1;
    const start: ReplayPosition = { logNumber: hole + 1, logHost: this.options.host, offsetBytes: 0, nextSeq: this.lastInserted.position.nextSeq };
    try {
      await this.until(() => this.directWrites === 0);
      await this.options.device.sync();
      writer = await Logger.openWriter(this.options, start);
      await savePosition(this.options.storage, this.options.host, start);
      await file.save('logging', hole, start.nextSeq);
    } catch (err) {
      await writer?.close().catch(() => undefined);
      this.mode = 'emergency';
      this.modeChange = undefined;
      done();
      this.options.onWritebackError?.(new Error(`cannot leave emergency mode yet: ${(err as Error).message}`));
      return false;
    }
    this.writer = writer;
    this.holeLogNumber = hole;
    this.frozenEnd = undefined;
    this.lastInserted = { seq: Number(start.nextSeq) - 1, position: start };
    this.writtenBack = start;
    this.writtenBackPending = start;
    this.emergencyReason = undefined;
    this.writebackPaused = false;
    this.mode = 'logging';
    this.modeChange = undefined;
    done();
    this.options.onEmergency?.(undefined);
    this.options.onRotate?.(frozen.logNumber, frozen.endOffsetBytes);
    this.options.onLogChange?.();
    return true;
  }

  get loggerMode(): LoggerMode {
    return this.mode;
  }

  /** The log number of the last hole (0: none). */
  get lastHole(): number {
    return this.holeLogNumber;
  }

  private checkServing(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closing) throw new MarsError('SHUTTING_DOWN', 'the resource is shutting down');
  }

  // ---- writeback ----
  //
  // One loop does all background work, one step at a time, most urgent first:
  //   1. write back the extents of records that are durable in the log (never others:
  //      the device must not get ahead of the log), then drop them from the shadow;
  //   2. make the log durable when shadowed records are not yet: at once when memory or a
  //      waiter asks for it, else after logSyncDelayMs (client flushes usually come first);
  //   3. fdatasync the device and persist the written-back position: when asked (drain,
  //      close, log-delete), else at most every positionPersistIntervalMs.
  // It sleeps when there is nothing to do and is woken by new writes and by its timers.

  private kickWriteback(): void {
    const wake = this.wakeWriteback;
    this.wakeWriteback = undefined;
    wake?.();
    if (this.writebackRunning !== undefined) return;
    this.writebackRunning = this.writebackLoop().finally(() => {
      this.writebackRunning = undefined;
    });
  }

  private async writebackLoop(): Promise<void> {
    while (this.failure === undefined && !this.writebackStopped && !this.writebackPaused) {
      let worked: boolean;
      try {
        worked = await this.writebackStep();
        this.writebackFailures = 0;
        // Between two rounds: no write of shadow data is in flight.
        if (this.capturingReads === 0) this.payloadRefs.giveBack();
      } catch (err) {
        this.writebackFailures++;
        this.options.onWritebackError?.(err as Error);
        if (this.writebackFailures >= this.limits.writebackRetriesMax) {
          this.fail(new MarsError('EIO', `writeback failed ${this.writebackFailures} times: ${(err as Error).message}`, { cause: err }));
          break;
        }
        await new Promise<void>((resolve) => this.timers.setTimeout(resolve, this.limits.writebackRetryDelayMs));
        continue;
      }
      this.settleDrainWaiters();
      if (!worked) {
        if (this.idle()) break;
        await new Promise<void>((resolve) => (this.wakeWriteback = resolve));
      }
    }
    this.settleDrainWaiters();
  }

  /** Nothing shadowed and the persisted position is current: the loop may end. */
  private idle(): boolean {
    return this.shadow.size === 0 && this.persistedSeq === this.writtenBackSeq && !this.logSyncTimerSet && !this.persistTimerSet && !this.persistRetrySet && this.logSync === undefined;
  }

  private durableSeq(): number {
    return Number(this.durableLogEnd().nextSeq) - 1;
  }

  private urgent(): boolean {
    return this.drainWaiters.length > 0 || this.admission.waiting > 0 || this.shadow.bytes * 2 >= this.limits.shadowBytesMax;
  }

  private async writebackStep(): Promise<boolean> {
    const durableSeq = this.durableSeq();
    const notDurable = this.lastInserted.seq > durableSeq;
    // The next log fdatasync runs while this round writes back what is durable already.
    if (notDurable && (this.urgent() || this.logSyncDue)) this.syncLogInBackground();
    const through = Math.min(durableSeq, this.lastInserted.seq);
    if (through > this.writtenBackSeq) {
      const position = through === this.lastInserted.seq ? this.lastInserted.position : this.durableReplayPosition();
      const extents = this.shadow.snapshot().filter((e) => e.seq <= through);
      await this.writeExtents(extents);
      this.shadow.dropThrough(through);
      this.admission.setShadowBytes(this.shadow.bytes);
      this.writtenBackSeq = through;
      this.writtenBackPending = position;
      this.writebackRounds++;
      this.armPersistTimer();
      return true;
    }
    if (notDurable) {
      if (this.logSync !== undefined) {
        await this.logSync;
        return true;
      }
      this.armLogSyncTimer();
    }
    if (this.persistedSeq < this.writtenBackSeq && (this.persistDue || this.drainWaiters.length > 0)) {
      return this.persistPosition();
    }
    return false;
  }

  /**
   * Starts one log fdatasync that the loop does not wait for (at most one at a time). A
   * failure is the writer's for good (it refuses all further work); the step that awaits
   * this sync, or the next one, meets it and takes the retry path.
   */
  private syncLogInBackground(): void {
    this.logSyncDue = false;
    const writer = this.writer;
    if (this.logSync !== undefined || writer === undefined) return;
    const sync = writer.sync().finally(() => {
      this.logSync = undefined;
      this.kickWriteback();
    });
    sync.catch(() => undefined);
    this.logSync = sync;
  }

  /**
   * fdatasync the device, then save the written-back position. A failure here (say, the
   * log filesystem is full) costs nothing but replay work after a crash: the device holds
   * the data and an older position is safe. So it never takes the resource out of
   * service: drain() callers get the error, and the save is tried again on the timer.
   */
  private async persistPosition(): Promise<boolean> {
    const position = this.writtenBackPending;
    const seq = this.writtenBackSeq;
    try {
      this.deviceSyncing = true;
      try {
        await this.options.device.sync();
      } finally {
        this.deviceSyncing = false;
      }
      await savePosition(this.options.storage, this.options.host, position);
    } catch (err) {
      const e = err instanceof MarsError ? err : new MarsError('EIO', (err as Error).message, { cause: err });
      this.persistError = e;
      this.persistDue = false;
      this.options.onPersistError?.(e);
      for (const w of this.drainWaiters.splice(0)) w.reject(e);
      this.armPersistRetry();
      return false;
    }
    if (this.persistError !== undefined) this.options.onPersistError?.(undefined);
    this.persistError = undefined;
    this.persistDue = false;
    this.writtenBack = position;
    this.persistedSeq = seq;
    this.options.onWrittenBack?.(position);
    return true;
  }

  /** The position just after the last durable record. */
  private durableReplayPosition(): ReplayPosition {
    const d = this.durableLogEnd();
    return { logNumber: d.logNumber, logHost: this.options.host, offsetBytes: d.endOffsetBytes, nextSeq: d.nextSeq };
  }

  /**
   * The log fdatasync logSyncDelayMs after shadowed records are not yet durable: armed by
   * the writeback loop when it has nothing to write back, and while the loop waits for the
   * device's fdatasync (hundreds of milliseconds under load, every
   * positionPersistIntervalMs) by the write itself, and then the timer starts the sync
   * (the loop cannot): that wait must not hold back the log's durable end, which is all a
   * fetch stream may ship. A log fdatasync never lets the device get ahead of the log.
   */
  private armLogSyncTimer(): void {
    if (this.logSyncTimerSet) return;
    this.logSyncTimerSet = true;
    this.timers.setTimeout(() => {
      this.logSyncTimerSet = false;
      this.logSyncDue = true;
      if (this.deviceSyncing && this.mode === 'logging' && !this.writebackPaused && !this.writebackStopped && !this.closing && this.failure === undefined && this.lastInserted.seq > this.durableSeq()) this.syncLogInBackground();
      this.kickWriteback();
    }, this.limits.logSyncDelayMs);
  }

  private armPersistTimer(): void {
    if (this.persistTimerSet) return;
    this.persistTimerSet = true;
    this.timers.setTimeout(() => {
      this.persistTimerSet = false;
      this.persistDue = true;
      this.kickWriteback();
    }, this.limits.positionPersistIntervalMs);
  }

  /**
   * After a failed save, try again after writebackRetryDelayMs rather than a whole persist
   * interval: space freed on the log filesystem brings the position up to date soon.
   */
  private armPersistRetry(): void {
    if (this.persistRetrySet) return;
    this.persistRetrySet = true;
    this.timers.setTimeout(() => {
      this.persistRetrySet = false;
      this.persistDue = true;
      this.kickWriteback();
    }, this.limits.writebackRetryDelayMs);
  }

  private settleDrainWaiters(): void {
    for (let i = this.drainWaiters.length - 1; i >= 0; i--) {
      const w = this.drainWaiters[i]!;
      if (this.failure !== undefined || this.persistedSeq >= w.throughSeq) {
        this.drainWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** Writes extents (sorted by offset), merging adjacent data, in batches of bounded size. */
  private async writeExtents(extents: Extent[]): Promise<void> {
    const jobs = coalesce(extents, this.limits.writebackCoalesceBytesMax);
    let batch: WriteJob[] = [];
    let batchBytes = 0;
    for (const job of jobs) {
      batch.push(job);
      batchBytes += 'data' in job ? job.data.length : 0;
      if (batchBytes >= this.limits.writebackBatchBytesMax) {
        await this.options.device.writeBatch(batch);
        batch = [];
        batchBytes = 0;
      }
    }
    if (batch.length > 0) await this.options.device.writeBatch(batch);
  }

  private fail(err: MarsError): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.admission.close(err);
    this.options.onFailure?.(err);
  }

  // ---- operations ----

  async rotate(): Promise<number> {
    this.checkServing();
    if (this.mode !== 'logging') throw new MarsError('EINVAL', 'the log is not written in emergency mode: nothing to rotate');
    return this.writer!.rotate();
  }

  /** Waits until everything answered so far is written back and its position persisted. */
  async drain(): Promise<void> {
    const throughSeq = this.lastInserted.seq;
    const done = new Promise<void>((resolve, reject) => this.drainWaiters.push({ throughSeq, resolve, reject }));
    this.kickWriteback();
    await done;
    if (this.failure !== undefined) throw this.failure;
  }

  status(): LoggerStatus {
    const p = this.writer?.position() ?? this.durableLogEnd();
    return {
      logPosition: { logNumber: p.logNumber, logHost: this.options.host, offsetBytes: p.endOffsetBytes, nextSeq: p.nextSeq },
      writtenBack: this.writtenBack,
      shadowBytes: this.shadow.bytes,
      shadowExtents: this.shadow.size,
      writesWaiting: this.admission.waiting,
      appendedRecords: this.appendedRecords,
      appendedBytes: this.appendedBytes,
      writebackRounds: this.writebackRounds,
      failure: this.failure?.message,
      positionError: this.persistError?.message,
      mode: this.mode,
      emergencyReason: this.emergencyReason,
      holeLogNumber: this.holeLogNumber,
      payloadBuffers: { ...this.pool.stats(), ...this.payloadRefs.stats() },
    };
  }

  /**
   * resize: the device is larger now. The new area is zeroed through the log (records
   * without payload), so every secondary's replay zeroes it too.
   */
  async grow(newSizeBytes: number): Promise<void> {
    this.checkServing();
    const old = this.sizeBytes;
    if (newSizeBytes <= old) return;
    this.sizeBytes = newSizeBytes;
    await this.appendRange('zeroes', old, newSizeBytes - old);
    await this.flush();
  }

  /** The end of the durable log (what may be shipped to peers; the sync's end position). */
  durableLogEnd(): { logNumber: number; endOffsetBytes: number; nextSeq: bigint } {
    if (this.writer === undefined || this.mode === 'leaving') {
      const p = this.lastInserted.position;
      return this.frozenEnd ?? { logNumber: p.logNumber, endOffsetBytes: p.offsetBytes, nextSeq: p.nextSeq };
    }
    return this.writer.durablePosition();
  }

  get writtenBackPosition(): ReplayPosition {
    return this.writtenBack;
  }

  /** Stops serving: writes out and syncs the log, writes everything back, closes the log. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.admission.close(new MarsError('SHUTTING_DOWN', 'the resource is shutting down'));
    while (this.modeChange !== undefined) await this.modeChange;
    if (this.mode === 'emergency') {
      await this.until(() => this.directWrites === 0);
      await this.options.device.sync().catch(() => undefined);
      return;
    }
    await this.writer!.sync().catch(() => undefined);
    if (this.failure === undefined) await this.drain().catch(() => undefined);
    this.writebackStopped = true;
    this.kickWriteback();
    await this.writer!.close();
  }
}

interface DirectBatch {
  readonly jobs: WriteJob[];
  readonly ranges: [number, number][];
  bytes: number;
  readonly done: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

function newDirectBatch(): DirectBatch {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  done.catch(() => undefined); // a failed batch is reported to each of its writers
  return { jobs: [], ranges: [], bytes: 0, done, resolve, reject };
}

/** A copy of `data` if it pins a much larger buffer (a socket chunk), else `data` itself. */
function ownedCopy(data: Buffer): Buffer {
  return data.buffer.byteLength > 2 * data.length + 4096 ? Buffer.from(data) : data;
}

function coalesce(extents: Extent[], maxBytes: number): WriteJob[] {
  const jobs: WriteJob[] = [];
  let run: Buffer[] = [];
  let runStart = 0;
  let runBytes = 0;
  const flushRun = (): void => {
    if (run.length === 0) return;
    jobs.push({ positionBytes: runStart, data: run.length === 1 ? run[0]! : Buffer.concat(run, runBytes) });
    run = [];
    runBytes = 0;
  };
  for (const e of extents) {
    if (e.data === null) {
      flushRun();
      jobs.push({ positionBytes: e.offsetBytes, zeroBytes: e.lengthBytes });
      continue;
    }
    if (run.length > 0 && (runStart + runBytes !== e.offsetBytes || runBytes + e.lengthBytes > maxBytes)) flushRun();
    if (run.length === 0) runStart = e.offsetBytes;
    run.push(e.data);
    runBytes += e.lengthBytes;
  }
  flushRun();
  return jobs;
}
