/**
 * The dirty mark of a secondary's replay (`dirty-HOST`): replay applies records to the
 * device between checkpoints, so after a crash the device may hold records beyond the
 * persisted replay position. The mark is persisted before replay applies any record
 * beyond it; on restart the copy is no prefix state until replay is back at the mark, and
 * the Replayer says so (`status().dirtyUntil`). Here the records overwrite each other's
 * blocks, so re-applying the first records over the later ones leaves a device that no
 * prefix of the log produces: the test checks that against every prefix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarsError } from '../../src/core/errors.js';
import { MemLogSource, Replayer } from '../../src/fetch/index.js';
import { encodeRecord, formatLogName, recordHeaderBytes, type LogRecord } from '../../src/log/index.js';
import { encodeLog } from './helpers.js';
import { decodeDirtyMark, dirtyMarkFileName, loadDirtyMark, loadPosition, positionFileName, saveDirtyMark, savePosition, type DirtyMark } from '../../src/replay/position.js';
import { systemClock } from '../../src/core/clock.js';
import { systemTimers } from '../../src/core/timers.js';
import { Replica, type ReplicaOptions } from '../../src/daemon/replica.js';
import { Random } from '../../src/core/random.js';
import { saveSyncState } from '../../src/sync/state-file.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 20_000;
const blockBytes = 4096;
const blocks = 10;
const records = 20;
const deviceSizeBytes = blocks * blockBytes;
const logName = formatLogName(1, 'alpha');
const host = 'beta';
const start = { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n };

/** Record `seq` writes block (seq-1) % blocks, filled with seq: records 11..20 overwrite 1..10. */
function record(seq: number): LogRecord {
  return { kind: 'write', seq: BigInt(seq), lamport: BigInt(seq), offsetBytes: ((seq - 1) % blocks) * blockBytes, payload: Buffer.alloc(blockBytes, seq) };
}

/** The log's bytes: records 1..records, and the end offset of each. */
function logBytes(): { bytes: Buffer; ends: number[] } {
  return encodeLog(Array.from({ length: records }, (_, i) => record(i + 1)));
}

/** The device after the first k records, for every k. */
function prefixImages(): Buffer[] {
  const images: Buffer[] = [];
  const image = Buffer.alloc(deviceSizeBytes);
  images.push(Buffer.from(image));
  for (let seq = 1; seq <= records; seq++) {
    const r = record(seq);
    if (r.kind === 'write') r.payload.copy(image, r.offsetBytes);
    images.push(Buffer.from(image));
  }
  return images;
}

function isPrefixState(image: Buffer): boolean {
  return prefixImages().some((p) => p.equals(image));
}

/** Polls until `done` holds, at most `timeoutMs` (the one waitFor, polling every 2 ms). */
/** A replica of r1 on `host` with fetch switched off (its primary unreachable): it replays only what its copies hold. */
function fetchOffReplica(storage: MemStorage, device: StorageFile, primary: string, lines: string[], onChange: () => void = () => undefined): ReplicaOptions {
  return {
    resource: 'r1',
    host,
    storage,
    device,
    sizeBytes: deviceSizeBytes,
    deviceBytes: deviceSizeBytes,
    primary: () => primary,
    dial: () => Promise.reject(new Error(`fetch is off (${primary} unreachable)`)),
    clock: systemClock,
    timers: systemTimers,
    random: new Random(1),
    switches: { fetch: false, replay: true, sync: true },
    log: (_level, msg) => lines.push(msg),
    onChange,
  };
}

function until(done: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  return waitFor(what, done, timeoutMs, 2);
}

/** A source holding the first `bytes` of the log, durable. */
async function sourceWith(log: Buffer, bytes: number): Promise<MemLogSource> {
  const source = new MemLogSource();
  await source.append(logName, log.subarray(0, bytes));
  await source.makeDurable(logName);
  return source;
}

/** One process lifetime of the secondary's replay over `state` (position, mark) and `device`. */
async function replayer(state: MemStorage, device: StorageFile, source: MemLogSource, dirtyAheadBytes: number, readChunkBytes?: number): Promise<Replayer> {
  const position = (await loadPosition(state, host)) ?? start;
  const dirtyMark = await loadDirtyMark(state, host);
  return new Replayer({
    source,
    device,
    deviceSizeBytes,
    start: position,
    persist: (p) => savePosition(state, host, p),
    ...(dirtyMark === undefined ? {} : { dirtyMark }),
    persistDirtyMark: (mark) => state.writeAtomic(dirtyMarkFileName(host), Buffer.from(`${JSON.stringify({ formatVersion: 1, ...mark })}\n`)),
    dirtyAheadBytes,
    ...(readChunkBytes === undefined ? {} : { readChunkBytes }),
  });
}

