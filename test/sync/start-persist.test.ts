/**
 * The target persists its start position while the first ranges already move (not before
 * them): what must hold is that fetch learns the start position only once it is durable,
 * that no state file claims copied bytes without it, and that a crash before it is durable
 * leaves a sync that starts afresh and finishes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { Storage } from '../../src/storage/storage.js';
import type { ReplayPosition } from '../../src/replay/position.js';
import { loadSyncState, SyncSourceSession, SyncTarget, syncStateFileName } from '../../src/sync/index.js';
import { deviceWith, MemLink, mib, sourceResource, startPosition } from './helpers.js';
import { waitFor } from '../support/wait.js';

/** The storage with its atomic file writes (the sync state file) held until `release()`. */
function heldWrites(storage: MemStorage): { storage: Storage; release: () => void; held: () => number } {
  let waiters: (() => void)[] | undefined = [];
  let held = 0;
  const gated: Storage = {
    open: (name, mode) => storage.open(name, mode),
    readAll: (name) => storage.readAll(name),
    list: () => storage.list(),
    exists: (name) => storage.exists(name),
    remove: (name) => storage.remove(name),
    syncDir: () => storage.syncDir(),
    writeAtomic: async (name, data) => {
      if (waiters !== undefined) {
        held++;
        await new Promise<void>((resolve) => waiters!.push(resolve));
      }
      await storage.writeAtomic(name, data);
    },
  };
  return {
    storage: gated,
    release: () => {
      const w = waiters ?? [];
      waiters = undefined;
      for (const resolve of w) resolve();
    },
    held: () => held,
  };
}

async function rig(seed: number, sizeBytes: number) {
  const sourceImage = new Random(seed).bytes(sizeBytes);
  const sourceStorage = new MemStorage();
  const targetStorage = new MemStorage();
  const sourceDevice = await deviceWith(sourceStorage, 'device', sourceImage);
  const targetDevice = await deviceWith(targetStorage, 'device', new Random(seed + 1).bytes(sizeBytes));
  const gate = heldWrites(targetStorage);
  const started: ReplayPosition[] = [];
  const target = await SyncTarget.open({ resource: 'r0', device: targetDevice, storage: gate.storage, onStartPosition: (p) => started.push(p) });
  const [sourceEnd, targetEnd] = MemLink.pair();
  SyncSourceSession.serve(sourceEnd, { resolve: (name) => (name === 'r0' ? sourceResource(sourceDevice, sizeBytes) : undefined), digestSeed: () => 7n });
  return { sourceImage, targetStorage, gate, started, target, targetEnd };
}

void test('the first ranges are copied while the start position is being persisted, and fetch learns it only once it is durable', async () => {
  const r = await rig(11, 8 * mib);
  try {
    r.target.attach(r.targetEnd);
    await waitFor('the start position persist begins', () => r.gate.held() === 1, 10_000, 1);
    await waitFor('ranges written before the start position is durable', () => r.target.progress().doneBytes >= 2 * mib, 10_000, 1);
    assert.equal(r.started.length, 0, 'fetch must not start from a start position that is not durable');
    assert.equal(await loadSyncState(r.targetStorage), undefined, 'no state file yet');
    r.gate.release();
    await r.target.whenDone();
    assert.deepEqual(r.started, [startPosition]);
    assert.ok(r.targetStorage.image('device')!.equals(r.sourceImage), 'target equals source');
    const state = await loadSyncState(r.targetStorage);
    assert.ok(state !== undefined, 'a state file');
    assert.deepEqual(state.startPosition, startPosition);
    assert.equal(state.nextBytes, 8 * mib);
  } finally {
    r.gate.release();
    await r.target.close();
  }
});

void test('a crash before the start position is durable leaves no state file: the restarted sync starts afresh and finishes', async () => {
  const r = await rig(21, 8 * mib);
  try {
    r.target.attach(r.targetEnd);
    await waitFor('ranges written before the start position is durable', () => r.target.progress().doneBytes >= 2 * mib, 10_000, 1);
    r.targetStorage.crash(new Random(22));
    r.targetEnd.close();
    assert.equal(await r.targetStorage.exists(syncStateFileName), false, 'nothing claims the copied bytes');
    const device = await r.targetStorage.open('device', 'write');
    const again = await SyncTarget.open({ resource: 'r0', device, storage: r.targetStorage });
    assert.equal(again.progress().doneBytes, 0, 'starts afresh');
    const [sourceEnd, targetEnd] = MemLink.pair();
    const sourceDevice = await deviceWith(new MemStorage(), 'device', r.sourceImage);
    SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(sourceDevice, r.sourceImage.length), digestSeed: () => 8n });
    again.attach(targetEnd);
    await again.whenDone();
    assert.ok(r.targetStorage.image('device')!.equals(r.sourceImage), 'target equals source');
    assert.deepEqual((await loadSyncState(r.targetStorage))?.startPosition, startPosition);
    await again.close();
  } finally {
    r.gate.release();
    await r.target.close();
  }
});
