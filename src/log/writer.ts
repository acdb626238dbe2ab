/**
 * The log writer: appends records to `log-NNNNNNNNN-HOST` with group commit.
 *
 * Why it is shaped like this: the write path answers a write once its record is in the
 * log file (pwritev done) and a FLUSH once the log is durable (fdatasync). Both costs are
 * shared: appends that arrive while a pwrite is in flight are gathered into the next
 * batch (one gathered pwritev per batch, at most batchBytesMax; large payloads are
 * written from the caller's buffer, never copied), and sync() calls that arrive while
 * an fdatasync runs share the next one. One "pump" does all file I/O except fdatasync,
 * in order, so rotations and the repair after a failed write never interleave with
 * batches. Large batches are pipelined: while one is being written (a direct write may
 * wait out a FLUSH the disk is running), the next one starts at the offset where the
 * first will end, up to logBatchesInFlightMax; they complete in log order.
 *
 * Ordering duties:
 * - seq numbers are assigned when a batch is encoded, so a failed batch burns none;
 * - appends resolve in append order;
 * - `syncedBytes` of a record is the length covered by the last *completed* fdatasync
 *   of its file, never more (the scanner's torn-tail rule depends on it);
 * - after a failed pwrite the batches in flight after it fail with it: once all of them
 *   have ended, the file is truncated back to the last good batch and fdatasync'd BEFORE
 *   their appends are rejected, so a rejected record never reappears after a crash;
 * - a batch's appends resolve only when it and every batch before it are written, so
 *   `position()` and what sync() covers are always a prefix of whole written batches;
 * - a rotation fdatasyncs the old file before any record goes to the new one, and the
 *   new file is created and its directory fdatasync'd before it is used;
 * - a failed fdatasync is fatal: the page cache may have dropped the data (fsyncgate),
 *   so the writer refuses all further work with that error.
 */
import { assert, fromSystemError, MarsError } from '../core/errors.js';
import { writeAppend, type Storage, type StorageFile } from '../storage/storage.js';
import {
  logBatchBytesMaxDefault,
  logBatchesInFlightMax,
  logInlinePayloadBytesMin,
  logPendingBytesMaxDefault,
  logPipelineBatchBytesMin,
  logRotateBytesMin,
  logRotateRetryDivisor,
} from './limits.js';
import { formatLogName, isValidLogHost, isValidLogNumber } from './names.js';
import { checkEntryFields, encodeRecordHeaderInto, encodeRecordInto, isValidSeq, recordBytesMax, recordEncodedBytes, recordHeaderBytes, type LogEntry } from './record.js';

export interface LogWriterOptions {
  host: string;
  /** The log file to append to (created if missing, then startOffsetBytes must be 0). */
  logNumber: number;
  /** Where the valid log ends; anything after it in the file is cut off. */
  startOffsetBytes: number;
  /** The seq of the next record (continues the stream across files). */
  nextSeq: bigint;
  /** Rotate before a batch once the file has reached this size. */
  rotateBytes: number;
  /** Bytes of one pwrite (default logBatchBytesMaxDefault). */
  batchBytesMax?: number;
  /** Bytes appended but not yet written before `append` waits (default logPendingBytesMaxDefault). */
  pendingBytesMax?: number;
  /** Called after each rotation, once the new file is in use. */
  onRotate?: (event: LogRotateEvent) => void;
  /** Called when an automatic rotation failed (say, ENOSPC creating the file); the writer stays in the old file. */
  onRotateError?: (err: MarsError) => void;
  /** Called after each fdatasync that moved the durable end (log shipping waits for it). */
  onDurable?: () => void;
}

/** Where one appended record is. */
export interface LogPosition {
  logNumber: number;
  /** Where the record starts. */
  offsetBytes: number;
  /** Where it ends. */
  endOffsetBytes: number;
  seq: bigint;
}

/** The end of the log: the next record goes to (logNumber, endOffsetBytes) with nextSeq. */
export interface LogEnd {
  logNumber: number;
  endOffsetBytes: number;
  nextSeq: bigint;
}