/**
 * A device file whose sync() never returns while `held` (the checkpoint hangs, so no
 * replay position is persisted), and which checks at every write that the persisted mark
 * already covers the record being written.
 */
async function deviceOver(disk: MemStorage, state: MemStorage, ends: number[]): Promise<{ file: StorageFile; held: { value: boolean }; writes: { value: number } }> {
  const raw = await disk.open('device', 'write');
  const held = { value: false };
  const writes = { value: 0 };
  const checkCovered = (data: Buffer): void => {
    assert.equal(data.length % blockBytes, 0, 'whole records (blocks) are written');
    for (let at = 0; at < data.length; at += blockBytes) {
      const seq = data[at]!; // the payload's fill is its record's seq
      const markBytes = state.image(dirtyMarkFileName(host));
      const mark: DirtyMark | undefined = markBytes === undefined ? undefined : decodeDirtyMark(markBytes, 'mark');
      assert.ok(mark !== undefined && mark.offsetBytes >= ends[seq - 1]!, `record ${seq} written to the device before a mark covered it (mark ${JSON.stringify(mark)})`);
      writes.value++;
    }
  };
  const file: StorageFile = {
    name: raw.name,
    read: (target, position) => raw.read(target, position),
    // Replay may gather records that follow each other on the device into one write: each
    // block of it is one record, and the mark must cover every one of them.
    write: async (data, position) => {
      checkCovered(data);
      await raw.write(data, position);
    },
    writev: async (parts, position) => {
      for (const part of parts) checkCovered(part);
      await raw.write(Buffer.concat(parts), position);
    },
    writeBatch: (jobs) => raw.writeBatch(jobs),
    sync: () => (held.value ? new Promise<void>(() => undefined) : raw.sync()),
    size: () => raw.size(),
    truncate: (lengthBytes) => raw.truncate(lengthBytes),
    close: () => raw.close(),
  };
  return { file, held, writes };
}

async function freshDisk(): Promise<MemStorage> {
  const disk = new MemStorage();
  const f = await disk.open('device', 'create');
  await f.write(Buffer.alloc(deviceSizeBytes), 0);
  await f.sync();
  await f.close();
  await disk.syncDir();
  return disk;
}

/** First life: replay applies all records, its checkpoint hangs in the device's sync; the process dies (nothing more is awaited). */
async function firstLife(state: MemStorage, disk: MemStorage, log: Buffer, ends: number[], dirtyAheadBytes: number): Promise<{ markWrites: number }> {
  await savePosition(state, host, start);
  const device = await deviceOver(disk, state, ends);
  device.held.value = true;
  let markWrites = 0;
  const source = await sourceWith(log, log.length);
  const r = await replayer(state, device.file, source, dirtyAheadBytes);
  const counted = state.writeAtomic.bind(state);
  state.writeAtomic = (name, data) => {
    if (name === dirtyMarkFileName(host)) markWrites++;
    return counted(name, data);
  };
  r.start();
  await until(() => device.writes.value === records || r.status().state === 'failed', 'all records applied in the first life');
  assert.equal(r.status().error, undefined, 'the first life failed');
  state.writeAtomic = counted;
  assert.deepEqual(await loadPosition(state, host), start, 'no checkpoint got through: the persisted position is still the start');
  assert.equal(r.status().dirtyUntil, undefined, 'within one life the device is the applied prefix: consistent');
  return { markWrites };
}

