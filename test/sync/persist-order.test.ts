/**
 * The order of the target's persists: a state file that claims copied bytes is written
 * only after a device fdatasync that follows every write it claims; the start position of
 * a fresh copy claims nothing, so it is written without a device fdatasync (on a busy
 * disk that fdatasync stood between ACCEPT and the first request).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarsError } from '../../src/core/errors.js';
import { heldTimers } from '../../src/core/timers.js';
import { Random } from '../../src/core/random.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { Storage, StorageFile } from '../../src/storage/storage.js';
import { SyncSourceSession, SyncTarget, syncStateFileName } from '../../src/sync/index.js';
import { decodeSyncState } from '../../src/sync/state-file.js';
import { syncNoSpaceRetryMsMax } from '../../src/sync/limits.js';
import { deviceWith, MemLink, mib, sourceResource } from './helpers.js';
import { waitFor } from '../support/wait.js';

type Event = { kind: 'write'; endBytes: number } | { kind: 'sync' } | { kind: 'state'; nextBytes: number };

/** The target's device and storage, recording device writes, device syncs and state-file writes in order. */
function recorded(device: StorageFile, storage: MemStorage, events: Event[]): { device: StorageFile; storage: Storage } {
  const wrapped = Object.create(device) as StorageFile;
  Object.assign(wrapped, {
    write: async (data: Buffer, position: number) => {
      await device.write(data, position);
      events.push({ kind: 'write', endBytes: position + data.length });
    },
    writeBatch: async (jobs: Parameters<StorageFile['writeBatch']>[0]) => {
      await device.writeBatch(jobs);
      for (const job of jobs) events.push({ kind: 'write', endBytes: job.positionBytes + ('data' in job ? job.data.length : job.zeroBytes) });
    },
    sync: async () => {
      events.push({ kind: 'sync' });
      await device.sync();
    },
  });
  const gated: Storage = {
    open: (name, mode) => storage.open(name, mode),
    readAll: (name) => storage.readAll(name),
    list: () => storage.list(),
    exists: (name) => storage.exists(name),
    remove: (name) => storage.remove(name),
    syncDir: () => storage.syncDir(),
    writeAtomic: async (name, data) => {
      if (name === syncStateFileName) events.push({ kind: 'state', nextBytes: decodeSyncState(data, name).nextBytes });
      await storage.writeAtomic(name, data);
    },
  };
  return { device: wrapped, storage: gated };
}

void test('the start position of a fresh copy is persisted without a device fdatasync; every later claim only after one that follows the writes it claims', async () => {
  const sizeBytes = 24 * mib;
  const sourceImage = new Random(5).bytes(sizeBytes);
  const targetStorage = new MemStorage();
  const events: Event[] = [];
  const rec = recorded(await deviceWith(targetStorage, 'device', new Random(6).bytes(sizeBytes)), targetStorage, events);
  // A persist every 4 MiB, so that claims in the middle of the copy are checked too.
  const target = await SyncTarget.open({ resource: 'r0', device: rec.device, storage: rec.storage, persistBytes: 4 * mib });
  const [sourceEnd, targetEnd] = MemLink.pair();
  const sourceDevice = await deviceWith(new MemStorage(), 'device', sourceImage);
  SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(sourceDevice, sizeBytes), digestSeed: () => 9n });
  target.attach(targetEnd);
  await target.whenDone();
  assert.ok(targetStorage.image('device')!.equals(sourceImage), 'target equals source');
  const states = events.filter((e): e is Extract<Event, { kind: 'state' }> => e.kind === 'state');
  assert.ok(states.length >= 3, `the start, claims in the middle and the end (${states.length} state writes)`);
  const first = events.findIndex((e) => e.kind === 'state');
  assert.deepEqual(events[first], { kind: 'state', nextBytes: 0 }, 'the first state file is the start position, claiming nothing');
  assert.equal(events.slice(0, first).filter((e) => e.kind === 'sync').length, 0, 'no device fdatasync before it');
  for (const [i, e] of events.entries()) {
    if (e.kind !== 'state' || e.nextBytes === 0) continue;
    const lastSync = events.slice(0, i).map((x) => x.kind).lastIndexOf('sync');
    assert.ok(lastSync >= 0, `a claim of ${e.nextBytes} bytes with no device fdatasync before it`);
    const claimedAfterSync = events.slice(lastSync, i).filter((x) => x.kind === 'write' && x.endBytes <= e.nextBytes);
    assert.deepEqual(claimedAfterSync, [], `a claim of ${e.nextBytes} bytes covers a write after the last device fdatasync`);
  }
  await target.close();
});