export interface LogWriterStats {
  /** Bytes admitted but not yet written (≤ pendingBytesMax, or one record). */
  pendingBytes: number;
  readyAppends: number;
  /** Appends waiting for pending space. */
  waitingAppends: number;
  syncRunning: boolean;
}

export interface LogRotateEvent {
  previousLogNumber: number;
  previousEndOffsetBytes: number;
  logNumber: number;
  nextSeq: bigint;
}

interface PendingAppend {
  readonly entry: LogEntry;
  readonly encodedBytes: number;
  readonly resolve: (position: LogPosition) => void;
  readonly reject: (err: MarsError) => void;
}

/** A batch whose write has been started; `done` never rejects (it yields the error). */
interface InFlightBatch {
  readonly batch: readonly PendingAppend[];
  readonly startBytes: number;
  readonly firstSeq: bigint;
  readonly totalBytes: number;
  readonly done: Promise<MarsError | undefined>;
  settled: boolean;
}

interface RotateRequest {
  readonly resolve: (logNumber: number) => void;
  readonly reject: (err: MarsError) => void;
}

/** One fdatasync: what it covers, in which file. */
interface RunningSync {
  readonly generation: number;
  readonly coverageBytes: number;
  readonly coverageSeq: bigint;
  done: Promise<void>;
}

/** A FIFO queue with O(1) shift. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    const item = this.items[this.head];
    if (item === undefined) return undefined;
    this.head++;
    if (this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  drain(): T[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return rest;
  }
}

const ignore = (): void => undefined;

/** The payload of a write large enough to be written from its own buffer, else undefined. */
function outOfLinePayload(entry: LogEntry): Buffer | undefined {
  return entry.kind === 'write' && entry.payload.length >= logInlinePayloadBytesMin ? entry.payload : undefined;
}

function asMarsError(err: unknown, context: string): MarsError {
  return err instanceof MarsError ? err : fromSystemError(err, context);
}

/** Closes a file whose data no longer matters (durable already, or being given up). */
async function closeQuietly(file: StorageFile): Promise<void> {
  try {
    await file.close();
  } catch {
    // nothing depends on it
  }
}

function checkOptions(options: LogWriterOptions): void {
  const bad = (why: string): MarsError => new MarsError('EINVAL', `log writer: ${why}`);
  if (!isValidLogHost(options.host)) throw bad(`bad host name ${JSON.stringify(options.host)}`);
  if (!isValidLogNumber(options.logNumber)) throw bad(`bad log number ${options.logNumber}`);
  if (!Number.isSafeInteger(options.startOffsetBytes) || options.startOffsetBytes < 0) throw bad(`bad start offset ${options.startOffsetBytes}`);
  if (!isValidSeq(options.nextSeq)) throw bad(`bad next seq ${options.nextSeq}`);
  if (!Number.isSafeInteger(options.rotateBytes) || options.rotateBytes < logRotateBytesMin) throw bad(`rotateBytes ${options.rotateBytes} is below ${logRotateBytesMin}`);
  const batch = options.batchBytesMax ?? logBatchBytesMaxDefault;
  if (!Number.isSafeInteger(batch) || batch < recordHeaderBytes) throw bad(`batchBytesMax ${batch} is below ${recordHeaderBytes}`);
  const pending = options.pendingBytesMax ?? logPendingBytesMaxDefault;
  if (!Number.isSafeInteger(pending) || pending < recordHeaderBytes) throw bad(`pendingBytesMax ${pending} is below ${recordHeaderBytes}`);
}

/** Opens log `logNumber` for appending at `startOffsetBytes`, cutting off what follows. */
async function openForAppend(storage: Storage, name: string, startOffsetBytes: number): Promise<StorageFile> {
  const existed = await storage.exists(name);
  const file = await storage.open(name, 'create');
  try {
    const sizeBytes = await file.size();
    if (sizeBytes < startOffsetBytes) throw new MarsError('EINVAL', `log ${name} ends at ${sizeBytes}, before the start offset ${startOffsetBytes}`);
    if (sizeBytes > startOffsetBytes) await file.truncate(startOffsetBytes);
    // After a kill -9 the prefix may still be only in the page cache: make it durable, so
    // that syncedBytes = startOffsetBytes is true. The truncation becomes durable too.
    await file.sync();
    if (!existed) await storage.syncDir();
  } catch (err) {
    await closeQuietly(file);
    throw asMarsError(err, `open log ${name}`);
  }
  return file;
}