test('after kill -9 past the persisted position, replay is inconsistent until it passes the dirty mark', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const recordBytes = ends[0]!;
  const state = new MemStorage();
  const disk = await freshDisk();
  const aheadRecords = 3;
  const { markWrites } = await firstLife(state, disk, log, ends, aheadRecords * recordBytes);
  // Batched: after the first, one mark per aheadRecords records (each saved while replay is below the one before), not one per record.
  assert.ok(markWrites >= 2 && markWrites <= Math.ceil(records / aheadRecords) + 1, `${markWrites} mark writes for ${records} records`);
  const mark = (await loadDirtyMark(state, host))!;
  assert.equal(mark.offsetBytes, log.length, 'the last mark is capped at the end of the copy');

  // kill -9: the device keeps its page cache, the state files are what was written. The
  // copy holds only the first 4 records at first (the rest is fetched again later).
  const device = await deviceOver(disk, state, ends);
  const source = await sourceWith(log, ends[3]!);
  const r = await replayer(state, device.file, source, aheadRecords * recordBytes);
  assert.deepEqual(r.status().dirtyUntil, mark, 'at restart: inconsistent up to the mark');
  r.start();
  await until(() => r.status().appliedPosition.offsetBytes === ends[3], 'replay of the first 4 records again');
  assert.deepEqual(r.status().dirtyUntil, mark, 'below the mark: still inconsistent');
  assert.equal(isPrefixState(disk.image('device')!), false, 'and truly so: the device is no prefix state (records 1-4 over 11-20)');

  await source.append(logName, log.subarray(ends[3], ends[records - 2]));
  await source.makeDurable(logName);
  await until(() => r.status().appliedPosition.offsetBytes === ends[records - 2], 'replay up to record 19');
  // (Here records 1-19 happen to overwrite every block record 20 is not in; the mark only
  // knows how far the device was written, so it stays conservative up to its end.)
  assert.deepEqual(r.status().dirtyUntil, mark, 'one record short of the mark: still inconsistent');

  await source.append(logName, log.subarray(ends[records - 2]));
  await source.makeDurable(logName);
  await until(() => r.status().dirtyUntil === undefined, 'consistent once replay reaches the mark');
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!), 'the device is the state after every record');
  await r.stop();
  assert.equal((await loadPosition(state, host))?.offsetBytes, log.length);
});

test('after a power loss the lost copy keeps replay inconsistent until the records come again', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const state = new MemStorage();
  const disk = await freshDisk();
  await firstLife(state, disk, log, ends, ends[0]! * 2);
  const mark = (await loadDirtyMark(state, host))!;
  disk.crash(new Random(52)); // unsynced device writes partly lost, partly kept
  state.crash(new Random(53)); // the mark and position files were written atomically and durably: they stay
  assert.deepEqual(await loadDirtyMark(state, host), mark);

  // The local copy lost everything; nothing arrives: the host stays inconsistent.
  const source = new MemLogSource();
  await source.append(logName, Buffer.alloc(0));
  await source.makeDurable(logName);
  const device = await deviceOver(disk, state, ends);
  const r = await replayer(state, device.file, source, ends[0]! * 2);
  r.start();
  await until(() => r.status().state === 'caught-up', 'replay idle on an empty copy');
  assert.deepEqual(r.status().dirtyUntil, mark, 'nothing to replay: inconsistent, and it says up to where');

  await source.append(logName, log);
  await source.makeDurable(logName);
  await until(() => r.status().dirtyUntil === undefined, 'consistent once the records came back and were replayed');
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));
  await r.stop();
});

test('a replayer without a dirty mark at start is consistent at once', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const state = new MemStorage();
  const disk = await freshDisk();
  await savePosition(state, host, start);
  const device = await deviceOver(disk, state, ends);
  const r = await replayer(state, device.file, await sourceWith(log, ends[1]!), 1);
  assert.equal(r.status().dirtyUntil, undefined);
  r.start();
  await until(() => r.status().state === 'caught-up' && r.status().persistedPosition.offsetBytes === ends[1], 'checkpoint after two records');
  assert.equal(r.status().dirtyUntil, undefined);
  assert.equal((await loadDirtyMark(state, host))?.offsetBytes, ends[1], 'the mark was capped at the copy end');
  await r.stop();
});

/** The daemon's replica: `consistent` (is-consistent) follows the mark, and the indicator hears when it clears. */
test('a secondary restarted below its dirty mark is not consistent until replay reaches it, and stays so while its copy lacks the records', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const storage = new MemStorage();
  const disk = await freshDisk();
  const device = await disk.open('device', 'write');
  await savePosition(storage, host, start);
  await saveDirtyMark(storage, host, { logNumber: 1, logHost: 'alpha', offsetBytes: ends[9]! });
  // The copy lost records 6..20 in the power loss, and the primary is gone (fetch is off).
  await storage.writeAtomic(logName, log.subarray(0, ends[4]));
  const lines: string[] = [];
  let changes = 0;
  const options = fetchOffReplica(storage, device, 'alpha', lines, () => changes++);
  const first = await Replica.open(options);
  assert.equal(first.consistent, false);
  assert.equal(first.dirtyUntil?.offsetBytes, ends[9]);
  assert.ok(lines.some((l) => l.includes(`up to 1:${ends[9]!} of alpha`)), lines.join('\n'));
  await first.start();
  await until(() => first.persistedPosition?.offsetBytes === ends[4], 'replay of what the copy holds');
  assert.equal(first.consistent, false, 'replayed all the copy holds, still below the mark');
  assert.equal((await first.status()).consistent, false, 'view says so too');
  await first.stop();

  // The records come back (fetched again from a primary): replay passes the mark.
  await storage.writeAtomic(logName, log);
  const second = await Replica.open(options);
  assert.equal(second.consistent, false);
  const before = changes;
  await second.start();
  await until(() => second.consistent && changes > before, 'consistent, and the indicator told');
  assert.ok(lines.some((l) => l.includes('is consistent again')));
  await second.stop();
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));
});