void test('a state file that finds no space does not fail the sync: the copy goes on, says why, and its start and end are saved once there is room', async () => {
  const sizeBytes = 12 * mib;
  const sourceImage = new Random(7).bytes(sizeBytes);
  const targetStorage = new MemStorage();
  const events: Event[] = [];
  const rec = recorded(await deviceWith(targetStorage, 'device', new Random(8).bytes(sizeBytes)), targetStorage, events);
  // The filesystem is full until the test frees it: every save of the state file fails with ENOSPC.
  let full = true;
  let refused = 0;
  const save = rec.storage.writeAtomic.bind(rec.storage);
  rec.storage.writeAtomic = (name, data) => {
    if (name !== syncStateFileName || !full) return save(name, data);
    refused++;
    return Promise.reject(new MarsError('ENOSPC', `write ${name}: no space left`));
  };
  // Held timers: the retry's wait keeps this process alive (marsd has its listeners for that).
  const target = await SyncTarget.open({ resource: 'r0', device: rec.device, storage: rec.storage, persistBytes: 4 * mib, timers: heldTimers });
  const [sourceEnd, targetEnd] = MemLink.pair();
  const sourceDevice = await deviceWith(new MemStorage(), 'device', sourceImage);
  SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(sourceDevice, sizeBytes), digestSeed: () => 9n });
  target.attach(targetEnd);
  await waitFor('the start save tried again', () => refused >= 3 || target.progress().state === 'failed', 10_000, 2);
  assert.notEqual(target.progress().state, 'failed', 'no space is no reason to fail the sync');
  assert.match(target.progress().lastError?.message ?? '', /no space left: the sync goes on and saves its progress once there is room/);
  assert.equal(events.filter((e) => e.kind === 'write').length, 0, 'no block is written before the start position is saved');
  full = false;
  await target.whenDone();
  assert.ok(targetStorage.image('device')!.equals(sourceImage), 'target equals source');
  const saved = decodeSyncState(targetStorage.image(syncStateFileName)!, syncStateFileName);
  assert.equal(saved.nextBytes, sizeBytes);
  assert.notEqual(saved.endPosition, undefined, 'the end position is saved');
  assert.equal(target.progress().lastError, undefined, 'the error goes once a save lands');
  await target.close();
});

void test('a sync target closed while its start save waits for room writes nothing and announces nothing after close()', async () => {
  const sizeBytes = 4 * mib;
  const storage = new MemStorage();
  const device = await deviceWith(storage, 'device', new Random(8).bytes(sizeBytes));
  let full = true;
  let refused = 0;
  let closed = false;
  const writesAfterClose: string[] = [];
  const save = storage.writeAtomic.bind(storage);
  storage.writeAtomic = (name, data) => {
    if (closed) writesAfterClose.push(name);
    if (name !== syncStateFileName || !full) return save(name, data);
    refused++;
    return Promise.reject(new MarsError('ENOSPC', `write ${name}: no space left`));
  };
  let startsAfterClose = 0;
  const target = await SyncTarget.open({ resource: 'r0', device, storage, persistBytes: mib, timers: heldTimers, onStartPosition: () => (startsAfterClose += closed ? 1 : 0) });
  const [sourceEnd, targetEnd] = MemLink.pair();
  const sourceDevice = await deviceWith(new MemStorage(), 'device', new Random(7).bytes(sizeBytes));
  SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(sourceDevice, sizeBytes), digestSeed: () => 9n });
  target.attach(targetEnd);
  await waitFor('the start save refused twice', () => refused >= 2, 10_000, 2);
  await target.close();
  closed = true;
  full = false; // the operator frees space; after an invalidate the next target owns the file
  // Longer than the longest wait between two tries: a retry still armed would have written by then.
  await new Promise((resolve) => setTimeout(resolve, syncNoSpaceRetryMsMax + 500));
  assert.equal(startsAfterClose, 0, 'onStartPosition called after close()');
  assert.deepEqual(writesAfterClose, [], 'the closed target wrote its state file after close()');
});