/** Creates the next log file; an existing empty file (left by a failed rotation) is reused. */
async function createLogFile(storage: Storage, name: string): Promise<StorageFile> {
  const file = await storage.open(name, 'create');
  try {
    if ((await file.size()) !== 0) throw new MarsError('EXISTS', `log ${name} already exists and is not empty`);
    await storage.syncDir();
  } catch (err) {
    await closeQuietly(file);
    throw asMarsError(err, `create log ${name}`);
  }
  return file;
}

export class LogWriter {
  private file: StorageFile;
  private logNumber: number;
  /** Increments with each rotation: a sync target in an older generation is durable. */
  private generation = 0;
  /** The end of the batches written so far, all of them, in order (appends resolved up to here). */
  private writtenEndBytes: number;
  private nextSeq: bigint;
  /** Where the next batch goes: the written end plus the batches in flight. */
  private issuedEndBytes: number;
  private issuedNextSeq: bigint;
  /** Batches being written, oldest first (several only when they are large: see mayIssue). */
  private inFlight: InFlightBatch[] = [];
  /** Wakes a pump that waits for its oldest batch when new appends are ready. */
  private wakePump: (() => void) | undefined;
  private durableEndBytes: number;
  private durableNextSeq: bigint;
  private readonly batchBytesMax: number;
  private readonly pendingBytesMax: number;
  private readonly ready = new Fifo<PendingAppend>();
  private readonly waiting = new Fifo<PendingAppend>();
  /** Bytes of admitted appends not yet written (ready plus the batch in flight). */
  private pendingBytes = 0;
  private pumpActive = false;
  private pumpIdle: Promise<void> = Promise.resolve();
  private rotateRequests: RotateRequest[] = [];
  /** Set while a rotation runs; resolves (never rejects) when it is over. */
  private rotating: Promise<void> | undefined;
  private syncRunning: RunningSync | undefined;
  private syncQueued: Promise<void> | undefined;
  private failure: MarsError | undefined;
  private closing: Promise<void> | undefined;
  /** The file size at which the next automatic rotation is tried. */
  private autoRotateAtBytes: number;

  private constructor(
    private readonly storage: Storage,
    private readonly options: LogWriterOptions,
    file: StorageFile,
  ) {
    this.file = file;
    this.logNumber = options.logNumber;
    this.writtenEndBytes = options.startOffsetBytes;
    this.issuedEndBytes = options.startOffsetBytes;
    this.issuedNextSeq = options.nextSeq;
    this.durableEndBytes = options.startOffsetBytes;
    this.nextSeq = options.nextSeq;
    this.durableNextSeq = options.nextSeq;
    this.batchBytesMax = options.batchBytesMax ?? logBatchBytesMaxDefault;
    this.pendingBytesMax = options.pendingBytesMax ?? logPendingBytesMaxDefault;
    this.autoRotateAtBytes = options.rotateBytes;
  }

  /** Opens log `logNumber` of `host` for appending; creates it (and syncs the directory) if new. */
  static async open(storage: Storage, options: LogWriterOptions): Promise<LogWriter> {
    checkOptions(options);
    const file = await openForAppend(storage, formatLogName(options.logNumber, options.host), options.startOffsetBytes);
    return new LogWriter(storage, options, file);
  }

