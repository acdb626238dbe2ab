/**
 * The log scanner: reads the records of one log file in order, verifies each one, and
 * decides what an invalid record means. It serves crash recovery (scan the own log from
 * a position), replay on secondaries, and log shipping ("scan to the current end, then
 * wait for more").
 *
 * API:
 *   const scanner = new LogScanner(file, fileName, { fromOffsetBytes, expectSeq, readChunkBytes, tailMayGrow });
 *   for (let e = await scanner.next(); e !== undefined; e = await scanner.next()) use(e.record);
 *   const outcome = scanner.outcome();   // { tail: 'clean' | 'torn' | 'incomplete', endOffsetBytes, nextSeq }
 * or `for await (const e of scanner)`. `next()` throws MarsError LOG_CORRUPT (durable bytes
 * are damaged), LOG_SEQ_GAP (a valid record with the wrong seq) or LOG_BAD_VERSION.
 * With `tailMayGrow`, calling `next()` again after the scan stopped re-reads the end of
 * the file and continues from `outcome().endOffsetBytes` (the file may have grown). An
 * 'incomplete' end never becomes an error by itself: once the caller knows the file is
 * finished (say, log N+1 exists), it scans the rest without `tailMayGrow` to learn
 * whether the end is clean or torn.
 *
 * Torn tail or corruption? Every record carries `syncedBytes`, the length of its file that
 * was durable (fdatasync'd) when it was encoded. When the record at offset X is invalid,
 * the scanner looks through the rest of the file for any record that is valid on its own
 * (magic, header checksum, payload checksum, a plausible seq, syncedBytes ≤ its offset).
 * If one has syncedBytes > X, the bytes at X were durable before that record was written,
 * so a crash cannot explain the damage: LOG_CORRUPT naming the file and X. Otherwise X
 * lies in the window that was not yet durable at a crash: a torn tail, the valid prefix
 * ends at X. Limit: bit rot inside the last synced batch, with no valid record after it
 * that was written after a later sync, looks like a torn tail (docs/log-format.md).
 *
 * Memory: reads are chunks of `readChunkBytes` (a larger record is read whole, at most
 * recordBytesMax). Chunks are never reused, so a returned payload is a view into its
 * chunk, not a copy; copy it if it is kept long (a small view keeps its chunk alive).
 */
import { MarsError } from '../core/errors.js';
import { readAt, type StorageFile } from '../storage/storage.js';
import { scanReadChunkBytesMax, scanReadChunkBytesMin } from './limits.js';
import { decodeHeader, recordFromHeader, recordHeaderBytes, recordMagic, verifyPayload, type LogRecord, type RecordHeader } from './record.js';

export interface ScanOptions {
  /** Where to start; must be a record boundary (default 0). */
  fromOffsetBytes?: number;
  /** The seq of the record at fromOffsetBytes; default: whatever the first record says. */
  expectSeq?: bigint;
  /** Bytes per read (scanReadChunkBytesDefault is a good choice). */
  readChunkBytes: number;
  /** The file may still be appended to: an invalid or incomplete end is 'incomplete', not 'torn'. */
  tailMayGrow?: boolean;
  /**
   * Read every chunk into one buffer that the scanner keeps, instead of a new buffer per
   * read (no allocation per record, so no garbage collection driven by it). A record's
   * payload is then a view into that buffer and valid only until the next `next()`: for
   * a consumer that is done with each record before it asks for the next (replay).
   */
  reuseBuffer?: boolean;
  /**
   * With reuseBuffer: called (and awaited) before the buffer is read into again, so that
   * payloads of earlier records stay valid until then (replay applies them in batches).
   */
  beforeRefill?: () => Promise<void>;
}

export interface ScanEntry {
  record: LogRecord;
  /** Where the record starts in the file. */
  offsetBytes: number;
  /** Where it ends: the next record starts here. */
  endOffsetBytes: number;
  /** The durable length of the file when the record was written. */
  syncedBytes: number;
}