test('a clean stop in the middle of replay leaves no mark ahead of the saved position: the next start is consistent', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const state = new MemStorage();
  const disk = await freshDisk();
  await savePosition(state, host, start);
  const device = await deviceOver(disk, state, ends);
  // The device stalls at its fifth write until released: the stop comes in the middle.
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const write = device.file.write.bind(device.file);
  device.file.write = async (data, position) => {
    if (device.writes.value === 4) await gate;
    await write(data, position);
  };
  const source = await sourceWith(log, ends[9]!);
  // Replay applies the records of one read chunk as one batch: with chunks of one record
  // header, each read holds one record, so each is a batch (and a write) of its own.
  const r = await replayer(state, device.file, source, log.length, recordHeaderBytes);
  r.start();
  await until(() => device.writes.value === 4, 'four records applied');
  const markBefore = (await loadDirtyMark(state, host))!;
  assert.equal(markBefore.offsetBytes, ends[9], 'the mark runs ahead of replay (to the end of the copy)');
  const stopped = r.stop();
  release();
  await stopped;
  const saved = (await loadPosition(state, host))!;
  assert.ok(saved.offsetBytes < ends[9]!, `stopped in the middle (saved at ${saved.offsetBytes})`);
  const mark = (await loadDirtyMark(state, host))!;
  assert.equal(mark.offsetBytes, saved.offsetBytes, 'the mark is lowered to the saved position');
  assert.ok(isPrefixState(disk.image('device')!));
  const again = await replayer(state, device.file, source, log.length);
  assert.equal(again.status().dirtyUntil, undefined, 'after a clean stop the next start is consistent');
});

test('after primary --force elsewhere cut the mark\'s log shorter, replay stops at that log\'s end: the mark is never passed on another history', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const state = new MemStorage();
  const disk = await freshDisk();
  await firstLife(state, disk, log, ends, log.length);
  const mark = (await loadDirtyMark(state, host))!;
  assert.equal(mark.offsetBytes, log.length);
  // kill -9 (the device keeps records 1..20). The new primary, forced elsewhere, had alpha's
  // log 1 only up to record 5 and goes on in log 2 of its own: record 6 writes block 5.
  const cutBytes = ends[4]!;
  const source = await sourceWith(log, cutBytes);
  await source.complete(logName);
  const forced: LogRecord = { kind: 'write', seq: 6n, lamport: 100n, offsetBytes: 5 * blockBytes, payload: Buffer.alloc(blockBytes, 106) };
  const next = formatLogName(2, 'gamma');
  await source.append(next, encodeRecord(forced, 0));
  await source.makeDurable(next);
  const newHistory = prefixImages().slice(0, 6);
  newHistory.push(Buffer.from(newHistory[5]!));
  forced.payload.copy(newHistory[6]!, forced.offsetBytes);

  const replayed: number[] = [];
  const device = await deviceOver(disk, state, ends);
  const position = (await loadPosition(state, host))!;
  const r = new Replayer({
    source,
    device: device.file,
    deviceSizeBytes,
    start: position,
    persist: (p) => savePosition(state, host, p),
    dirtyMark: mark,
    persistDirtyMark: (m) => saveDirtyMark(state, host, m),
    onLogReplayed: (l) => void replayed.push(l.lengthBytes),
  });
  r.start();
  await until(() => r.status().state === 'failed' || r.status().appliedPosition.logNumber === 2, 'replay at the end of the cut log');
  assert.equal(r.status().error?.code, 'REPLAY_OFF_HISTORY', `replay ${r.status().state} at ${r.status().appliedPosition.logNumber}:${r.status().appliedPosition.offsetBytes}`);
  assert.match(r.status().error?.message ?? '', /ends at \d+.*invalidate/);
  assert.deepEqual(replayed, [cutBytes], 'the log was replayed to its end and said so (the replica\'s phase hears it)');
  assert.deepEqual(r.status().dirtyUntil, mark, 'still below the mark: not consistent');
  assert.equal(r.status().appliedPosition.logNumber, 1, 'the position stays in the mark\'s log, so the next start says it again');
  // And truly so: blocks 5..9 hold alpha's records 16..20, which no state of the new history has.
  const image = disk.image('device')!;
  assert.ok(!newHistory.some((p) => p.equals(image)), 'the device is no state of the new history');
  await r.stop();
  assert.deepEqual(await loadDirtyMark(state, host), mark, 'the mark stays where the crash left it');
});