  /**
   * Appends a record; resolves once it is written to the file (not yet durable: see
   * sync()). The payload is written from the caller's buffer (or copied when small); do
   * not change it before the promise settles. Rejects with EINVAL for bad fields, with the I/O error (ENOSPC
   * stays ENOSPC) when its batch could not be written, SHUTTING_DOWN after close().
   */
  append(entry: LogEntry): Promise<LogPosition> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing !== undefined) return Promise.reject(new MarsError('SHUTTING_DOWN', 'log writer is closed'));
    const fault = checkEntryFields(entry);
    if (fault !== undefined) return Promise.reject(new MarsError('EINVAL', `log append: ${fault}`));
    return new Promise<LogPosition>((resolve, reject) => {
      const pending: PendingAppend = { entry, encodedBytes: recordEncodedBytes(entry), resolve, reject };
      if (this.waiting.length === 0 && this.admits(pending.encodedBytes)) this.admit(pending);
      else this.waiting.push(pending);
      this.kick();
    });
  }

  /** Resolves once every append that resolved before this call is durable (group commit). */
  async sync(): Promise<void> {
    const target = { generation: this.generation, endBytes: this.writtenEndBytes };
    for (;;) {
      if (target.generation < this.generation || target.endBytes <= this.durableEndBytes) return;
      if (this.failure !== undefined) throw this.failure;
      if (this.rotating !== undefined) {
        await this.rotating; // the rotation fdatasyncs the old file
        continue;
      }
      const running = this.syncRunning;
      if (running === undefined) {
        await this.startSync().done;
      } else if (running.generation === target.generation && running.coverageBytes >= target.endBytes) {
        await running.done;
      } else {
        // The running fdatasync started before our records were written: share the next one.
        this.syncQueued ??= running.done.then(ignore, ignore).then(() => {
          this.syncQueued = undefined;
        });
        await this.syncQueued;
      }
    }
  }

  /**
   * Switches to log N+1 at the next batch boundary: the old file is fdatasync'd and
   * closed, the new one created and the directory synced. Appends that have not started
   * to be written go to the new file. Resolves with the new log number.
   */
  rotate(): Promise<number> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing !== undefined) return Promise.reject(new MarsError('SHUTTING_DOWN', 'log writer is closed'));
    return new Promise<number>((resolve, reject) => {
      this.rotateRequests.push({ resolve, reject });
      this.kick();
    });
  }

  /** The end of what is written (appends resolved so far). */
  position(): LogEnd {
    return { logNumber: this.logNumber, endOffsetBytes: this.writtenEndBytes, nextSeq: this.nextSeq };
  }

  /** The end of what is durable. Only this prefix may be shipped to peers. */
  durablePosition(): LogEnd {
    return { logNumber: this.logNumber, endOffsetBytes: this.durableEndBytes, nextSeq: this.durableNextSeq };
  }

  /** Queue figures, for status and tests. */
  stats(): LogWriterStats {
    return { pendingBytes: this.pendingBytes, readyAppends: this.ready.length, waitingAppends: this.waiting.length, syncRunning: this.syncRunning !== undefined };
  }

  /** The error that stopped the writer, if any. */
  get failed(): MarsError | undefined {
    return this.failure;
  }

  /** Writes out every pending append, fdatasyncs and closes. Rejects if the writer failed. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    while (this.pumpActive) await this.pumpIdle;
    try {
      if (this.failure === undefined) await this.syncExclusive();
    } finally {
      while (this.syncRunning !== undefined) await this.syncRunning.done.catch(ignore);
      await closeQuietly(this.file);
    }
    if (this.failure !== undefined) throw this.failure;
  }

  // ---- admission ----

  private admits(encodedBytes: number): boolean {
    return this.pendingBytes === 0 || this.pendingBytes + encodedBytes <= this.pendingBytesMax;
  }

  private admit(pending: PendingAppend): void {
    this.ready.push(pending);
    this.pendingBytes += pending.encodedBytes;
  }

  private admitWaiting(): void {
    for (let head = this.waiting.peek(); head !== undefined && this.admits(head.encodedBytes); head = this.waiting.peek()) {
      this.admit(this.waiting.shift()!);
    }
  }

  // ---- the pump: all writes, rotations and repairs, one at a time ----

  private kick(): void {
    if (this.pumpActive) {
      const wake = this.wakePump;
      this.wakePump = undefined;
      wake?.();
      return;
    }
    if (this.failure !== undefined) return;
    this.pumpActive = true;
    this.pumpIdle = this.pump();
  }

  /**
   * Runs until there is nothing to do. pumpActive is cleared synchronously on exit.
   * Batches are started in log order and completed in log order (completeOldest); a
   * rotation, and the end of the pump, wait until none is in flight.
   */
  private async pump(): Promise<void> {
    try {
      for (;;) {
        if (this.hasFailed()) {
          while (this.inFlight.length > 0) await this.completeOldest();
          return;
        }
        if (this.rotateRequests.length > 0 || (this.ready.length > 0 && this.issuedEndBytes >= this.autoRotateAtBytes)) {
          if (this.inFlight.length > 0) {
            await this.completeOldest();
            continue;
          }
          if (this.rotateRequests.length > 0) {
            await this.rotateOnRequest();
            continue;
          }
          await this.rotateAutomatically();
          if (this.hasFailed()) continue;
        }
        if (this.ready.length > 0 && this.mayIssue()) {
          this.issueBatch();
          continue;
        }
        if (this.inFlight.length === 0) return;
        await this.progress();
      }
    } catch (err) {
      // A bug (broken assertion): stop the writer rather than continue in an unknown state.
      this.fail(new MarsError('EIO', `log writer stopped: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      await this.abandonInFlight();
    } finally {
      this.pumpActive = false;
    }
  }

  /**
   * Whether the next batch may start now: always when none is in flight; while others
   * are, only up to logBatchesInFlightMax and only when the ones in flight and the ready
   * bytes are large (small batches gather appends while one is written, as group commit).
   */
  private mayIssue(): boolean {
    if (this.inFlight.length === 0) return true;
    if (this.inFlight.length >= logBatchesInFlightMax) return false;
    let inFlightBytes = 0;
    for (const b of this.inFlight) {
      if (b.totalBytes < logPipelineBatchBytesMin) return false;
      inFlightBytes += b.totalBytes;
    }
    return this.pendingBytes - inFlightBytes >= logPipelineBatchBytesMin;
  }

  /** Waits until the oldest batch in flight is written, or new appends are ready; completes the oldest if it is done. */
  private async progress(): Promise<void> {
    const oldest = this.inFlight[0]!;
    if (!oldest.settled) {
      await Promise.race([oldest.done, new Promise<void>((resolve) => (this.wakePump = resolve))]);
      this.wakePump = undefined;
    }
    if (oldest.settled) await this.completeOldest();
  }

  private takeBatch(): PendingAppend[] {
    const batch: PendingAppend[] = [];
    let batchBytes = 0;
    for (let head = this.ready.peek(); head !== undefined; head = this.ready.peek()) {
      if (batch.length > 0 && batchBytes + head.encodedBytes > this.batchBytesMax) break;
      batch.push(this.ready.shift()!);
      batchBytes += head.encodedBytes;
    }
    return batch;
  }

  /**
   * Encodes a batch for one gathered write: seqs from `firstSeq`, syncedBytes = the durable
   * length now. Headers and small payloads are encoded into one buffer; payloads of at
   * least logInlinePayloadBytesMin are written from the caller's buffer, not copied.
   */
  private encodeBatch(batch: readonly PendingAppend[], firstSeq: bigint): { parts: Buffer[]; totalBytes: number } {
    let totalBytes = 0;
    let inlineBytes = 0;
    for (const pending of batch) {
      totalBytes += pending.encodedBytes;
      inlineBytes += outOfLinePayload(pending.entry) === undefined ? pending.encodedBytes : recordHeaderBytes;
    }
    assert(totalBytes <= Math.max(this.batchBytesMax, recordBytesMax), 'batch exceeds its limit');
    const staging = Buffer.allocUnsafe(inlineBytes);
    const parts: Buffer[] = [];
    let at = 0;
    let runStart = 0;
    let seq = firstSeq;
    for (const pending of batch) {
      const payload = outOfLinePayload(pending.entry);
      if (payload === undefined) {
        at += encodeRecordInto(staging, at, pending.entry, seq, this.durableEndBytes);
      } else {
        encodeRecordHeaderInto(staging, at, pending.entry, seq, this.durableEndBytes);
        at += recordHeaderBytes;
        parts.push(staging.subarray(runStart, at), payload);
        runStart = at;
      }
      seq++;
    }
    if (at > runStart) parts.push(staging.subarray(runStart, at));
    assert(at === inlineBytes, 'batch encoding length mismatch');
    return { parts, totalBytes };
  }

  /** Encodes the next batch at the issued end and starts its write. */
  private issueBatch(): void {
    const batch = this.takeBatch();
    const startBytes = this.issuedEndBytes;
    const firstSeq = this.issuedNextSeq;
    const { parts, totalBytes } = this.encodeBatch(batch, firstSeq);
    this.issuedEndBytes = startBytes + totalBytes;
    this.issuedNextSeq = firstSeq + BigInt(batch.length);
    const logNumber = this.logNumber;
    const entry: InFlightBatch = {
      batch,
      startBytes,
      firstSeq,
      totalBytes,
      settled: false,
      done: writeAppend(this.file, parts, startBytes).then(
        () => undefined,
        (err: unknown) => asMarsError(err, `write log ${logNumber} at ${startBytes}`),
      ),
    };
    void entry.done.then(() => {
      entry.settled = true;
    });
    this.inFlight.push(entry);
  }

  /**
   * Waits for the oldest batch in flight and settles its appends. A failed batch takes
   * every later one in flight with it: all of them are waited for, the file is cut back
   * to the end of the last good batch and fdatasync'd, and only then are their appends
   * rejected (their seqs are not burned: the next batch reuses them).
   */
  private async completeOldest(): Promise<void> {
    const oldest = this.inFlight[0]!;
    const error = await oldest.done;
    if (error === undefined) {
      this.inFlight.shift();
      assert(this.writtenEndBytes === oldest.startBytes && this.nextSeq === oldest.firstSeq, 'batches completed out of order');
      this.writtenEndBytes = oldest.startBytes + oldest.totalBytes;
      this.nextSeq = oldest.firstSeq + BigInt(oldest.batch.length);
      this.release(oldest.totalBytes);
      let at = oldest.startBytes;
      let seq = oldest.firstSeq;
      for (const pending of oldest.batch) {
        pending.resolve({ logNumber: this.logNumber, offsetBytes: at, endOffsetBytes: at + pending.encodedBytes, seq });
        at += pending.encodedBytes;
        seq++;
      }
      return;
    }
    const failed = this.inFlight.splice(0);
    for (const b of failed) await b.done;
    this.issuedEndBytes = this.writtenEndBytes;
    this.issuedNextSeq = this.nextSeq;
    await this.repairAfterWriteError();
    for (const b of failed) {
      this.release(b.totalBytes);
      for (const pending of b.batch) pending.reject(error);
    }
  }

  /** After a bug stopped the writer: the batches in flight are waited for and their appends rejected. */
  private async abandonInFlight(): Promise<void> {
    const all = this.inFlight.splice(0);
    for (const b of all) await b.done;
    for (const b of all) {
      this.pendingBytes -= b.totalBytes;
      for (const pending of b.batch) pending.reject(this.failure!);
    }
  }

  private release(bytes: number): void {
    this.pendingBytes -= bytes;
    assert(this.pendingBytes >= 0, 'pending bytes went negative');
    this.admitWaiting();
  }

  /**
   * Cuts the file back to the end of the last good batch and makes that durable, so the
   * failed batch's bytes (possibly partly written, possibly partly synced by a concurrent
   * fdatasync) can never come back after a crash. A failed truncate is tolerated: the
   * next batch overwrites the same offsets. A failed fdatasync stops the writer.
   */
  private async repairAfterWriteError(): Promise<void> {
    try {
      await this.file.truncate(this.writtenEndBytes);
    } catch {
      // best effort, see above
    }
    await this.syncExclusive().catch(ignore);
  }

  // ---- fdatasync ----

  /** Starts one fdatasync covering everything written so far in the current file. */
  private startSync(): RunningSync {
    const file = this.file;
    const running: RunningSync = { generation: this.generation, coverageBytes: this.writtenEndBytes, coverageSeq: this.nextSeq, done: Promise.resolve() };
    running.done = (async () => {
      try {
        await file.sync();
        if (running.generation === this.generation && running.coverageBytes > this.durableEndBytes) {
          this.durableEndBytes = running.coverageBytes;
          this.durableNextSeq = running.coverageSeq;
          this.options.onDurable?.();
        }
      } catch (err) {
        throw this.fail(asMarsError(err, `fdatasync log ${this.logNumber}`));
      } finally {
        if (this.syncRunning === running) this.syncRunning = undefined;
      }
    })();
    this.syncRunning = running;
    return running;
  }

  /** An fdatasync that starts after every write so far (waits for a running one first). */
  private async syncExclusive(): Promise<void> {
    while (this.syncRunning !== undefined) await this.syncRunning.done.catch(ignore);
    if (this.failure !== undefined) throw this.failure;
    await this.startSync().done;
  }

  // ---- rotation ----

  private async rotateOnRequest(): Promise<void> {
    const requests = this.rotateRequests;
    this.rotateRequests = [];
    try {
      const logNumber = await this.rotateFile();
      for (const request of requests) request.resolve(logNumber);
    } catch (err) {
      const error = asMarsError(err, 'rotate log');
      for (const request of requests) request.reject(error);
    }
  }

  /** A failed automatic rotation leaves the writer in the old file and is retried later. */
  private async rotateAutomatically(): Promise<void> {
    try {
      await this.rotateFile();
    } catch (err) {
      const rest = Math.ceil(this.options.rotateBytes / logRotateRetryDivisor);
      this.autoRotateAtBytes = this.issuedEndBytes + Math.max(rest, this.batchBytesMax);
      if (this.failure === undefined) this.options.onRotateError?.(asMarsError(err, 'rotate log'));
    }
  }

  private async rotateFile(): Promise<number> {
    let finish = ignore;
    this.rotating = new Promise<void>((resolve) => {
      finish = resolve;
    });
    try {
      return await this.switchFile();
    } finally {
      this.rotating = undefined;
      finish();
    }
  }

  /** Old file durable, new file created and its directory entry durable, then switch. */
  private async switchFile(): Promise<number> {
    assert(this.inFlight.length === 0, 'rotation with batches in flight');
    await this.syncExclusive();
    const previousLogNumber = this.logNumber;
    const previousEndOffsetBytes = this.writtenEndBytes;
    const logNumber = previousLogNumber + 1;
    const file = await createLogFile(this.storage, formatLogName(logNumber, this.options.host));
    const previousFile = this.file;
    this.file = file;
    this.logNumber = logNumber;
    this.generation++;
    this.writtenEndBytes = 0;
    this.issuedEndBytes = 0;
    this.durableEndBytes = 0;
    this.durableNextSeq = this.nextSeq;
    this.autoRotateAtBytes = this.options.rotateBytes;
    await closeQuietly(previousFile); // its data is durable already
    this.options.onRotate?.({ previousLogNumber, previousEndOffsetBytes, logNumber, nextSeq: this.nextSeq });
    return logNumber;
  }

  // ---- failure ----

  /** A method, not a field test, so that the compiler does not narrow it across awaits. */
  private hasFailed(): boolean {
    return this.failure !== undefined;
  }

  /** Stops the writer for good: every queued append and rotation is rejected with `err`. */
  private fail(err: MarsError): MarsError {
    if (this.failure !== undefined) return this.failure;
    this.failure = err;
    for (const pending of this.ready.drain()) {
      this.pendingBytes -= pending.encodedBytes; // a batch in flight stays counted until it ends
      pending.reject(err);
    }
    for (const pending of this.waiting.drain()) pending.reject(err);
    for (const request of this.rotateRequests) request.reject(err);
    this.rotateRequests = [];
    return err;
  }
}