export type ScanOutcome =
  | { tail: 'clean'; endOffsetBytes: number; nextSeq: bigint | undefined }
  | { tail: 'torn' | 'incomplete'; endOffsetBytes: number; nextSeq: bigint | undefined; tornAtBytes: number; reason: string };

const magicBytes = Buffer.alloc(4);
magicBytes.writeUInt32LE(recordMagic);

/**
 * A window over the file, read in chunks. `view` returns at least `minBytes` from an
 * offset (fewer only at the end of the file), often more: the rest of the chunk.
 */
class ChunkReader {
  private chunk: Buffer = Buffer.alloc(0);
  private chunkStartBytes = 0;
  /** The read that filled the chunk came back short: the chunk reaches the end of the file. */
  private chunkAtEnd = false;

  /** With reuse: the buffer every chunk is read into (grown to the largest chunk read). */
  private reusable: Buffer | undefined;

  constructor(
    private readonly file: StorageFile,
    private readonly readChunkBytes: number,
    private readonly reuse: boolean,
    private readonly beforeRefill: (() => Promise<void>) | undefined,
  ) {}

  async view(offsetBytes: number, minBytes: number): Promise<Buffer> {
    const start = offsetBytes - this.chunkStartBytes;
    if (start >= 0 && start <= this.chunk.length) {
      if (this.chunk.length - start >= minBytes || this.chunkAtEnd) return this.chunk.subarray(start);
    }
    const wantBytes = Math.max(this.readChunkBytes, minBytes);
    this.chunk = this.reuse ? await this.readReusing(offsetBytes, wantBytes) : await readAt(this.file, offsetBytes, wantBytes);
    this.chunkStartBytes = offsetBytes;
    this.chunkAtEnd = this.chunk.length < wantBytes;
    return this.chunk;
  }

  private async readReusing(offsetBytes: number, wantBytes: number): Promise<Buffer> {
    await this.beforeRefill?.();
    if (this.reusable === undefined || this.reusable.length < wantBytes) this.reusable = Buffer.allocUnsafe(wantBytes);
    const target = this.reusable.subarray(0, wantBytes);
    let done = 0;
    while (done < wantBytes) {
      const n = await this.file.read(target.subarray(done), offsetBytes + done);
      if (n === 0) break;
      done += n;
    }
    return target.subarray(0, done);
  }

  /** The file may have grown since the last read. */
  forgetEnd(): void {
    this.chunkAtEnd = false;
  }
}

type Step = { type: 'end' } | { type: 'invalid'; reason: string } | { type: 'record'; header: RecordHeader; payload: Buffer };

export class LogScanner implements AsyncIterable<ScanEntry> {
  private readonly reader: ChunkReader;
  private offsetBytes: number;
  private expectSeq: bigint | undefined;
  private stopped: ScanOutcome | undefined;
  private startChecked = false;

  constructor(
    private readonly file: StorageFile,
    private readonly fileName: string,
    private readonly options: ScanOptions,
  ) {
    const from = options.fromOffsetBytes ?? 0;
    if (!Number.isSafeInteger(from) || from < 0) throw new MarsError('EINVAL', `scan ${fileName}: bad start offset ${from}`);
    const chunk = options.readChunkBytes;
    if (!Number.isInteger(chunk) || chunk < scanReadChunkBytesMin || chunk > scanReadChunkBytesMax) {
      throw new MarsError('EINVAL', `scan ${fileName}: readChunkBytes ${chunk} is not in ${scanReadChunkBytesMin}..${scanReadChunkBytesMax}`);
    }
    this.reader = new ChunkReader(file, chunk, options.reuseBuffer === true, options.beforeRefill);
    this.offsetBytes = from;
    this.expectSeq = options.expectSeq;
  }

  /** Where the next record is expected. */
  position(): { offsetBytes: number; nextSeq: bigint | undefined } {
    return { offsetBytes: this.offsetBytes, nextSeq: this.expectSeq };
  }

  /** How the scan stopped; valid once `next()` has returned undefined. */
  outcome(): ScanOutcome {
    if (this.stopped === undefined) throw new MarsError('EINVAL', `scan ${this.fileName}: the scan has not stopped yet`);
    return this.stopped;
  }

