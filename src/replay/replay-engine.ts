/**
 * The replay engine: ordered apply of a log stream onto a device. The same engine serves
 * crash recovery of a primary and, later, secondaries applying fetched logs.
 *
 * Rules:
 * - records are applied strictly in sequence order (a gap or step back is an error);
 * - applying a record twice is harmless (each record sets a range to fixed bytes), so
 *   recovery may start from any persisted position at or before the true one;
 * - the position is persisted only after the device is fdatasync'd (checkpoint), so a
 *   crash never leaves a persisted position ahead of the device.
 *
 * The automatic checkpoint every checkpointBytes runs in the background: it takes the
 * applied position first, then fdatasyncs (which covers every write completed before it)
 * and persists that position, while later records are applied meanwhile. Replay does not
 * stall for the device's fdatasync. At most one runs; its failure is thrown by the next
 * apply or checkpoint, and an explicit checkpoint() waits for it first.
 */
import { assert, MarsError } from '../core/errors.js';
import { writeParts, type StorageFile } from '../storage/storage.js';
import { writeZeroes } from './device-writes.js';
import type { ReplayPosition } from './position.js';

/** What the engine needs of a record; the log's record type fits it. */
export type ReplayRecord =
  | { kind: 'write'; seq: bigint; offsetBytes: number; payload: Buffer }
  | { kind: 'trim' | 'zeroes'; seq: bigint; offsetBytes: number; lengthBytes: number };

export interface ReplayEngineOptions {
  device: StorageFile;
  deviceSizeBytes: number;
  /** Persists a position; called only after the device is durable up to it. */
  persist: (position: ReplayPosition) => Promise<void>;
  /** Start: the first record to apply must be at this position. */
  start: ReplayPosition;
  /** Checkpoint automatically after this many applied bytes. */
  checkpointBytes?: number;
}

export const replayCheckpointBytesDefault = 64 * 1024 * 1024;

/**
 * Records one `applyBatch` takes at most (the Replayer hands over what one read chunk
 * holds; this bounds the ranges kept for the overlap check and the jobs of one hand-off).
 */
export const replayBatchRecordsMax = 4096;

/** Payloads of one gathered write (the kernel's IOV_MAX is 1024). */
export const writeRunPartsMax = 1024;

/** One record of a batch with the place it ends in its log file. */
export interface ReplayBatchEntry {
  readonly record: ReplayRecord;
  readonly endOffsetBytes: number;
}

function recordLength(record: ReplayRecord): number {
  return record.kind === 'write' ? record.payload.length : record.lengthBytes;
}

/**
 * Writes the records of one batch to the device, in order and one write at a time, as
 * `apply` would: a run of writes that follow each other on the device goes down as one
 * gathered write (pwritev), which the kernel copies in file order. So whenever the
 * process dies, the device holds the records before some point of the batch (the last
 * one possibly torn, as with one record's pwrite), never a later record without an
 * earlier one: a secondary killed mid-batch is still a prefix state.
 */
async function writeRecords(device: StorageFile, records: readonly ReplayRecord[]): Promise<void> {
  for (let i = 0; i < records.length; ) {
    const first = records[i]!;
    if (first.kind !== 'write') {
      await writeZeroes(device, first.offsetBytes, first.lengthBytes);
      i++;
      continue;
    }
    const parts = [first.payload];
    let end = first.offsetBytes + first.payload.length;
    for (i++; i < records.length; i++) {
      const next = records[i]!;
      if (next.kind !== 'write' || next.offsetBytes !== end || parts.length >= writeRunPartsMax) break;
      parts.push(next.payload);
      end += next.payload.length;
    }
    await writeParts(device, parts, first.offsetBytes);
  }
}

export class ReplayEngine {
  private position: ReplayPosition;
  private persisted: ReplayPosition;
  private appliedSinceCheckpointBytes = 0;
  private readonly checkpointBytes: number;
  /**
   * A device fdatasync failed: the kernel may have dropped the writes it could not write
   * back, and a later fdatasync would report success for them. From then on every apply
   * and checkpoint throws this; only a new start from the saved position is safe.
   */
  private deviceFailure: MarsError | undefined;
  /** The automatic checkpoint running in the background, if any. */
  private background: Promise<void> | undefined;
  private backgroundFailure: MarsError | undefined;
  appliedRecords = 0;
  appliedBytes = 0;

  constructor(private readonly options: ReplayEngineOptions) {
    this.position = { ...options.start };
    this.persisted = { ...options.start };
    this.checkpointBytes = options.checkpointBytes ?? replayCheckpointBytesDefault;
  }

  /** The position after the last applied record. */
  get appliedPosition(): ReplayPosition {
    return { ...this.position };
  }

  get persistedPosition(): ReplayPosition {
    return { ...this.persisted };
  }