/** The daemon's replica over the same case: off the history, it says so (not consistent, invalidate), and again at every start. */
test('a secondary whose dirty mark lies beyond where a forced primary cut the mark\'s log is off the history, not consistent, at every start', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const storage = new MemStorage();
  const disk = await freshDisk();
  const device = await disk.open('device', 'write');
  await savePosition(storage, host, start);
  // Before a kill -9 replay wrote the device up to record 10 of alpha's log 1; the forced
  // primary (gamma) had that log only up to record 5 and went on in its own log 2.
  await saveDirtyMark(storage, host, { logNumber: 1, logHost: 'alpha', offsetBytes: ends[9]! });
  await storage.writeAtomic(logName, log.subarray(0, ends[4]));
  const forced: LogRecord = { kind: 'write', seq: 6n, lamport: 100n, offsetBytes: 5 * blockBytes, payload: Buffer.alloc(blockBytes, 106) };
  await storage.writeAtomic(formatLogName(2, 'gamma'), encodeRecord(forced, 0));
  const lines: string[] = [];
  const options = fetchOffReplica(storage, device, 'gamma', lines);
  for (const life of ['first', 'second']) {
    const replica = await Replica.open(options);
    assert.equal(replica.consistent, false, `${life} start: below the mark`);
    await replica.start();
    await until(() => replica.failed !== undefined || replica.consistent, `${life} start: replay at the end of the cut log`);
    assert.equal(replica.consistent, false, `${life} start: replay passed the mark by log number alone`);
    assert.equal(replica.copyPhase.kind, 'off-history');
    assert.match(replica.failed ?? '', /before a crash replay wrote the device up to 1:\d+ of alpha, but log 1 replayed here ends at \d+.*invalidate/);
    // What primary R refuses it for (src/strategy/takeover-consistency.ts): off the history, no dirty mark left to name.
    assert.equal(replica.offHistory, replica.failed);
    assert.equal(replica.dirtyUntil, undefined);
    const status = await replica.status();
    assert.equal(status.consistent, false);
    assert.match(status.replay.error ?? '', /^REPLAY_OFF_HISTORY/);
    assert.equal(replica.needsLog, undefined, 'it holds no log back: only invalidate helps');
    await replica.stop();
    assert.equal((await loadPosition(storage, host))?.logNumber, 1, 'the position stays in the mark\'s log');
  }
});

/**
 * The next mark is saved while replay is still below the current one. A save here takes a
 * few milliseconds and the mark file changes only at its end, so a record applied before
 * the save covering it finished is caught by the device's check at every write.
 */
test('replay saves the next dirty mark while it applies below the current one, and never writes a record before a saved mark covers it', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const state = new MemStorage();
  const disk = await freshDisk();
  await savePosition(state, host, start);
  const device = await deviceOver(disk, state, ends);
  const source = await sourceWith(log, ends[9]!);
  const aheadRecords = 4;
  const r = await replayer(state, device.file, source, aheadRecords * ends[0]!, ends[0]);
  const plain = state.writeAtomic.bind(state);
  const savesAheadOfReplay: number[] = [];
  state.writeAtomic = async (name, data) => {
    if (name === dirtyMarkFileName(host)) {
      const persisted = state.image(name);
      const applied = r.status().appliedPosition.offsetBytes;
      if (persisted !== undefined && applied < decodeDirtyMark(persisted, 'mark').offsetBytes) savesAheadOfReplay.push(applied);
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    return plain(name, data);
  };
  r.start();
  // Half the log is there at start, the rest comes while replay works (one read chunk per record).
  await until(() => r.status().appliedPosition.offsetBytes >= ends[5]! || r.status().state === 'failed', 'replay under way');
  await source.append(logName, log.subarray(ends[9]));
  await source.makeDurable(logName);
  await until(() => r.status().appliedPosition.offsetBytes === log.length || r.status().state === 'failed', 'every record applied');
  assert.equal(r.status().error, undefined);
  assert.equal(device.writes.value, records, 'every record was written once, each checked against the saved mark');
  assert.ok(savesAheadOfReplay.length >= 2, `marks saved while replay was below the saved one: ${savesAheadOfReplay.length}`);
  await r.stop();
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));
});

