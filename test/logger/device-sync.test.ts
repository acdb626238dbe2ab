/**
 * Writeback fdatasyncs the device every deviceSyncBytes in the background, so its dirty
 * pages reach the disk in slices rather than all at the next position persist; such a
 * sync moves no position, and once one has failed no position is persisted any more
 * (the page cache may have dropped written-back data: recovery must replay it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { ManualClock } from '../../src/core/clock.js';
import { systemTimers } from '../../src/core/timers.js';
import { Logger } from '../../src/logger/logger.js';
import { PayloadPool } from '../../src/nbd/payload-pool.js';
import { loadPosition, savePosition, type ReplayPosition } from '../../src/replay/position.js';
import type { StorageFile, WriteJob } from '../../src/storage/storage.js';

const deviceBytes = 1024 * 1024;
const host = 'alpha';
const KiB = 1024;

/** A device that records, for every fdatasync, how many bytes were written before it; `failSyncs` of them fail with EIO. */
class CountingDevice implements StorageFile {
  readonly name = 'device';
  writtenBytes = 0;
  readonly syncsAtBytes: number[] = [];
  failSyncs = 0;
  constructor(private readonly inner: StorageFile) {}
  read(target: Buffer, position: number): Promise<number> {
    return this.inner.read(target, position);
  }
  write(data: Buffer, position: number): Promise<void> {
    this.writtenBytes += data.length;
    return this.inner.write(data, position);
  }
  writeBatch(jobs: readonly WriteJob[]): Promise<void> {
    for (const j of jobs) this.writtenBytes += 'data' in j ? j.data.length : j.zeroBytes;
    return this.inner.writeBatch(jobs);
  }
  async sync(): Promise<void> {
    this.syncsAtBytes.push(this.writtenBytes);
    if (this.failSyncs > 0) {
      this.failSyncs--;
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    }
    return this.inner.sync();
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  truncate(lengthBytes: number): Promise<void> {
    return this.inner.truncate(lengthBytes);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function setup(deviceSyncBytes: number): Promise<{ logger: Logger; device: CountingDevice; storage: MemStorage; start: ReplayPosition }> {
  const storage = new MemStorage();
  const raw = await new MemStorage().open('device', 'create');
  await raw.truncate(deviceBytes);
  const device = new CountingDevice(raw);
  const start = { logNumber: 1, logHost: host, offsetBytes: 0, nextSeq: 1n };
  await savePosition(storage, host, start);
  const logger = await Logger.open({
    storage,
    device,
    sizeBytes: deviceBytes,
    host,
    clock: new ManualClock(1_000_000),
    // Unreferenced: the position timer of an hour must not keep the test process alive.
    timers: systemTimers,
    start,
    payloadPool: new PayloadPool(0),
    // The position is persisted only when asked (drain): the timers are held.
    limits: { logSyncDelayMs: 1, positionPersistIntervalMs: 3_600_000, deviceSyncBytes },
  });
  return { logger, device, storage, start };
}

/** Waits (a bounded number of turns of the event loop) until `done()`. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 10_000; turn++) {
    if (done()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail(`never happened: ${what}`);
}

test('writeback fdatasyncs the device every deviceSyncBytes without waiting for the position persist, and moves no position', async () => {
  const { logger, device, storage, start } = await setup(64 * KiB);
  // 16 rounds of 32 KiB: each flush lets writeback write one round back.
  for (let round = 0; round < 16; round++) {
    for (let i = 0; i < 8; i++) await logger.write((round * 8 + i) * 4 * KiB, Buffer.alloc(4 * KiB, round + 1), false);
    await logger.flush();
    await until(() => logger.status().shadowBytes === 0, `round ${round} written back`);
  }
  await until(() => device.writtenBytes === 512 * KiB, 'everything written back');
  assert.ok(device.syncsAtBytes.length >= 4, `only ${device.syncsAtBytes.length} device fdatasyncs for 512 KiB written back in slices of 64 KiB`);
  // The background syncs are slices: never more than a slice plus a round between two.
  let previous = 0;
  for (const at of device.syncsAtBytes) {
    assert.ok(at - previous <= 64 * KiB + 32 * KiB, `a device fdatasync came after ${at - previous} bytes written since the one before`);
    previous = at;
  }
  assert.deepEqual(await loadPosition(storage, host), start, 'a background device fdatasync persisted a position');
  await logger.drain();
  assert.equal((await loadPosition(storage, host))?.nextSeq, 129n, 'drain persists the position after its own fdatasync');
  await logger.close();
});

test('after a failed background device fdatasync no position is persisted any more, though later fdatasyncs succeed', async () => {
  const { logger, device, storage, start } = await setup(16 * KiB);
  const errors: string[] = [];
  device.failSyncs = 1;
  for (let i = 0; i < 8; i++) await logger.write(i * 4 * KiB, Buffer.alloc(4 * KiB, 7), false);
  await logger.flush();
  await until(() => device.syncsAtBytes.length >= 1 && logger.status().positionError !== undefined, 'the failed background fdatasync reported');
  errors.push(logger.status().positionError!);
  assert.match(errors[0]!, /device fdatasync failed/);
  await assert.rejects(logger.drain(), /device fdatasync failed/);
  assert.deepEqual(await loadPosition(storage, host), start, 'a position was persisted after the device may have lost written-back data');
  // More writes, written back and synced without error: still no position.
  for (let i = 8; i < 16; i++) await logger.write(i * 4 * KiB, Buffer.alloc(4 * KiB, 8), false);
  await logger.flush();
  await until(() => logger.status().shadowBytes === 0, 'the later writes written back');
  await assert.rejects(logger.drain(), /device fdatasync failed/);
  assert.deepEqual(await loadPosition(storage, host), start);
  await logger.close();
});