  /**
   * Applies one record found at `at` (its start) ending at `endOffsetBytes` of the same
   * log file. Records of a new log file are announced with `at.logNumber` greater.
   */
  async apply(record: ReplayRecord, at: { logNumber: number; logHost: string; endOffsetBytes: number }): Promise<void> {
    this.throwBackgroundFailure();
    if (record.seq !== this.position.nextSeq) {
      throw new MarsError('LOG_SEQ_GAP', `replay expected record ${this.position.nextSeq} but found ${record.seq} in log ${at.logNumber} of ${at.logHost}`);
    }
    const lengthBytes = record.kind === 'write' ? record.payload.length : record.lengthBytes;
    if (record.offsetBytes + lengthBytes > this.options.deviceSizeBytes) {
      throw new MarsError('LOG_CORRUPT', `record ${record.seq} in log ${at.logNumber} of ${at.logHost} reaches past the device end (${record.offsetBytes}+${lengthBytes} > ${this.options.deviceSizeBytes})`);
    }
    if (record.kind === 'write') await this.options.device.write(record.payload, record.offsetBytes);
    else await writeZeroes(this.options.device, record.offsetBytes, lengthBytes);
    this.position = { logNumber: at.logNumber, logHost: at.logHost, offsetBytes: at.endOffsetBytes, nextSeq: record.seq + 1n };
    this.appliedRecords++;
    this.appliedBytes += lengthBytes;
    this.appliedSinceCheckpointBytes += lengthBytes;
    if (this.appliedSinceCheckpointBytes >= this.checkpointBytes) void this.checkpointInBackground();
  }

  /**
   * Applies consecutive records of the current log file at once (see writeRecords): the
   * same checks as `apply` for each, then the writes, then the position moves past the
   * last one. If a write fails, the position stays before the batch (replaying it again
   * is harmless). The records' payloads must stay unchanged until it resolves.
   */
  async applyBatch(entries: readonly ReplayBatchEntry[], at: { logNumber: number; logHost: string }): Promise<void> {
    this.throwBackgroundFailure();
    assert(entries.length <= replayBatchRecordsMax, `a replay batch of ${entries.length} records`);
    let nextSeq = this.position.nextSeq;
    let bytes = 0;
    for (const { record } of entries) {
      if (record.seq !== nextSeq) {
        throw new MarsError('LOG_SEQ_GAP', `replay expected record ${nextSeq} but found ${record.seq} in log ${at.logNumber} of ${at.logHost}`);
      }
      const lengthBytes = recordLength(record);
      if (record.offsetBytes + lengthBytes > this.options.deviceSizeBytes) {
        throw new MarsError('LOG_CORRUPT', `record ${record.seq} in log ${at.logNumber} of ${at.logHost} reaches past the device end (${record.offsetBytes}+${lengthBytes} > ${this.options.deviceSizeBytes})`);
      }
      nextSeq++;
      bytes += lengthBytes;
    }
    const last = entries.at(-1);
    if (last === undefined) return;
    await writeRecords(this.options.device, entries.map((e) => e.record));
    this.position = { logNumber: at.logNumber, logHost: at.logHost, offsetBytes: last.endOffsetBytes, nextSeq };
    this.appliedRecords += entries.length;
    this.appliedBytes += bytes;
    this.appliedSinceCheckpointBytes += bytes;
    if (this.appliedSinceCheckpointBytes >= this.checkpointBytes) void this.checkpointInBackground();
  }

  /** Moves to the start of the next log file (after the current one is complete). */
  enterLog(logNumber: number, logHost: string): void {
    assert(logNumber > this.position.logNumber, 'replay must move forward to a later log');
    this.position = { logNumber, logHost, offsetBytes: 0, nextSeq: this.position.nextSeq };
  }

  /** fdatasync the device, then persist the applied position (after any background checkpoint). */
  async checkpoint(): Promise<void> {
    await this.settled();
    this.throwBackgroundFailure();
    await this.checkpointAt({ ...this.position });
  }

  /** Resolves once no background checkpoint runs (its failure stays for the next apply). */
  async settled(): Promise<void> {
    while (this.background !== undefined) await this.background.catch(() => undefined);
  }

  private async checkpointAt(target: ReplayPosition): Promise<void> {
    if (this.deviceFailure !== undefined) throw this.deviceFailure;
    this.appliedSinceCheckpointBytes = 0;
    try {
      await this.options.device.sync();
    } catch (err) {
      const cause = err instanceof MarsError ? err : new MarsError('EIO', String(err), { cause: err });
      // Never ENOSPC here: that code means "wait for room" to the replayer, and this is never retried.
      this.deviceFailure = new MarsError('EIO', `fdatasync of the device failed, nothing is replayed until a restart: ${cause.message}`, { cause });
      throw this.deviceFailure;
    }
    await this.options.persist(target);
    this.persisted = target;
  }

  /**
   * Starts a checkpoint at the applied position in the background, unless one runs (which
   * may be at an earlier position); returns the running one. Records may be applied
   * meanwhile. Its failure rejects the promise and is thrown by the next apply or checkpoint.
   */
  checkpointInBackground(): Promise<void> {
    if (this.background !== undefined) return this.background;
    const running = this.checkpointAt({ ...this.position }).finally(() => {
      this.background = undefined;
    });
    running.catch((err: unknown) => {
      this.backgroundFailure = err instanceof MarsError ? err : new MarsError('EIO', String(err), { cause: err });
    });
    this.background = running;
    return running;
  }

  /** The caller handled `err` (a background checkpoint's failure, met through its promise): the next apply does not throw it again. */
  forgetFailure(err: unknown): void {
    if (this.backgroundFailure === err) this.backgroundFailure = undefined;
  }

  private throwBackgroundFailure(): void {
    if (this.deviceFailure !== undefined) throw this.deviceFailure;
    const failure = this.backgroundFailure;
    if (failure === undefined) return;
    this.backgroundFailure = undefined;
    throw failure;
  }
}