/**
 * Replay over the whole log, marks four records ahead, where `onSave(name, markSaves)` runs
 * before each save of its state (`markSaves`: the saves of the dirty mark so far, this one
 * counted); it may reject to fail that save.
 */
async function replayWithStateSaves(onSave: (name: string, markSaves: number) => Promise<void>) {
  const { bytes: log, ends } = logBytes();
  const state = new MemStorage();
  const disk = await freshDisk();
  await savePosition(state, host, start);
  const device = await deviceOver(disk, state, ends);
  const source = await sourceWith(log, log.length);
  const r = await replayer(state, device.file, source, 4 * ends[0]!, ends[0]);
  const plain = state.writeAtomic.bind(state);
  let markSaves = 0;
  state.writeAtomic = async (name, data) => {
    if (name === dirtyMarkFileName(host)) markSaves++;
    await onSave(name, markSaves);
    return plain(name, data);
  };
  return { log, ends, state, disk, device, r, markSaves: () => markSaves };
}

/** The same, where `onMarkSave(n)` runs before the n-th save of the dirty mark. */
function replayWithMarkSaves(onMarkSave: (n: number) => Promise<void>) {
  return replayWithStateSaves((name, n) => (name === dirtyMarkFileName(host) ? onMarkSave(n) : Promise.resolve()));
}

test('a dirty mark that cannot be saved stops replay before it writes a record beyond the saved one', { timeout: testTimeoutMs }, async () => {
  const { ends, state, device, r } = await replayWithMarkSaves((n) => (n > 1 ? Promise.reject(new Error('ENOSPC: the state directory is full')) : Promise.resolve()));
  r.start();
  await until(() => r.status().state === 'failed', 'replay stops');
  assert.match(r.status().error?.message ?? '', /ENOSPC/);
  const mark = decodeDirtyMark(state.image(dirtyMarkFileName(host))!, 'mark');
  assert.equal(mark.offsetBytes, ends[4], 'only the first mark was saved');
  assert.equal(device.writes.value, 5, 'the records it covers were written, none beyond it');
  await r.stop();
});

test('an early save of the next mark that fails does not stop replay: the mark is saved again when it is needed', { timeout: testTimeoutMs }, async () => {
  // The second save is the early one: it is still failing (slowly) when replay reaches the first mark.
  const { log, disk, device, r, markSaves } = await replayWithMarkSaves(async (n) => {
    if (n !== 2) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
    throw new Error('ENOSPC: the state directory is full');
  });
  r.start();
  await until(() => r.status().appliedPosition.offsetBytes === log.length || r.status().state === 'failed', 'every record applied');
  assert.equal(r.status().error, undefined);
  assert.ok(markSaves() >= 3, `the mark was saved again after the early save failed: ${markSaves()} saves`);
  assert.equal(device.writes.value, records, 'every record was written once, each checked against the saved mark');
  await r.stop();
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));
});

/** What a full log filesystem makes a save of replay's state throw (fs-storage's ENOSPC). */
function noSpace(name: string): MarsError {
  return new MarsError('ENOSPC', `write ${name}: no space left`);
}

/**
 * Replay over the whole log, marks four records ahead: the first mark fits, then the
 * filesystem is full: while `full.value` holds, every save of its state (position or mark)
 * fails with ENOSPC and is counted in `refused`.
 */
async function replayOnFullFilesystem() {
  const full = { value: false };
  const refused = { value: 0 };
  const replay = await replayWithStateSaves((name, markSaves) => {
    if (name === dirtyMarkFileName(host) && markSaves === 2) full.value = true;
    if (!full.value) return Promise.resolve();
    refused.value++;
    return Promise.reject(noSpace(name));
  });
  return { ...replay, full, refused };
}

test('saves of replay\'s state that find no space pause replay, which tries again and goes on by itself once there is room', { timeout: testTimeoutMs }, async () => {
  const { log, ends, state, disk, device, r, full, refused } = await replayOnFullFilesystem();
  r.start();
  await until(() => r.status().state === 'paused-no-space' || r.status().state === 'failed', 'replay waits for space');
  assert.equal(r.status().error?.code, 'ENOSPC');
  assert.match(r.status().error?.message ?? '', /no space left; retrying in \d+ ms/);
  await until(() => refused.value >= 3 || r.status().state === 'failed', 'replay tries again while the filesystem is full');
  assert.notEqual(r.status().state, 'failed', 'no space is no reason to give up');
  // deviceOver checked every write against the saved mark: nothing beyond the first mark was written.
  assert.equal(device.writes.value, 5, 'replay wrote only what the saved mark covers');
  full.value = false;
  await until(() => r.status().appliedPosition.offsetBytes === log.length || r.status().state === 'failed', 'every record applied once there is room');
  assert.equal(r.status().error, undefined);
  await r.stop();
  assert.deepEqual(await loadPosition(state, host), { logNumber: 1, logHost: 'alpha', offsetBytes: ends[records - 1], nextSeq: BigInt(records + 1) });
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));
});