void test('while the state file finds no space, the progress saves (each a device fdatasync) come once per interval, not once per range', async () => {
  const run = async (fullAfterStart: boolean): Promise<{ syncs: number; refused: number }> => {
    const sizeBytes = 32 * mib;
    const storage = new MemStorage();
    const raw = await deviceWith(storage, 'device', new Random(8).bytes(sizeBytes));
    let syncs = 0;
    const device = Object.create(raw) as StorageFile;
    Object.assign(device, {
      sync: async () => {
        syncs++;
        await raw.sync();
      },
    });
    let saves = 0;
    let refused = 0;
    let copied = false;
    const save = storage.writeAtomic.bind(storage);
    storage.writeAtomic = (name, data) => {
      // The start fits; then no room until every range is copied (the end save gets through).
      if (name === syncStateFileName && fullAfterStart && ++saves > 1 && !copied) {
        refused++;
        return Promise.reject(new MarsError('ENOSPC', `write ${name}: no space left`));
      }
      return save(name, data);
    };
    const target = await SyncTarget.open({ resource: 'r0', device, storage, persistBytes: 8 * mib, timers: heldTimers, onStateChange: () => undefined });
    const [sourceEnd, targetEnd] = MemLink.pair();
    const sourceDevice = await deviceWith(new MemStorage(), 'device', new Random(7).bytes(sizeBytes));
    SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(sourceDevice, sizeBytes), digestSeed: () => 9n });
    target.attach(targetEnd);
    const watch = setInterval(() => (copied ||= target.progress().doneBytes === sizeBytes), 1);
    await target.whenDone();
    clearInterval(watch);
    await target.close();
    return { syncs, refused };
  };
  const normal = await run(false);
  const full = await run(true);
  assert.ok(full.refused >= 1, 'the state file found no space');
  assert.ok(full.syncs <= normal.syncs * 2, `device fdatasyncs: ${normal.syncs} with room, ${full.syncs} while the state file finds no space (${full.refused} refused saves)`);
});

void test('a start save that waits for room while the source changes (a new primary): only the start the sync goes on with is announced', async () => {
  const sizeBytes = 4 * mib;
  const storage = new MemStorage();
  const device = await deviceWith(storage, 'device', new Random(8).bytes(sizeBytes));
  let full = true;
  let refused = 0;
  const save = storage.writeAtomic.bind(storage);
  storage.writeAtomic = (name, data) => {
    if (name !== syncStateFileName || !full) return save(name, data);
    refused++;
    return Promise.reject(new MarsError('ENOSPC', `write ${name}: no space left`));
  };
  const starts: string[] = [];
  const target = await SyncTarget.open({ resource: 'r0', device, storage, persistBytes: mib, timers: heldTimers, onStartPosition: (p) => starts.push(`${p.logNumber}:${p.logHost}`) });
  const linkTo = (peer: string): [MemLink, MemLink] => {
    const source = new MemLink('beta');
    const toSource = new MemLink(peer);
    source.other = toSource;
    toSource.other = source;
    return [source, toSource];
  };
  const image = new Random(7).bytes(sizeBytes);
  const first = sourceResource(await deviceWith(new MemStorage(), 'device', image), sizeBytes);
  const [s1, t1] = linkTo('alpha');
  SyncSourceSession.serve(s1, { resolve: () => first, digestSeed: () => 9n });
  target.attach(t1);
  await waitFor('the first start save refused', () => refused >= 2, 10_000, 2);
  t1.close(); // the old primary goes away; gamma is the primary now, at a later log
  await waitFor('the target to see the link gone', () => target.progress().state === 'source-unreachable', 10_000, 2);
  const newStart = { logNumber: first.startPosition().logNumber + 5, logHost: 'gamma', offsetBytes: 0, nextSeq: first.startPosition().nextSeq + 100n };
  const second = { ...sourceResource(await deviceWith(new MemStorage(), 'device', image), sizeBytes), startPosition: () => newStart };
  const [s2, t2] = linkTo('gamma');
  SyncSourceSession.serve(s2, { resolve: () => second, digestSeed: () => 9n });
  const before = refused;
  target.attach(t2);
  await waitFor('the new start save refused too', () => refused > before, 10_000, 2);
  full = false;
  await target.whenDone();
  // Longer than the longest wait between two tries of the first start's save.
  await new Promise((resolve) => setTimeout(resolve, syncNoSpaceRetryMsMax + 500));
  await target.close();
  assert.deepEqual(starts, [`${newStart.logNumber}:gamma`], 'a start the sync no longer has was announced');
});
