/**
 * Crash recovery is replay: the host's own log is applied to its device from the
 * persisted writeback position, with the same engine a secondary uses. A torn tail of
 * the last log file (the unsynced end at a crash) is cut off; damage anywhere else stops
 * recovery with the file name and offset, because skipping data silently would hand
 * out a device that misses acknowledged writes.
 */
import { MarsError } from '../core/errors.js';
import type { Storage, StorageFile } from '../storage/storage.js';
import { LogScanner, listLogFiles, scanReadChunkBytesDefault, type LogFileName } from '../log/index.js';
import { ReplayEngine } from '../replay/replay-engine.js';
import { savePosition, type ReplayPosition } from '../replay/position.js';

export interface RecoveryOptions {
  storage: Storage;
  device: StorageFile;
  deviceSizeBytes: number;
  host: string;
  /** The persisted position: the device holds every record before it. */
  from: ReplayPosition;
}

export interface RecoveryReport {
  /** Where the log continues: a fresh log file after the last one. */
  start: ReplayPosition;
  replayedRecords: number;
  replayedBytes: number;
  tornTail: { logName: string; offsetBytes: number; reason: string } | undefined;
}

/** The log files from `from` on, checked for duplicate numbers and gaps. */
async function filesToReplay(storage: Storage, from: ReplayPosition): Promise<LogFileName[]> {
  const files = (await listLogFiles(storage)).filter((f) => f.logNumber >= from.logNumber);
  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    const expected = from.logNumber + i;
    if (f.logNumber !== expected) {
      const why = f.logNumber < expected ? `two log files with number ${f.logNumber}` : `log ${expected} is missing before ${f.name}`;
      throw new MarsError('LOG_CORRUPT', `cannot recover: ${why}`);
    }
  }
  const first = files[0];
  if (first === undefined && from.offsetBytes > 0) {
    throw new MarsError('LOG_CORRUPT', `cannot recover: log ${from.logNumber} of ${from.logHost} is missing, but the written-back position lies inside it`);
  }
  if (first !== undefined && first.host !== from.logHost) {
    throw new MarsError('LOG_CORRUPT', `cannot recover: the position names log ${from.logNumber} of ${from.logHost}, but the file is ${first.name}`);
  }
  return files;
}

export async function recover(options: RecoveryOptions): Promise<RecoveryReport> {
  const { storage, from } = options;
  const files = await filesToReplay(storage, from);
  const engine = new ReplayEngine({
    device: options.device,
    deviceSizeBytes: options.deviceSizeBytes,
    // A full log filesystem (a crash near ENOSPC) has no room for the position file: the
    // device is fdatasync'd by then and the old position stays, so the next recovery only
    // replays more of the same records. Recovery goes on; the logger then meets the full
    // filesystem and goes into emergency mode. Anything else fails recovery.
    persist: (p) =>
      savePosition(storage, options.host, p).catch((err: unknown) => {
        if (!(err instanceof MarsError) || err.code !== 'ENOSPC') throw err;
      }),
    start: from,
  });
  let tornTail: RecoveryReport['tornTail'];
  let lastBytes = 0;
  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    if (i > 0) engine.enterLog(f.logNumber, f.host);
    const file = await storage.open(f.name, 'write');
    try {
      const fromOffsetBytes = i === 0 ? from.offsetBytes : 0;
      const sizeBytes = await file.size();
      if (fromOffsetBytes > sizeBytes) {
        throw new MarsError('LOG_CORRUPT', `cannot recover: the written-back position ${fromOffsetBytes} lies beyond the end of ${f.name} (${sizeBytes} bytes)`);
      }
      const scanner = new LogScanner(file, f.name, { fromOffsetBytes, expectSeq: engine.appliedPosition.nextSeq, readChunkBytes: scanReadChunkBytesDefault, reuseBuffer: true });
      for (let e = await scanner.next(); e !== undefined; e = await scanner.next()) {
        await engine.apply(e.record, { logNumber: f.logNumber, logHost: f.host, endOffsetBytes: e.endOffsetBytes });
      }
      const outcome = scanner.outcome();
      lastBytes = outcome.endOffsetBytes;
      if (outcome.tail !== 'clean') {
        if (i < files.length - 1) {
          throw new MarsError('LOG_CORRUPT', `${f.name} is damaged at offset ${outcome.tornAtBytes} (${outcome.reason}), and later log files exist`);
        }
        tornTail = { logName: f.name, offsetBytes: outcome.tornAtBytes, reason: outcome.reason };
        await engine.checkpoint();
        await file.truncate(outcome.endOffsetBytes);
        await file.sync();
      }
    } finally {
      await file.close();
    }
  }
  await engine.checkpoint();
  const applied = engine.appliedPosition;
  const last = files.at(-1);
  // Continue in a fresh file: a log file, once left by its writer, is never appended to again.
  const start: ReplayPosition =
    last === undefined || (lastBytes === 0 && last.host === options.host)
      ? { logNumber: last?.logNumber ?? from.logNumber, logHost: options.host, offsetBytes: 0, nextSeq: applied.nextSeq }
      : { logNumber: last.logNumber + 1, logHost: options.host, offsetBytes: 0, nextSeq: applied.nextSeq };
  return { start, replayedRecords: engine.appliedRecords, replayedBytes: engine.appliedBytes, tornTail };
}