test('replay waiting for space stops and pauses at once, and resumes where it was', { timeout: testTimeoutMs }, async () => {
  const { log, disk, r, full } = await replayOnFullFilesystem();
  r.start();
  await until(() => r.status().state === 'paused-no-space', 'replay waits for space');
  // A pause cannot save a position (no room): it stops waiting; the saved mark covers what was written.
  await r.pause();
  assert.equal(r.status().state, 'paused');
  full.value = false;
  r.resume();
  await until(() => r.status().appliedPosition.offsetBytes === log.length || r.status().state === 'failed', 'every record applied after resume');
  assert.equal(r.status().error, undefined);
  await r.stop();
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));

  // A stop while the filesystem stays full returns (it would hang if it waited for room).
  const second = await replayOnFullFilesystem();
  second.r.start();
  await until(() => second.r.status().state === 'paused-no-space', 'the second replay waits for space');
  await second.r.stop();
  assert.equal(second.r.status().state, 'stopped');
  assert.equal(second.full.value, true, 'the filesystem was full all along');
});

test('a device fdatasync that fails with ENOSPC fails replay: a failed fdatasync is never tried again', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const state = new MemStorage();
  const disk = await freshDisk();
  await savePosition(state, host, start);
  const device = await deviceOver(disk, state, ends);
  let syncs = 0;
  const failing: StorageFile = {
    ...device.file,
    sync: () => {
      syncs++;
      return Promise.reject(noSpace('device'));
    },
  };
  const r = await replayer(state, failing, await sourceWith(log, log.length), 4 * ends[0]!, ends[0]);
  r.start();
  await until(() => r.status().state === 'failed' || r.status().state === 'paused-no-space', 'the checkpoint fails');
  assert.equal(r.status().state, 'failed');
  assert.equal(r.status().error?.code, 'EIO', 'no "wait for room": a failed fdatasync is an I/O error');
  assert.match(r.status().error?.message ?? '', /fdatasync of the device failed, nothing is replayed until a restart: .*no space left/);
  assert.equal(syncs, 1, 'one fdatasync, not retried');
  await r.stop();
});

test('a version chain that cannot be saved for lack of space holds replay at the log\'s end until there is room', { timeout: testTimeoutMs }, async () => {
  // Log 1 holds records 1..10 and is complete (log 2 follows); log 2 holds records 11..20.
  const { bytes: log, ends } = logBytes();
  const log2Name = formatLogName(2, 'alpha');
  const log2 = encodeLog(Array.from({ length: records - 10 }, (_, i) => record(11 + i))).bytes;
  const source = await sourceWith(log, ends[9]!);
  await source.complete(logName);
  await source.append(log2Name, log2);
  await source.makeDurable(log2Name);
  const state = new MemStorage();
  const disk = await freshDisk();
  const device = await disk.open('device', 'write');
  let full = true;
  let chainSaves = 0;
  const replayed: string[] = [];
  const r = new Replayer({
    source,
    device,
    deviceSizeBytes,
    start,
    persist: (p) => savePosition(state, host, p),
    persistDirtyMark: (mark) => state.writeAtomic(dirtyMarkFileName(host), Buffer.from(`${JSON.stringify({ formatVersion: 1, ...mark })}\n`)),
    onLogReplayed: (l) => {
      chainSaves++;
      if (full) return Promise.reject(noSpace(`versions-${host}`));
      replayed.push(l.name);
      return Promise.resolve();
    },
  });
  r.start();
  await until(() => chainSaves >= 2 || r.status().state === 'failed', 'the chain save is tried again');
  assert.notEqual(r.status().state, 'failed');
  assert.equal(r.status().appliedPosition.logNumber, 1, 'replay does not enter log 2 before the chain is saved');
  full = false;
  await until(() => r.status().appliedPosition.logNumber === 2 && r.status().appliedPosition.offsetBytes === log2.length, 'log 2 replayed once there is room');
  assert.deepEqual(replayed, [logName], 'the chain was extended once, with log 1');
  await r.stop();
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));
});