  /** The next valid record, or undefined when the scan stopped (see `outcome()`). */
  async next(): Promise<ScanEntry | undefined> {
    if (this.stopped !== undefined) {
      if (this.options.tailMayGrow !== true) return undefined;
      this.stopped = undefined;
      this.reader.forgetEnd();
    }
    if (!this.startChecked) await this.checkStart();
    const offsetBytes = this.offsetBytes;
    const step = await this.readRecordAt(offsetBytes);
    if (step.type === 'end') {
      this.stopped = { tail: 'clean', endOffsetBytes: offsetBytes, nextSeq: this.expectSeq };
      return undefined;
    }
    if (step.type === 'invalid') {
      await this.stopAtInvalid(offsetBytes, step.reason);
      return undefined;
    }
    const { header, payload } = step;
    if (this.expectSeq !== undefined && header.seq !== this.expectSeq) {
      throw new MarsError('LOG_SEQ_GAP', `${this.fileName} at offset ${offsetBytes}: expected record seq ${this.expectSeq}, found ${header.seq}`);
    }
    const endOffsetBytes = offsetBytes + recordHeaderBytes + header.payloadBytes;
    this.offsetBytes = endOffsetBytes;
    this.expectSeq = header.seq + 1n;
    return { record: recordFromHeader(header, payload), offsetBytes, endOffsetBytes, syncedBytes: header.syncedBytes };
  }

