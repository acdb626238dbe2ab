/**
 * The "anytime consistency" checker for tests: a secondary's device, copied at any moment
 * while replay is paused, must equal the primary's device as of SOME PREFIX of the
 * primary's log. `checkPrefix` rebuilds that device from an initial image by applying the
 * records of the real log files one by one (read and verified by the project's own
 * LogScanner, seq continuing across files) and reports the first prefix k whose image
 * equals the snapshot.
 *
 * Why it is linear: comparing the whole image after every record would cost
 * O(records × image). Instead the checker keeps a running count of the 512-byte sectors in
 * which image and snapshot differ, and updates it only over the sectors a record touches
 * (count there before applying, subtract; apply; count again, add). A prefix matches when
 * the count is 0. Total cost: one pass over the log bytes plus one comparison of the
 * whole image at the start. Only on failure, a second pass rebuilds the closest prefix to
 * name its first differing offset (still linear: at most twice the work).
 *
 * Record semantics are the replayer's: WRITE copies its payload, TRIM and WRITE_ZEROES set
 * their range to zeroes (src/replay/device-writes.ts). A record reaching past the device
 * end is LOG_CORRUPT, as in the replay engine. A torn tail ends the stream in the last log
 * file only; a torn tail in an earlier file is LOG_CORRUPT (rotation syncs a file before
 * the next one is used, docs/log-format.md). Log damage the scanner finds is thrown as it is.
 *
 * The image and the snapshot are held in memory: up to `prefixCheckImageBytesMax`.
 */
import { open } from 'node:fs/promises';
import { assert, MarsError } from '../../src/core/errors.js';
import { listLogFiles, LogScanner, recordLengthBytes, scanReadChunkBytesDefault, type LogFileName, type LogRecord } from '../../src/log/index.js';
import { scanReadChunkBytesMin } from '../../src/log/limits.js';
import { FsStorage } from '../../src/storage/fs-storage.js';

/** The unit in which differences are counted. */
export const prefixCheckSectorBytes = 512;
/** The largest device the checker holds in memory (image and snapshot: twice this). */
export const prefixCheckImageBytesMax = 256 * 1024 * 1024;
/** Bytes per call of an `initial` function, and per block of the whole-image comparison. */
const imageChunkBytes = 1024 * 1024;

/** The initial image: all zeroes, a buffer (copied, not changed), or a function producing ranges of it. */
export type InitialImage = 'zero' | Buffer | ((offsetBytes: number, lengthBytes: number) => Buffer);

export interface PrefixCheckOptions {
  /** The primary's resource directory with its `log-NNNNNNNNN-HOST` files (other files are ignored). */
  logDir: string;
  /** Only the log files of this host; default all, which must then not share a log number. */
  host?: string;
  /** The device before the first record read (at `from`). */
  initial: InitialImage;
  /** The secondary's device copy to judge; exactly `sizeBytes` long. */
  snapshot: Buffer;
  sizeBytes: number;
  /** Read records from here on (inclusive; a record boundary); default the start of the first log. */
  from?: { logNumber: number; offsetBytes: number };
}

/** A position in the log stream: the next record would start here. */
export interface PrefixPosition {
  logName: string;
  offsetBytes: number;
}

/** The prefix whose image is closest to the snapshot (fewest differing sectors; the earliest of equals). */
export interface ClosestPrefix {
  prefixRecords: number;
  at: PrefixPosition;
  differingSectors: number;
  /** Where the first differing sector starts. */
  firstDifferingOffsetBytes: number;
}

export type PrefixCheckResult =
  | {
      ok: true;
      /** Records applied to reach the match; the earliest matching prefix (0 = the initial image). */
      prefixRecords: number;
      /** Just after the matching prefix (for 0: the start position). */
      at: PrefixPosition;
      detail: string;
    }
  | {
      ok: false;
      /** Records in the whole stream (every prefix 0..recordsTotal was tried). */
      recordsTotal: number;
      closest: ClosestPrefix;
      detail: string;
    };

/** The log record with where it ends in its stream. */
interface PositionedRecord {
  record: LogRecord;
  at: PrefixPosition;
}

function describe(at: PrefixPosition): string {
  return `${at.logName} at offset ${at.offsetBytes}`;
}

/**
 * Reports whether `snapshot` equals the device after some prefix of the log stream in
 * `logDir` (from `from` on), applied to `initial`. Throws EINVAL for bad options, and the
 * scanner's LOG_CORRUPT / LOG_SEQ_GAP / LOG_BAD_VERSION for a damaged log.
 */