test('a pause while the checkpoint finds no space is a pause: the saved mark covers the device, and resume saves the position later', { timeout: testTimeoutMs }, async () => {
  let release: ((err?: Error) => void) | undefined;
  let full = true;
  const { log, ends, state, disk, r } = await replayWithStateSaves((name) => {
    if (name !== positionFileName(host) || !full) return Promise.resolve();
    // The position save waits until the test lets it fail, as a slow save on a full filesystem.
    return new Promise<void>((resolve, reject) => (release = (err) => (err === undefined ? resolve() : reject(err))));
  });
  r.start();
  await until(() => release !== undefined || r.status().state === 'failed', 'the checkpoint after catching up saves the position');
  assert.equal(r.status().appliedPosition.offsetBytes, log.length, 'every record applied before the checkpoint');
  const paused = r.pause();
  release!(noSpace(positionFileName(host)));
  await paused; // rejected with ENOSPC before: a pause on a full filesystem failed
  assert.equal(r.status().state, 'paused');
  assert.deepEqual(await loadPosition(state, host), start, 'no position saved: there was no room');
  assert.ok(decodeDirtyMark(state.image(dirtyMarkFileName(host))!, 'mark').offsetBytes >= ends[records - 1]!, 'the saved mark covers every record written');
  full = false;
  r.resume();
  await until(() => r.status().persistedPosition.offsetBytes === log.length || r.status().state === 'failed', 'the position saved after resume');
  assert.equal(r.status().error, undefined);
  await r.stop();
  assert.ok(prefixImages()[records]!.equals(disk.image('device')!));
});

test('the first position save after a finished sync that finds no space waits for room: the replica does not fail for good', { timeout: testTimeoutMs }, async () => {
  const { bytes: log, ends } = logBytes();
  const storage = new MemStorage();
  const disk = await freshDisk();
  const device = await disk.open('device', 'write');
  await storage.writeAtomic(logName, log);
  // A sync that finished (its end saved) just before the log filesystem filled up: no position yet.
  const end = { logNumber: 1, logHost: 'alpha', offsetBytes: ends[records - 1]!, nextSeq: BigInt(records + 1) };
  await saveSyncState(storage, { resource: 'r1', sizeBytes: deviceSizeBytes, nextBytes: deviceSizeBytes, startPosition: start, endPosition: end, sourceHost: 'alpha' });
  let full = true;
  let refused = 0;
  const plain = storage.writeAtomic.bind(storage);
  storage.writeAtomic = (name, data) => {
    if (!full || name !== positionFileName(host)) return plain(name, data);
    refused++;
    return Promise.reject(noSpace(name));
  };
  const lines: string[] = [];
  const replica = await Replica.open(fetchOffReplica(storage, device, 'alpha', lines));
  await replica.start();
  await until(() => refused >= 2, 'the first position save tried again');
  assert.equal(replica.failed, undefined, 'no room is no failure');
  full = false; // the operator frees space
  await until(() => replica.persistedPosition?.offsetBytes === end.offsetBytes && replica.consistent, 'replay to the sync\'s end once there is room');
  assert.equal(replica.failed, undefined, lines.join('\n'));
  assert.ok(lines.some((l) => /no room to save the replay position after the sync/.test(l)), `says so: ${lines.join(' | ')}`);
  await replica.stop();
});

test('a replica says in its log when replay starts and stops waiting for room', { timeout: testTimeoutMs }, async () => {
  const { bytes: log } = logBytes();
  const storage = new MemStorage();
  const disk = await freshDisk();
  const device = await disk.open('device', 'write');
  await storage.writeAtomic(logName, log);
  await savePosition(storage, host, start);
  let full = true;
  const plain = storage.writeAtomic.bind(storage);
  storage.writeAtomic = (name, data) => (full && name === dirtyMarkFileName(host) ? Promise.reject(noSpace(name)) : plain(name, data));
  const lines: string[] = [];
  const replica = await Replica.open(fetchOffReplica(storage, device, 'alpha', lines));
  await replica.start();
  await until(() => lines.some((l) => /replay of r1 waits for room for its state files: write dirty-beta: no space left; retrying in \d+ ms/.test(l)), 'the log says replay waits', 10_000);
  full = false;
  await until(() => lines.some((l) => l === 'replay of r1 has room again'), 'the log says replay goes on', 10_000);
  await until(() => replica.persistedPosition?.offsetBytes === log.length, 'every record replayed', 10_000);
  await replica.stop();
});