  /**
   * Gives back the record `next()` just returned: the next call returns it again (from the
   * chunk in memory when it is still there). For a caller that reads one record too far
   * (replay stops at the end fetch has verified) and keeps the scanner, and its buffer.
   */
  unread(entry: ScanEntry): void {
    if (entry.endOffsetBytes !== this.offsetBytes || this.stopped !== undefined) throw new MarsError('EINVAL', `scan ${this.fileName}: only the record just returned can be given back`);
    this.offsetBytes = entry.offsetBytes;
    this.expectSeq = entry.record.seq;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ScanEntry> {
    for (;;) {
      const entry = await this.next();
      if (entry === undefined) return;
      yield entry;
    }
  }

  /** A start beyond the end of a finished file means the caller's position is wrong. */
  private async checkStart(): Promise<void> {
    if (this.options.tailMayGrow !== true) {
      const sizeBytes = await this.file.size();
      if (sizeBytes < this.offsetBytes) {
        throw new MarsError('LOG_CORRUPT', `${this.fileName}: the file ends at ${sizeBytes}, before the scan start ${this.offsetBytes}`);
      }
    }
    this.startChecked = true;
  }

  /**
   * The record at `offsetBytes`, verified. A header that passes its checksum but is
   * implausible cannot be crash damage (a torn write does not produce a valid checksum):
   * it is reported at once, as LOG_BAD_VERSION or LOG_CORRUPT.
   */
  private async readRecordAt(offsetBytes: number): Promise<Step> {
    const head = await this.reader.view(offsetBytes, recordHeaderBytes);
    if (head.length === 0) return { type: 'end' };
    const decoded = decodeHeader(head);
    if (!decoded.ok) {
      const where = `${this.fileName} at offset ${offsetBytes}`;
      if (decoded.fault === 'bad-version') throw new MarsError('LOG_BAD_VERSION', `${where}: ${decoded.detail}`);
      if (decoded.fault === 'short' || decoded.fault === 'bad-magic' || decoded.fault === 'bad-header-checksum') {
        return { type: 'invalid', reason: decoded.detail };
      }
      throw new MarsError('LOG_CORRUPT', `${where}: header with a valid checksum is implausible: ${decoded.detail}`);
    }
    const header = decoded.header;
    if (header.syncedBytes > offsetBytes) {
      throw new MarsError('LOG_CORRUPT', `${this.fileName} at offset ${offsetBytes}: record claims ${header.syncedBytes} bytes were durable before it started`);
    }
    const recordBytes = recordHeaderBytes + header.payloadBytes;
    const whole = await this.reader.view(offsetBytes, recordBytes);
    if (whole.length < recordBytes) return { type: 'invalid', reason: `incomplete record: ${whole.length} of ${recordBytes} bytes` };
    const payload = whole.subarray(recordHeaderBytes, recordBytes);
    if (!verifyPayload(header, payload)) return { type: 'invalid', reason: 'payload checksum mismatch' };
    return { type: 'record', header, payload };
  }

  /** Torn tail (or, while the file may grow, not yet complete) unless later records prove corruption. */
  private async stopAtInvalid(invalidAtBytes: number, reason: string): Promise<void> {
    const evidence = await this.findRecordDurableAfter(invalidAtBytes);
    if (evidence !== undefined) {
      throw new MarsError(
        'LOG_CORRUPT',
        `${this.fileName} at offset ${invalidAtBytes}: corrupt record (${reason}); the valid record at offset ${evidence.offsetBytes} ` +
          `(seq ${evidence.header.seq}) was written when ${evidence.header.syncedBytes} bytes of the file were durable`,
      );
    }
    this.stopped = {
      tail: this.options.tailMayGrow === true ? 'incomplete' : 'torn',
      endOffsetBytes: invalidAtBytes,
      nextSeq: this.expectSeq,
      tornAtBytes: invalidAtBytes,
      reason,
    };
  }

  /**
   * The first record after `invalidAtBytes` that is valid on its own and was written when
   * the bytes at `invalidAtBytes` were already durable. Searches every byte offset for
   * the magic (records are not aligned, and the length of the damaged record is unknown).
   */
  private async findRecordDurableAfter(invalidAtBytes: number): Promise<{ offsetBytes: number; header: RecordHeader } | undefined> {
    let searchBytes = invalidAtBytes + 1;
    for (;;) {
      const view = await this.reader.view(searchBytes, magicBytes.length);
      if (view.length < magicBytes.length) return undefined;
      const index = view.indexOf(magicBytes);
      if (index < 0) {
        searchBytes += view.length - magicBytes.length + 1;
        continue;
      }
      const candidateBytes = searchBytes + index;
      const header = await this.validRecordAt(candidateBytes, invalidAtBytes);
      if (header !== undefined && header.syncedBytes > invalidAtBytes) return { offsetBytes: candidateBytes, header };
      searchBytes = candidateBytes + 1;
    }
  }

  /** The header at `offsetBytes` when the whole record there is valid and plausible after the damage. */
  private async validRecordAt(offsetBytes: number, invalidAtBytes: number): Promise<RecordHeader | undefined> {
    const head = await this.reader.view(offsetBytes, recordHeaderBytes);
    const decoded = decodeHeader(head);
    if (!decoded.ok) return undefined;
    const header = decoded.header;
    if (header.syncedBytes > offsetBytes || !this.seqPlausible(header.seq, offsetBytes, invalidAtBytes)) return undefined;
    const recordBytes = recordHeaderBytes + header.payloadBytes;
    const whole = await this.reader.view(offsetBytes, recordBytes);
    if (whole.length < recordBytes || !verifyPayload(header, whole.subarray(recordHeaderBytes, recordBytes))) return undefined;
    return header;
  }

  /**
   * A genuine later record follows the damaged one (seq expectSeq) by k ≥ 1 records of at
   * least a header each. Records with other seqs (say, a log stored inside a payload) are
   * no evidence.
   */
  private seqPlausible(seq: bigint, offsetBytes: number, invalidAtBytes: number): boolean {
    if (this.expectSeq === undefined) return true;
    const recordsBetweenMax = BigInt(Math.floor((offsetBytes - invalidAtBytes) / recordHeaderBytes));
    return seq > this.expectSeq && seq - this.expectSeq <= recordsBetweenMax;
  }
}

/** Starts a scan of one log file; see LogScanner. */
export function scanLog(file: StorageFile, fileName: string, options: ScanOptions): LogScanner {
  return new LogScanner(file, fileName, options);
}
