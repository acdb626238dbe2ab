/**
 * The log's durable end is all a fetch stream may ship, so a write's log fdatasync must
 * not wait for the writeback loop: under load the device's fdatasync (every
 * positionPersistIntervalMs) takes hundreds of milliseconds, and a log sync that only the
 * loop's next step could start waited for it. Virtual timers; the device's fdatasync
 * hangs until the test lets it go.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { ManualTimers } from '../../src/core/timers.js';
import { Logger } from '../../src/logger/logger.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { heldDevice } from '../support/held-device.js';
import { waitFor } from '../support/wait.js';

const deviceBytes = 64 * 1024;
const logSyncDelayMs = 50;
const positionPersistIntervalMs = 1000;

test("a write's log fdatasync starts logSyncDelayMs after it while the device's fdatasync hangs", { timeout: 20_000 }, async () => {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(() => clock.nowMs(), (deltaMs) => clock.advance(deltaMs));
  const device = await heldDevice(deviceBytes);
  const logger = await Logger.open({
    storage: new MemStorage(),
    device: device.file,
    sizeBytes: deviceBytes,
    host: 'alpha',
    clock,
    timers,
    start: { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n },
    limits: { logSyncDelayMs, positionPersistIntervalMs },
  });
  const durableSeq = (): bigint => logger.durableLogEnd().nextSeq - 1n;
  await logger.write(0, Buffer.alloc(4096, 1), false);
  timers.advance(logSyncDelayMs);
  await waitFor('the first write durable and written back', () => durableSeq() === 1n && logger.status().shadowBytes === 0, 5_000, 2);

  // The writeback loop persists its position: the device's fdatasync hangs.
  device.hold();
  timers.advance(positionPersistIntervalMs);
  await waitFor("writeback in the device's fdatasync", () => device.syncsWaiting() === 1, 5_000, 2);

  await logger.write(4096, Buffer.alloc(4096, 2), false);
  timers.advance(logSyncDelayMs);
  await waitFor('the second write durable in the log', () => durableSeq() === 2n, 5_000, 2);
  assert.equal(device.syncsWaiting(), 1, "the device's fdatasync still hangs: the log sync did not wait for it");
  assert.ok(logger.status().shadowBytes > 0, 'the second write is not written back while writeback waits for the device');

  device.release();
  await logger.drain();
  assert.equal(logger.status().shadowBytes, 0);
  await logger.close();
});