export async function checkPrefix(options: PrefixCheckOptions): Promise<PrefixCheckResult> {
  checkOptions(options);
  const storage = new FsStorage(options.logDir);
  const logs = await selectLogs(storage, options);
  const start: PrefixPosition = { logName: logs[0]!.name, offsetBytes: options.from?.offsetBytes ?? 0 };
  const diff = new SectorDiff(initialImage(options.initial, options.sizeBytes), options.snapshot);
  if (diff.differingSectors === 0) return { ok: true, prefixRecords: 0, at: start, detail: `the snapshot is the initial image (${describe(start)})` };
  let best = { prefixRecords: 0, at: start, differingSectors: diff.differingSectors };
  let records = 0;
  for await (const { record, at } of streamRecords(storage, logs, options.from?.offsetBytes ?? 0)) {
    diff.apply(record, at);
    records++;
    if (diff.differingSectors === 0) return { ok: true, prefixRecords: records, at, detail: `the snapshot is the image after ${records} records (${describe(at)})` };
    if (diff.differingSectors < best.differingSectors) best = { prefixRecords: records, at, differingSectors: diff.differingSectors };
  }
  const closest: ClosestPrefix = { ...best, firstDifferingOffsetBytes: await firstDifferenceAfter(storage, logs, options, best.prefixRecords) };
  const detail =
    `the snapshot matches no prefix of the ${records} records from ${describe(start)}: the closest is prefix ${closest.prefixRecords} ` +
    `(${describe(closest.at)}) with ${closest.differingSectors} differing ${prefixCheckSectorBytes}-byte sectors, the first at byte offset ${closest.firstDifferingOffsetBytes}`;
  return { ok: false, recordsTotal: records, closest, detail };
}

/** The second pass on failure: rebuild the image after `prefixRecords` records and find its first difference. */
async function firstDifferenceAfter(storage: FsStorage, logs: readonly LogFileName[], options: PrefixCheckOptions, prefixRecords: number): Promise<number> {
  const diff = new SectorDiff(initialImage(options.initial, options.sizeBytes), options.snapshot);
  let records = 0;
  if (prefixRecords > 0) {
    for await (const { record, at } of streamRecords(storage, logs, options.from?.offsetBytes ?? 0)) {
      diff.apply(record, at);
      if (++records === prefixRecords) break;
    }
  }
  const first = diff.firstDifferingOffsetBytes();
  assert(first !== undefined && records === prefixRecords, 'the log changed between the two passes of the prefix check');
  return first;
}

function checkOptions(options: PrefixCheckOptions): void {
  const bad = (why: string): MarsError => new MarsError('EINVAL', `prefix check: ${why}`);
  const { sizeBytes, snapshot, initial, from } = options;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes > prefixCheckImageBytesMax) throw bad(`sizeBytes ${sizeBytes} is not in 1..${prefixCheckImageBytesMax}`);
  if (snapshot.length !== sizeBytes) throw bad(`the snapshot has ${snapshot.length} bytes, not ${sizeBytes}`);
  if (Buffer.isBuffer(initial) && initial.length !== sizeBytes) throw bad(`the initial image has ${initial.length} bytes, not ${sizeBytes}`);
  if (from !== undefined && (!Number.isSafeInteger(from.offsetBytes) || from.offsetBytes < 0)) throw bad(`bad start offset ${from.offsetBytes}`);
}

/** The log files to read, in order; the first is the one `from` names. */
async function selectLogs(storage: FsStorage, options: PrefixCheckOptions): Promise<LogFileName[]> {
  const { host, from } = options;
  const logs = (await listLogFiles(storage)).filter((l) => (host === undefined || l.host === host) && l.logNumber >= (from?.logNumber ?? 0));
  const where = `${options.logDir}${host === undefined ? '' : ` (host ${host})`}`;
  const first = logs[0];
  if (first === undefined) throw new MarsError('EINVAL', `prefix check: no log files in ${where}${from === undefined ? '' : ` from log ${from.logNumber}`}`);
  if (from !== undefined && first.logNumber !== from.logNumber) throw new MarsError('EINVAL', `prefix check: there is no log ${from.logNumber} in ${where}`);
  for (let i = 1; i < logs.length; i++) {
    if (logs[i]!.logNumber === logs[i - 1]!.logNumber) {
      throw new MarsError('EINVAL', `prefix check: ${logs[i - 1]!.name} and ${logs[i]!.name} share a log number; pass a host`);
    }
  }
  return logs;
}

/**
 * The verified records of `logs` in order, the seq continuing from file to file; the
 * first file is read from `firstOffsetBytes`. Files are opened one at a time and closed
 * when the caller stops early.
 */
async function* streamRecords(storage: FsStorage, logs: readonly LogFileName[], firstOffsetBytes: number): AsyncGenerator<PositionedRecord> {
  let expectSeq: bigint | undefined;
  for (const [i, log] of logs.entries()) {
    const file = await storage.open(log.name, 'read');
    try {
      const fromOffsetBytes = i === 0 ? firstOffsetBytes : 0;
      // A chunk no larger than the file: small test logs are read many times over.
      const readChunkBytes = Math.max(scanReadChunkBytesMin, Math.min(scanReadChunkBytesDefault, await file.size()));
      const scanner = new LogScanner(file, log.name, { fromOffsetBytes, readChunkBytes, ...(expectSeq === undefined ? {} : { expectSeq }) });
      for await (const entry of scanner) yield { record: entry.record, at: { logName: log.name, offsetBytes: entry.endOffsetBytes } };
      const outcome = scanner.outcome();
      if (outcome.tail !== 'clean' && i < logs.length - 1) {
        throw new MarsError('LOG_CORRUPT', `${log.name} at offset ${outcome.tornAtBytes}: ${outcome.reason}, but a later log ${logs[i + 1]!.name} exists`);
      }
      expectSeq = outcome.nextSeq ?? expectSeq;
    } finally {
      await file.close();
    }
  }
}

