/**
 * When replay has caught up and nothing arrives for idleCheckpointMs, it checkpoints
 * (device fdatasync, then the position). Under load that takes up to a second; records
 * that arrive meanwhile are applied at once, not after it. The position is still saved
 * only after the device's fdatasync. Virtual timers; the device's fdatasync hangs until
 * the test lets it go.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { ManualTimers } from '../../src/core/timers.js';
import { MemLogSource, Replayer } from '../../src/fetch/index.js';
import { encodeRecord, formatLogName } from '../../src/log/index.js';
import { loadPosition, savePosition } from '../../src/replay/position.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { heldDevice } from '../support/held-device.js';
import { waitFor } from '../support/wait.js';

const blockBytes = 4096;
const deviceSizeBytes = 16 * blockBytes;
const idleCheckpointMs = 200;
const logName = formatLogName(1, 'alpha');
const start = { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n };

/** Records first..last, each writing its own block, as log bytes from `fromBytes`. */
function records(first: number, last: number, fromBytes: number): { bytes: Buffer; endBytes: number } {
  const parts: Buffer[] = [];
  let end = fromBytes;
  for (let seq = first; seq <= last; seq++) {
    const encoded = encodeRecord({ kind: 'write', seq: BigInt(seq), lamport: BigInt(seq), offsetBytes: (seq - 1) * blockBytes, payload: Buffer.alloc(blockBytes, seq) }, end);
    parts.push(encoded);
    end += encoded.length;
  }
  return { bytes: Buffer.concat(parts), endBytes: end };
}

test('records that arrive during an idle checkpoint are applied without waiting for its fdatasync', { timeout: 20_000 }, async () => {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(() => clock.nowMs(), (deltaMs) => clock.advance(deltaMs));
  const state = new MemStorage();
  const held = await heldDevice(deviceSizeBytes);
  const device = held.file;
  await savePosition(state, 'beta', start);
  const source = new MemLogSource();
  const first = records(1, 5, 0);
  await source.append(logName, first.bytes);
  await source.makeDurable(logName);
  const replayer = new Replayer({ source, device, deviceSizeBytes, start, persist: (p) => savePosition(state, 'beta', p), idleCheckpointMs, timers });
  replayer.start();
  await waitFor('records 1-5 applied', () => replayer.status().appliedPosition.offsetBytes === first.endBytes || replayer.status().state === 'failed', 5_000, 2);
  assert.equal(replayer.status().error, undefined);

  held.hold();
  await waitFor('the idle timer armed', () => timers.count > 0, 5_000, 2);
  timers.advance(idleCheckpointMs);
  await waitFor("the idle checkpoint in the device's fdatasync", () => held.syncsWaiting() === 1, 5_000, 2);

  const second = records(6, 10, first.endBytes);
  await source.append(logName, second.bytes);
  await source.makeDurable(logName);
  await waitFor('records 6-10 applied while the checkpoint hangs', () => replayer.status().appliedPosition.offsetBytes === second.endBytes, 5_000, 2);
  assert.equal(held.syncsWaiting(), 1, "the checkpoint's fdatasync still hangs");
  assert.deepEqual(await loadPosition(state, 'beta'), start, 'no position is saved before the device is synced');

  held.release();
  await waitFor('the checkpoint saved', async () => (await loadPosition(state, 'beta'))?.offsetBytes === first.endBytes, 5_000, 2);
  await replayer.stop();
  assert.equal((await loadPosition(state, 'beta'))?.offsetBytes, second.endBytes, 'stop saves the rest');
});
