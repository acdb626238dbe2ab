/**
 * The target makes its start position durable while the first ranges are asked for and
 * travel, not before it asks: what must hold is that no range is written to the device
 * before the start position is durable (so nothing on the device is unaccounted for by a
 * state file), that fetch learns the start position only once it is durable, and that a
 * crash before then leaves a sync that starts afresh and finishes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { Storage, StorageFile } from '../../src/storage/storage.js';
import type { ReplayPosition } from '../../src/replay/position.js';
import { loadSyncState, SyncSourceSession, SyncTarget, syncStateFileName } from '../../src/sync/index.js';
import { deviceWith, MemLink, mib, sourceResource, startPosition } from './helpers.js';
import { waitFor } from '../support/wait.js';

/** The storage with its atomic file writes (the sync state file) held until `release()`. */
function heldWrites(storage: MemStorage): { storage: Storage; release: () => void; held: () => number; holding: () => boolean } {
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
  } as Storage;
  return {
    storage: gated,
    release: () => {
      const w = waiters ?? [];
      waiters = undefined;
      for (const resolve of w) resolve();
    },
    held: () => held,
    holding: () => waiters !== undefined,
  };
}

/** The device with every write checked, as it starts, against `allowed()`; a write that is not allowed is counted. */
function checkedDevice(device: StorageFile, allowed: () => boolean): { device: StorageFile; forbidden: () => number } {
  let forbidden = 0;
  const check = (): void => {
    if (!allowed()) forbidden++;
  };
  const wrapped = Object.create(device) as StorageFile;
  Object.assign(wrapped, {
    write: (data: Buffer, position: number) => (check(), device.write(data, position)),
    writeBatch: (jobs: Parameters<StorageFile['writeBatch']>[0]) => (check(), device.writeBatch(jobs)),
  });
  return { device: wrapped, forbidden: () => forbidden };
}

async function rig(seed: number, sizeBytes: number) {
  const sourceImage = new Random(seed).bytes(sizeBytes);
  const targetImage = new Random(seed + 1).bytes(sizeBytes);
  const sourceStorage = new MemStorage();
  const targetStorage = new MemStorage();
  const sourceDevice = await deviceWith(sourceStorage, 'device', sourceImage);
  const gate = heldWrites(targetStorage);
  const checked = checkedDevice(await deviceWith(targetStorage, 'device', targetImage), () => !gate.holding());
  const started: ReplayPosition[] = [];
  const target = await SyncTarget.open({ resource: 'r0', device: checked.device, storage: gate.storage, onStartPosition: (p) => started.push(p) });
  const [sourceEnd, targetEnd] = MemLink.pair();
  const sessions: SyncSourceSession[] = [];
  SyncSourceSession.serve(sourceEnd, {
    resolve: (name) => (name === 'r0' ? sourceResource(sourceDevice, sizeBytes) : undefined),
    digestSeed: () => 7n,
    onEnd: (s) => sessions.push(s),
  });
  return { sourceImage, targetImage, targetStorage, gate, checked, started, target, targetEnd, sourceEnd };
}

void test('ranges are asked for and arrive while the start position is persisted, none is written before it is durable, and fetch learns it only then', async () => {
  const r = await rig(11, 8 * mib);
  try {
    r.target.attach(r.targetEnd);
    await waitFor('the start position persist begins', () => r.gate.held() === 1, 10_000, 1);
    // The source answers ranges while the state file is held: they are asked for at once.
    await waitFor('ranges asked for before the start position is durable', () => r.target.progress().rangesCompared + r.target.progress().rangesCopied >= 4, 10_000, 1);
    await waitFor('answers arrive before the start position is durable', () => r.target.progress().dataBytes >= 2 * mib, 10_000, 1);
    assert.equal(r.checked.forbidden(), 0, 'no device write before the start position is durable');
    assert.equal(r.target.progress().doneBytes, 0, 'nothing counts as copied yet');
    assert.ok(r.targetStorage.image('device')!.equals(r.targetImage), 'the device is as it was');
    assert.equal(r.started.length, 0, 'fetch must not start from a start position that is not durable');
    assert.equal(await loadSyncState(r.targetStorage), undefined, 'no state file yet');
    r.gate.release();
    await r.target.whenDone();
    assert.equal(r.checked.forbidden(), 0);
    assert.deepEqual(r.started, [startPosition]);
    assert.ok(r.targetStorage.image('device')!.equals(r.sourceImage), 'target equals source');
    const state = await loadSyncState(r.targetStorage);
    assert.deepEqual(state?.startPosition, startPosition);
    assert.equal(state?.nextBytes, 8 * mib);
  } finally {
    r.gate.release();
    await r.target.close();
  }
});

void test('a crash before the start position is durable leaves the device and no state file: the restarted sync starts afresh and finishes', async () => {
  const r = await rig(21, 8 * mib);
  try {
    r.target.attach(r.targetEnd);
    await waitFor('answers arrive before the start position is durable', () => r.target.progress().dataBytes >= 2 * mib, 10_000, 1);
    r.targetStorage.crash(new Random(22));
    r.targetEnd.close();
    assert.equal(await r.targetStorage.exists(syncStateFileName), false, 'nothing claims copied bytes');
    assert.ok(r.targetStorage.image('device')!.equals(r.targetImage), 'the device is as it was');
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
