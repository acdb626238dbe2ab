/**
 * Replay follows a local copy while fetch appends to it: the file may hold a whole record
 * whose end lies beyond the copy's verified end (its write has not come back yet). Replay
 * must not apply it before the verified end passes it; it gives it back to its scanner
 * (LogScanner.unread) and goes on with the same scanner once the end moves, from the
 * chunk in memory: a new scanner per step was a new 8 MiB read buffer each time (page
 * faults, garbage collection) on a secondary that follows fetch closely.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarsError } from '../../src/core/errors.js';
import { MemLogSource, Replayer } from '../../src/fetch/index.js';
import { formatLogName, LogScanner, type LogRecord } from '../../src/log/index.js';
import { encodeLog } from './helpers.js';
import { savePosition } from '../../src/replay/position.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 20_000;
const blockBytes = 4096;
const records = 6;
const deviceSizeBytes = records * blockBytes;
const logName = formatLogName(1, 'alpha');
const start = { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n };

function record(seq: number): LogRecord {
  return { kind: 'write', seq: BigInt(seq), lamport: BigInt(seq), offsetBytes: (seq - 1) * blockBytes, payload: Buffer.alloc(blockBytes, seq) };
}

/** The log's bytes and the end offset of each record. */
function logBytes(): { bytes: Buffer; ends: number[] } {
  return encodeLog(Array.from({ length: records }, (_, i) => record(i + 1)));
}

/** The source, with every read of a file it opens counted. */
function counted(source: MemLogSource): { source: MemLogSource; reads: { value: number } } {
  const reads = { value: 0 };
  const open = source.open.bind(source);
  source.open = async (name: string): Promise<StorageFile> => {
    const file = await open(name);
    return {
      name: file.name,
      read: (target, position) => {
        reads.value++;
        return file.read(target, position);
      },
      write: (data, position) => file.write(data, position),
      writeBatch: (jobs) => file.writeBatch(jobs),
      sync: () => file.sync(),
      size: () => file.size(),
      truncate: (lengthBytes) => file.truncate(lengthBytes),
      close: () => file.close(),
    };
  };
  return { source, reads };
}

test('replay applies no record beyond the verified end, and reads it from its chunk once the end passes it', { timeout: testTimeoutMs }, async () => {
  const { bytes, ends } = logBytes();
  const { source, reads } = counted(new MemLogSource());
  // The file holds every record; fetch has verified only the first two.
  await source.append(logName, bytes);
  await source.makeDurable(logName, ends[1]);
  const state = new MemStorage();
  const device = await state.open('device', 'create');
  await device.truncate(deviceSizeBytes);
  const writes: { positionBytes: number; length: number }[] = [];
  const write = device.write.bind(device);
  device.write = (data, positionBytes) => (writes.push({ positionBytes, length: data.length }), write(data, positionBytes));
  const replayer = new Replayer({ source, device, deviceSizeBytes, start, persist: (p) => savePosition(state, 'beta', p), readChunkBytes: 1024 * 1024 });
  replayer.start();
  await waitFor('records 1-2 applied', () => replayer.status().appliedPosition.offsetBytes === ends[1]);
  await waitFor('caught up', () => replayer.status().state === 'caught-up');
  // Nothing beyond the verified end reached the device.
  assert.ok(writes.every((w) => w.positionBytes + w.length <= 2 * blockBytes), `writes ${JSON.stringify(writes)}`);
  const readsBefore = reads.value;
  assert.ok(readsBefore >= 1);
  await source.makeDurable(logName, ends[3]);
  await waitFor('records 3-4 applied', () => replayer.status().appliedPosition.offsetBytes === ends[3]);
  // Records 3 and 4 were in the chunk read at first: no read of the file for them.
  assert.equal(reads.value, readsBefore, 'records already read are taken from the scanner chunk, not read again');
  await source.makeDurable(logName);
  await waitFor('all applied', () => replayer.status().appliedPosition.offsetBytes === ends.at(-1));
  await replayer.stop();
  const image = state.image('device')!;
  for (let seq = 1; seq <= records; seq++) assert.ok(image.subarray((seq - 1) * blockBytes, seq * blockBytes).equals(Buffer.alloc(blockBytes, seq)), `block of record ${seq}`);
});

test('LogScanner.unread gives back only the record just returned', async () => {
  const { bytes, ends } = logBytes();
  const storage = new MemStorage();
  const file = await storage.open(logName, 'create');
  await file.write(bytes, 0);
  const scanner = new LogScanner(file, logName, { readChunkBytes: 1024 * 1024, tailMayGrow: true });
  const first = (await scanner.next())!;
  const second = (await scanner.next())!;
  assert.throws(() => scanner.unread(first), (err: unknown) => err instanceof MarsError && err.code === 'EINVAL');
  scanner.unread(second);
  assert.deepEqual(scanner.position(), { offsetBytes: ends[0], nextSeq: 2n });
  const again = (await scanner.next())!;
  assert.equal(again.record.seq, 2n);
  assert.equal(again.endOffsetBytes, ends[1]);
});
