/**
 * A failed device fdatasync must never be followed by a later fdatasync that
 * "succeeds" and a position saved beyond the writes the failed one covered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarsError } from '../../src/core/errors.js';
import { MemLogSource, Replayer } from '../../src/fetch/index.js';
import { encodeRecord, formatLogName } from '../../src/log/index.js';
import { loadPosition, savePosition } from '../../src/replay/position.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import { waitFor } from '../support/wait.js';

const blockBytes = 4096;
const deviceSizeBytes = 16 * blockBytes;
const logName = formatLogName(1, 'alpha');
const start = { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n };

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

/** A device whose first fdatasync fails with EIO (the kernel may have dropped the writes); later ones "succeed". */
async function firstSyncFails(): Promise<{ file: StorageFile; syncs: { value: number } }> {
  const disk = new MemStorage();
  const raw = await disk.open('device', 'create');
  await raw.write(Buffer.alloc(deviceSizeBytes), 0);
  const syncs = { value: 0 };
  const file: StorageFile = {
    ...raw,
    name: raw.name,
    read: (t, p) => raw.read(t, p),
    write: (d, p) => raw.write(d, p),
    ...(raw.writev === undefined ? {} : { writev: (parts: readonly Buffer[], p: number) => raw.writev!(parts, p) }),
    sync: () => {
      syncs.value++;
      return syncs.value === 1 ? Promise.reject(new MarsError('EIO', 'fdatasync device: I/O error')) : raw.sync();
    },
    close: () => raw.close(),
  };
  return { file, syncs };
}

test('a pause whose checkpoint fdatasync fails fails replay: resume does not fdatasync again, and no position is saved', { timeout: 20_000 }, async () => {
  const state = new MemStorage();
  await savePosition(state, 'beta', start);
  const source = new MemLogSource();
  const recs = records(1, 5, 0);
  await source.append(logName, recs.bytes);
  await source.makeDurable(logName);
  const { file, syncs } = await firstSyncFails();
  // No idle checkpoint (a long one), so the first fdatasync is the pause's.
  const r = new Replayer({ source, device: file, deviceSizeBytes, start, persist: (p) => savePosition(state, 'beta', p), idleCheckpointMs: 3_600_000 });
  r.start();
  await waitFor('all applied', () => r.status().appliedPosition.offsetBytes === recs.endBytes, 5_000, 2);
  await assert.rejects(r.pause(), /I\/O error/);
  assert.equal(syncs.value, 1);
  assert.equal(r.status().state, 'failed', 'a pause whose fdatasync failed fails replay');
  assert.match(r.status().error?.message ?? '', /fdatasync of the device failed/);
  r.resume(); // from failed: nothing
  assert.equal(r.status().state, 'failed');
  await r.stop();
  assert.equal(syncs.value, 1, 'no second fdatasync');
  assert.deepEqual(await loadPosition(state, 'beta'), start, 'no position saved after the failed fdatasync');
});

test('after a background checkpoint whose fdatasync failed, no later checkpoint fdatasyncs again or saves a position', { timeout: 20_000 }, async () => {
  const state = new MemStorage();
  await savePosition(state, 'beta', start);
  const source = new MemLogSource();
  const recs = records(1, 5, 0);
  await source.append(logName, recs.bytes);
  await source.makeDurable(logName);
  const { file, syncs } = await firstSyncFails();
  // checkpointBytes 1: the batch starts an automatic background checkpoint (whose fdatasync fails);
  // then replay is caught up and, after idleCheckpointMs, starts its own checkpoint.
  const r = new Replayer({ source, device: file, deviceSizeBytes, start, persist: (p) => savePosition(state, 'beta', p), checkpointBytes: 1, idleCheckpointMs: 50 });
  r.start();
  await waitFor('all applied', () => r.status().appliedPosition.offsetBytes === recs.endBytes, 5_000, 2);
  await waitFor('the failed fdatasync to be met', () => r.status().state === 'failed' || syncs.value >= 2, 5_000, 2);
  const status = r.status();
  await r.stop();
  assert.equal(status.state, 'failed', `replay is ${status.state} after a failed fdatasync (${syncs.value} fdatasyncs)`);
  assert.equal(syncs.value, 1, 'no second fdatasync');
  assert.deepEqual(await loadPosition(state, 'beta'), start, 'no position saved after the failed fdatasync');
});
