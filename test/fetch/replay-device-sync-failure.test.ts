/**
 * A failed device fdatasync must never be followed by a later fdatasync that "succeeds"
 * (Linux reports a writeback error once, and the pages it could not write may be gone)
 * and a position saved beyond the writes the failed one covered: replay fails instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarsError } from '../../src/core/errors.js';
import { MemLogSource, Replayer, type ReplayerOptions } from '../../src/fetch/index.js';
import { formatLogName } from '../../src/log/index.js';
import { loadPosition, savePosition } from '../../src/replay/position.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import { waitFor } from '../support/wait.js';
import { encodeLog } from './helpers.js';

const blockBytes = 4096;
const records = 5;
const deviceSizeBytes = 16 * blockBytes;
const logName = formatLogName(1, 'alpha');
const start = { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n };

/**
 * Replay of five records onto a device whose first fdatasync fails with EIO and whose
 * later ones "succeed"; `options` choose when the first checkpoint comes. Returns once
 * every record is applied.
 */
async function replayOntoFailingSync(options: Pick<ReplayerOptions, 'checkpointBytes' | 'idleCheckpointMs'>) {
  const state = new MemStorage();
  await savePosition(state, 'beta', start);
  const log = encodeLog(Array.from({ length: records }, (_, i) => ({ kind: 'write', seq: BigInt(i + 1), lamport: BigInt(i + 1), offsetBytes: i * blockBytes, payload: Buffer.alloc(blockBytes, i + 1) })));
  const source = new MemLogSource();
  await source.append(logName, log.bytes);
  await source.makeDurable(logName);
  const raw = await new MemStorage().open('device', 'create');
  await raw.write(Buffer.alloc(deviceSizeBytes), 0);
  const syncs = { value: 0 };
  const device: StorageFile = {
    ...raw,
    name: raw.name,
    read: (t, p) => raw.read(t, p),
    write: (d, p) => raw.write(d, p),
    sync: () => (++syncs.value === 1 ? Promise.reject(new MarsError('EIO', 'fdatasync device: I/O error')) : raw.sync()),
    close: () => raw.close(),
  };
  const r = new Replayer({ source, device, deviceSizeBytes, start, persist: (p) => savePosition(state, 'beta', p), ...options });
  r.start();
  await waitFor('all applied', () => r.status().appliedPosition.offsetBytes === log.ends.at(-1), 5_000, 2);
  return { r, syncs, saved: () => loadPosition(state, 'beta') };
}

test('a pause whose checkpoint fdatasync fails fails replay: resume does not fdatasync again, and no position is saved', { timeout: 20_000 }, async () => {
  // No idle checkpoint (a long one), so the first fdatasync is the pause's.
  const { r, syncs, saved } = await replayOntoFailingSync({ idleCheckpointMs: 3_600_000 });
  await assert.rejects(r.pause(), /I\/O error/);
  assert.equal(r.status().state, 'failed', 'a pause whose fdatasync failed fails replay');
  assert.match(r.status().error?.message ?? '', /fdatasync of the device failed/);
  r.resume(); // from failed: nothing
  assert.equal(r.status().state, 'failed');
  await r.stop();
  assert.equal(syncs.value, 1, 'no second fdatasync');
  assert.deepEqual(await saved(), start, 'no position saved after the failed fdatasync');
});

test('after a background checkpoint whose fdatasync failed, no later checkpoint fdatasyncs again or saves a position', { timeout: 20_000 }, async () => {
  // checkpointBytes 1: the batch starts an automatic background checkpoint (whose fdatasync
  // fails); then replay is caught up and, after idleCheckpointMs, would start its own.
  const { r, syncs, saved } = await replayOntoFailingSync({ checkpointBytes: 1, idleCheckpointMs: 50 });
  await waitFor('the failed fdatasync to be met', () => r.status().state === 'failed' || syncs.value >= 2, 5_000, 2);
  const status = r.status();
  await r.stop();
  assert.equal(status.state, 'failed', `replay is ${status.state} after a failed fdatasync (${syncs.value} fdatasyncs)`);
  assert.equal(syncs.value, 1, 'no second fdatasync');
  assert.deepEqual(await saved(), start, 'no position saved after the failed fdatasync');
});