/** A fresh image the checker may change. */
function initialImage(initial: InitialImage, sizeBytes: number): Buffer {
  if (initial === 'zero') return Buffer.alloc(sizeBytes);
  if (Buffer.isBuffer(initial)) return Buffer.from(initial);
  const image = Buffer.allocUnsafe(sizeBytes);
  for (let offsetBytes = 0; offsetBytes < sizeBytes; offsetBytes += imageChunkBytes) {
    const lengthBytes = Math.min(imageChunkBytes, sizeBytes - offsetBytes);
    const part = initial(offsetBytes, lengthBytes);
    if (part.length !== lengthBytes) throw new MarsError('EINVAL', `prefix check: initial(${offsetBytes}, ${lengthBytes}) returned ${part.length} bytes`);
    part.copy(image, offsetBytes);
  }
  return image;
}

/** The image being rebuilt and the running count of sectors in which it differs from the snapshot. */
class SectorDiff {
  differingSectors: number;

  constructor(
    private readonly image: Buffer,
    private readonly snapshot: Buffer,
  ) {
    let count = 0;
    for (let offsetBytes = 0; offsetBytes < image.length; offsetBytes += imageChunkBytes) {
      count += this.countIn(offsetBytes, Math.min(offsetBytes + imageChunkBytes, image.length));
    }
    this.differingSectors = count;
  }

  /** Applies one record, updating the count over the sectors it touches only. */
  apply(record: LogRecord, at: PrefixPosition): void {
    const lengthBytes = recordLengthBytes(record);
    const endBytes = record.offsetBytes + lengthBytes;
    if (endBytes > this.image.length) {
      throw new MarsError('LOG_CORRUPT', `record ${record.seq} ending at ${describe(at)} reaches past the device end (${record.offsetBytes}+${lengthBytes} > ${this.image.length})`);
    }
    if (lengthBytes === 0) return;
    const startSectorBytes = record.offsetBytes - (record.offsetBytes % prefixCheckSectorBytes);
    const endSectorBytes = Math.min(Math.ceil(endBytes / prefixCheckSectorBytes) * prefixCheckSectorBytes, this.image.length);
    this.differingSectors -= this.countIn(startSectorBytes, endSectorBytes);
    if (record.kind === 'write') record.payload.copy(this.image, record.offsetBytes);
    else this.image.fill(0, record.offsetBytes, endBytes);
    this.differingSectors += this.countIn(startSectorBytes, endSectorBytes);
  }

  /** Where the first differing sector starts, or undefined when image and snapshot are equal. */
  firstDifferingOffsetBytes(): number | undefined {
    for (let blockBytes = 0; blockBytes < this.image.length; blockBytes += imageChunkBytes) {
      const blockEndBytes = Math.min(blockBytes + imageChunkBytes, this.image.length);
      if (this.countIn(blockBytes, blockEndBytes) === 0) continue;
      for (let s = blockBytes; s < blockEndBytes; s += prefixCheckSectorBytes) {
        if (this.sectorDiffers(s, Math.min(s + prefixCheckSectorBytes, blockEndBytes))) return s;
      }
    }
    return undefined;
  }

  /** Differing sectors in [startBytes, endBytes), which starts at a sector boundary. */
  private countIn(startBytes: number, endBytes: number): number {
    if (!this.sectorDiffers(startBytes, endBytes)) return 0;
    let count = 0;
    for (let s = startBytes; s < endBytes; s += prefixCheckSectorBytes) {
      if (this.sectorDiffers(s, Math.min(s + prefixCheckSectorBytes, endBytes))) count++;
    }
    return count;
  }

  private sectorDiffers(startBytes: number, endBytes: number): boolean {
    return this.image.compare(this.snapshot, startBytes, endBytes, startBytes, endBytes) !== 0;
  }
}

/**
 * Copies the first `sizeBytes` of a file or block device (a secondary's device) into a
 * Buffer. The copy is consistent only if nothing writes the device meanwhile (pause replay).
 */
export async function readDeviceImage(path: string, sizeBytes: number): Promise<Buffer> {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes > prefixCheckImageBytesMax) {
    throw new MarsError('EINVAL', `read device image: sizeBytes ${sizeBytes} is not in 1..${prefixCheckImageBytesMax}`);
  }
  const handle = await open(path, 'r');
  try {
    const image = Buffer.allocUnsafe(sizeBytes);
    let doneBytes = 0;
    while (doneBytes < sizeBytes) {
      const { bytesRead } = await handle.read(image, doneBytes, sizeBytes - doneBytes, doneBytes);
      if (bytesRead === 0) throw new MarsError('BAD_DEVICE', `read device image: ${path} ends at ${doneBytes}, before ${sizeBytes}`);
      doneBytes += bytesRead;
    }
    return image;
  } finally {
    await handle.close();
  }
}
