import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { FsStorage } from '../../src/storage/fs-storage.js';
import type { Storage } from '../../src/storage/storage.js';
import { formatLogName } from '../../src/log/names.js';
import { recordHeaderBytes, type LogEntry } from '../../src/log/record.js';
import { LogWriter, type LogPosition, type LogRotateEvent, type LogWriterOptions } from '../../src/log/writer.js';
import { CountingStorage, entryKey, scanFile, scanStream, settle } from './helpers.js';

const host = 'alpha';
const log1 = formatLogName(1, host);

function options(overrides: Partial<LogWriterOptions> = {}): LogWriterOptions {
  return { host, logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 30, ...overrides };
}

function write(i: number, payloadBytes = 16): LogEntry {
  return { kind: 'write', lamport: BigInt(1000 + i), offsetBytes: i * 4096, payload: Buffer.alloc(payloadBytes, i & 0xff) };
}

async function allEntries(storage: Storage): Promise<string[]> {
  const files = await scanStream(storage);
  return files.flatMap((f) => f.entries.map((e) => entryKey(e.record)));
}

void test('appends resolve in order with consecutive seqs and positions', async () => {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, options());
  const entries = Array.from({ length: 50 }, (_, i) => (i % 3 === 0 ? { kind: 'trim' as const, lamport: 5n, offsetBytes: i, lengthBytes: 512 } : write(i, i)));
  const order: number[] = [];
  const positions = await Promise.all(entries.map((e, i) => writer.append(e).then((p) => (order.push(i), p))));
  assert.deepEqual(order, entries.map((_, i) => i));
  let at = 0;
  positions.forEach((p, i) => {
    assert.equal(p.seq, BigInt(i + 1));
    assert.equal(p.logNumber, 1);
    assert.equal(p.offsetBytes, at);
    at = p.endOffsetBytes;
  });
  assert.deepEqual(writer.position(), { logNumber: 1, endOffsetBytes: at, nextSeq: 51n });
  await writer.close();
  assert.deepEqual(await allEntries(storage), entries.map(entryKey));
});

void test('appends that arrive during a write go out together in one pwrite', async () => {
  const storage = new CountingStorage(new MemStorage());
  const writer = await LogWriter.open(storage, options());
  await Promise.all(Array.from({ length: 100 }, (_, i) => writer.append(write(i))));
  // The first append starts a write alone; the other 99 arrive while it is in flight.
  assert.equal(storage.writes, 2);
  assert.deepEqual(storage.writeSizesBytes, [recordHeaderBytes + 16, 99 * (recordHeaderBytes + 16)]);
  await writer.close();
});

void test('a batch never exceeds batchBytesMax unless it is a single record', async () => {
  const storage = new CountingStorage(new MemStorage());
  const batchBytesMax = 1000;
  const writer = await LogWriter.open(storage, options({ batchBytesMax }));
  const sizes = [10, 500, 900, 5000, 20, 30, 40, 800, 1];
  await Promise.all(sizes.map((size, i) => writer.append(write(i, size))));
  for (const size of storage.writeSizesBytes) assert.ok(size <= batchBytesMax || size === recordHeaderBytes + 5000, `batch of ${size}`);
  await writer.close();
  assert.equal((await allEntries(storage)).length, sizes.length);
});

void test('many appends and one sync cost one fdatasync; concurrent syncs share it', async () => {
  const storage = new CountingStorage(new MemStorage());
  const writer = await LogWriter.open(storage, options());
  const syncsAtOpen = storage.syncs;
  await Promise.all(Array.from({ length: 200 }, (_, i) => writer.append(write(i))));
  await Promise.all([writer.sync(), writer.sync(), writer.sync(), writer.sync()]);
  assert.equal(storage.syncs - syncsAtOpen, 1);
  assert.deepEqual(writer.durablePosition(), writer.position());
  await writer.sync(); // nothing new: no fdatasync
  assert.equal(storage.syncs - syncsAtOpen, 1);
  await writer.close();
});

void test('writes that each wait for a flush share fdatasyncs (at most one per batch, plus one)', async () => {
  const storage = new CountingStorage(new MemStorage());
  const writer = await LogWriter.open(storage, options());
  const syncsAtOpen = storage.syncs;
  const writesAtOpen = storage.writes;
  await Promise.all(
    Array.from({ length: 300 }, async (_, i) => {
      await writer.append(write(i));
      await writer.sync();
    }),
  );
  const batches = storage.writes - writesAtOpen;
  const syncs = storage.syncs - syncsAtOpen;
  assert.ok(syncs <= batches + 1, `${syncs} fdatasyncs for ${batches} batches`);
  assert.ok(syncs < 20, `${syncs} fdatasyncs`);
  assert.deepEqual(writer.durablePosition(), writer.position());
  await writer.close();
});

void test('sync covers what was appended before it, and a running fdatasync does not cover later writes', async () => {
  const storage = new CountingStorage(new MemStorage());
  const writer = await LogWriter.open(storage, options());
  await writer.append(write(1));
  const first = writer.sync();
  const second = writer.append(write(2)).then(() => writer.sync());
  await Promise.all([first, second]);
  assert.equal(writer.durablePosition().nextSeq, 3n);
  await writer.close();
});

void test('records carry the durable length of their file when they were encoded', async () => {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, options());
  const a = await writer.append(write(1));
  const b = await writer.append(write(2));
  await writer.sync();
  const c = await writer.append(write(3));
  await writer.close();
  const scanned = await scanFile(storage, log1);
  assert.deepEqual(
    scanned.entries.map((e) => e.syncedBytes),
    [0, 0, b.endOffsetBytes],
  );
  assert.equal(a.offsetBytes, 0);
  assert.equal(c.offsetBytes, b.endOffsetBytes);
});

void test('a write that completes while an fdatasync runs is not counted durable', async () => {
  const storage = new CountingStorage(new MemStorage());
  const writer = await LogWriter.open(storage, options());
  const a = await writer.append(write(1));
  storage.syncGate.open = false;
  const syncing = writer.sync();
  await settle();
  await writer.append(write(2));
  storage.syncGate.release();
  await syncing;
  assert.equal(writer.durablePosition().endOffsetBytes, a.endOffsetBytes);
  assert.equal(writer.durablePosition().nextSeq, 2n);
  await writer.append(write(3));
  await writer.close();
  const scanned = await scanFile(storage, log1);
  assert.deepEqual(scanned.entries.map((e) => e.syncedBytes), [0, 0, a.endOffsetBytes]);
});

void test('a sync during a failed rotation still makes the old file durable', async () => {
  const storage = new CountingStorage(new MemStorage());
  await storage.writeAtomic(formatLogName(2, host), Buffer.from('occupied'));
  const writer = await LogWriter.open(storage, options());
  await writer.append(write(1));
  const [rotation] = await Promise.allSettled([writer.rotate(), writer.sync()]);
  assert.equal(rotation.status, 'rejected');
  await writer.append(write(2));
  await writer.sync();
  assert.deepEqual(writer.durablePosition(), writer.position());
  await writer.close();
});

void test('a rejected batch never comes back after a crash, even if its partial write was flushed', async () => {
  for (let seed = 0; seed < 32; seed++) {
    const mem = new MemStorage();
    const storage = new CountingStorage(mem, false);
    storage.syncOnWriteError = true;
    const writer = await LogWriter.open(storage, options());
    await Promise.all([0, 1, 2].map((i) => writer.append(write(i, 100))));
    await writer.sync();
    // A blocker write holds the pump so that the next two appends form one batch, with
    // room for its first record but not its second.
    storage.writeGate.open = false;
    const blocker = writer.append(write(3, 100));
    const failing = [writer.append(write(10, 300)), writer.append(write(11, 300))];
    mem.capacityBytes = mem.usedBytes() + 2 * recordHeaderBytes + 100 + 300 + 10;
    storage.writeGate.release();
    await blocker;
    const failed = await Promise.allSettled(failing);
    assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
    mem.crash(new Random(seed));
    const scanned = await scanFile(mem, log1, { expectSeq: 1n });
    assert.deepEqual(scanned.entries.map((e) => entryKey(e.record)), [0, 1, 2, 3].slice(0, scanned.entries.length).map((i) => entryKey(write(i, 100))), `crash seed ${seed}`);
    assert.ok(scanned.entries.length >= 3);
  }
});

void test('pending bytes are bounded: appends wait in order until a batch is written', async () => {
  const storage = new CountingStorage(new MemStorage());
  const pendingBytesMax = 10 * (recordHeaderBytes + 100);
  const writer = await LogWriter.open(storage, options({ pendingBytesMax, batchBytesMax: 4 * (recordHeaderBytes + 100) }));
  storage.writeGate.open = false;
  const resolved: number[] = [];
  const all = Array.from({ length: 40 }, (_, i) => writer.append(write(i, 100)).then(() => resolved.push(i)));
  await settle();
  const stats = writer.stats();
  assert.ok(stats.pendingBytes <= pendingBytesMax, `${stats.pendingBytes} pending`);
  assert.equal(stats.waitingAppends, 30);
  assert.equal(resolved.length, 0);
  storage.writeGate.release();
  await Promise.all(all);
  assert.deepEqual(resolved, Array.from({ length: 40 }, (_, i) => i));
  assert.equal(writer.stats().pendingBytes, 0);
  await writer.close();
  assert.equal((await allEntries(storage)).length, 40);
});

void test('a record larger than pendingBytesMax is still admitted into an empty writer', async () => {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, options({ pendingBytesMax: recordHeaderBytes }));
  await Promise.all([writer.append(write(1, 1000)), writer.append(write(2, 1000))]);
  await writer.close();
  assert.equal((await allEntries(storage)).length, 2);
});

void test('rotation under concurrent appends loses nothing and the seq continues across files', async () => {
  const storage = new MemStorage();
  const rotations: LogRotateEvent[] = [];
  const writer = await LogWriter.open(storage, options({ rotateBytes: 2000, batchBytesMax: 700, onRotate: (e) => rotations.push(e) }));
  const entries = Array.from({ length: 300 }, (_, i) => write(i, (i * 37) % 200));
  const appends: Promise<LogPosition>[] = [];
  const explicit: Promise<number>[] = [];
  for (let i = 0; i < entries.length; i++) {
    appends.push(writer.append(entries[i]!));
    if (i % 50 === 25) explicit.push(writer.rotate());
    if (i % 17 === 0) await settle(1);
  }
  const positions = await Promise.all(appends);
  const newNumbers = await Promise.all(explicit);
  await writer.close();
  const files = await scanStream(storage);
  assert.equal(files.length, writer.position().logNumber);
  assert.ok(files.length > 10, `${files.length} files`);
  for (const file of files) assert.equal(file.outcome.tail, 'clean', file.name);
  assert.deepEqual(files.flatMap((f) => f.entries.map((e) => entryKey(e.record))), entries.map(entryKey));
  assert.deepEqual(files.flatMap((f) => f.entries.map((e) => e.record.seq)), positions.map((p) => p.seq));
  // Every position names the file and offset where the record really is.
  const where = new Map(files.flatMap((f, n) => f.entries.map((e) => [e.record.seq, `${n + 1}@${e.offsetBytes}`] as const)));
  for (const p of positions) assert.equal(where.get(p.seq), `${p.logNumber}@${p.offsetBytes}`);
  for (const n of newNumbers) assert.ok(n >= 2 && n <= files.length);
  assert.equal(rotations.length, files.length - 1);
  rotations.forEach((r, i) => {
    assert.equal(r.logNumber, i + 2);
    assert.equal(r.previousLogNumber, i + 1);
    assert.equal(files[i]!.outcome.endOffsetBytes, r.previousEndOffsetBytes);
    assert.equal(files[i + 1]!.entries[0]?.record.seq ?? r.nextSeq, r.nextSeq);
  });
});

void test('rotation makes the old file durable and sync waits for it', async () => {
  const storage = new CountingStorage(new MemStorage());
  const writer = await LogWriter.open(storage, options());
  await writer.append(write(1));
  const [logNumber] = await Promise.all([writer.rotate(), writer.sync()]);
  assert.equal(logNumber, 2);
  assert.deepEqual(writer.position(), { logNumber: 2, endOffsetBytes: 0, nextSeq: 2n });
  const p = await writer.append(write(2));
  assert.equal(p.logNumber, 2);
  assert.equal(p.offsetBytes, 0);
  await writer.close();
  const files = await scanStream(storage);
  assert.deepEqual(files.map((f) => f.entries.length), [1, 1]);
});

void test('rotation refuses to overwrite a non-empty next log file', async () => {
  const storage = new MemStorage();
  await storage.writeAtomic(formatLogName(2, host), Buffer.from('someone else'));
  const writer = await LogWriter.open(storage, options());
  await writer.append(write(1));
  await assert.rejects(writer.rotate(), { code: 'EXISTS' });
  const p = await writer.append(write(2)); // still writing to log 1
  assert.equal(p.logNumber, 1);
  await writer.close();
});

void test('a failed automatic rotation is reported and the writer stays in the old file', async () => {
  const storage = new MemStorage();
  await storage.writeAtomic(formatLogName(2, host), Buffer.from('occupied'));
  const errors: MarsError[] = [];
  const writer = await LogWriter.open(storage, options({ rotateBytes: 100, onRotateError: (e) => errors.push(e) }));
  for (let i = 0; i < 5; i++) await writer.append(write(i));
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.code, 'EXISTS');
  assert.equal(writer.position().logNumber, 1);
  await writer.close();
});

void test('ENOSPC rejects the failed batch, keeps earlier records and later appends work after space is freed', async () => {
  const mem = new MemStorage({ capacityBytes: 1000 });
  const storage = new CountingStorage(mem);
  const writer = await LogWriter.open(storage, options());
  const kept: LogPosition[] = [];
  for (let i = 0; i < 5; i++) kept.push(await writer.append(write(i, 100)));
  await writer.sync();
  const failing = [writer.append(write(100, 300)), writer.append(write(101, 300))];
  const results = await Promise.allSettled(failing);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof MarsError && r.reason.code === 'ENOSPC');
  }
  const end = kept[4]!.endOffsetBytes;
  assert.deepEqual(writer.position(), { logNumber: 1, endOffsetBytes: end, nextSeq: 6n });
  assert.equal(mem.image(log1)?.length, end, 'the partly written batch is cut off');
  mem.capacityBytes = 1 << 20;
  const next = await writer.append(write(6, 300));
  assert.equal(next.seq, 6n);
  assert.equal(next.offsetBytes, end);
  await writer.close();
  const scanned = await scanFile(storage, log1, { expectSeq: 1n });
  assert.equal(scanned.outcome.tail, 'clean');
  assert.deepEqual(scanned.entries.map((e) => e.record.seq), [1n, 2n, 3n, 4n, 5n, 6n]);
  assert.deepEqual(scanned.entries.map((e) => entryKey(e.record)), [0, 1, 2, 3, 4, 6].map((i) => entryKey(write(i, i === 6 ? 300 : 100))));
});

void test('a failed fdatasync stops the writer for good', async () => {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, options());
  await writer.append(write(1));
  storage.failAll = true;
  await assert.rejects(writer.sync(), { code: 'EIO' });
  await assert.rejects(writer.append(write(2)), { code: 'EIO' });
  assert.equal(writer.failed?.code, 'EIO');
  storage.failAll = false;
  await assert.rejects(writer.sync(), { code: 'EIO' });
  await assert.rejects(writer.close(), { code: 'EIO' });
});

void test('bad entries are EINVAL and bad options are refused', async () => {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, options());
  await assert.rejects(writer.append({ kind: 'trim', lamport: 1n, offsetBytes: 0, lengthBytes: 0 }), { code: 'EINVAL' });
  await assert.rejects(writer.append({ kind: 'write', lamport: -1n, offsetBytes: 0, payload: Buffer.alloc(1) }), { code: 'EINVAL' });
  assert.equal((await writer.append(write(1))).seq, 1n, 'a refused entry burns no seq');
  await writer.close();
  await assert.rejects(writer.append(write(2)), { code: 'SHUTTING_DOWN' });
  await assert.rejects(writer.rotate(), { code: 'SHUTTING_DOWN' });
  for (const bad of [{ host: 'a/b' }, { logNumber: 0 }, { nextSeq: -1n }, { rotateBytes: 1 }, { batchBytesMax: 0 }, { startOffsetBytes: -1 }]) {
    await assert.rejects(LogWriter.open(new MemStorage(), options(bad)), { code: 'EINVAL' }, JSON.stringify(Object.keys(bad)));
  }
  await assert.rejects(LogWriter.open(new MemStorage(), options({ startOffsetBytes: 10 })), { code: 'EINVAL' });
});

void test('reopening cuts off everything after the start offset and continues the seq', async () => {
  const storage = new MemStorage();
  const first = await LogWriter.open(storage, options());
  const a = await first.append(write(1));
  await first.append(write(2));
  await first.close();
  const second = await LogWriter.open(storage, options({ startOffsetBytes: a.endOffsetBytes, nextSeq: 2n }));
  const b = await second.append(write(3));
  assert.equal(b.offsetBytes, a.endOffsetBytes);
  await second.close();
  assert.deepEqual(await allEntries(storage), [write(1), write(3)].map(entryKey));
});

void test('close writes out pending appends and makes them durable', async () => {
  const storage = new CountingStorage(new MemStorage());
  const writer = await LogWriter.open(storage, options());
  const appends = Array.from({ length: 20 }, (_, i) => writer.append(write(i)));
  await writer.close();
  await Promise.all(appends);
  assert.deepEqual(writer.durablePosition(), writer.position());
  assert.equal(writer.position().nextSeq, 21n);
});

void test('the writer works on real files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mars-log-'));
  try {
    const storage = await FsStorage.create(dir);
    const writer = await LogWriter.open(storage, options({ rotateBytes: 4096 }));
    const entries = Array.from({ length: 100 }, (_, i) => write(i, 100));
    for (let i = 0; i < entries.length; i += 10) {
      await Promise.all(entries.slice(i, i + 10).map((e) => writer.append(e)));
      await writer.sync();
    }
    await writer.close();
    assert.deepEqual(await allEntries(storage), entries.map(entryKey));
    assert.ok(writer.position().logNumber > 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('large batches are written several at once; a failed one takes those after it along and appends continue after the last good one', async () => {
  const MiB = 1024 * 1024;
  const mem = new MemStorage({ capacityBytes: 1.5 * MiB });
  const storage = new CountingStorage(mem);
  const writer = await LogWriter.open(storage, options({ batchBytesMax: MiB + recordHeaderBytes }));
  storage.writeGate.open = false;
  const appends = [0, 1, 2].map((i) => writer.append(write(i, MiB)));
  await settle();
  assert.equal(storage.writeGate.waiting, 3, 'three batches of 1 MiB are in flight at once');
  storage.writeGate.release();
  const [first, ...rest] = await Promise.allSettled(appends);
  assert.equal(first!.status, 'fulfilled');
  for (const r of rest) {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof MarsError && r.reason.code === 'ENOSPC');
  }
  const end = recordHeaderBytes + MiB;
  assert.deepEqual(writer.position(), { logNumber: 1, endOffsetBytes: end, nextSeq: 2n });
  assert.equal(mem.image(log1)?.length, end, 'the failed batches are cut off');
  mem.capacityBytes = 8 * MiB;
  const next = await writer.append(write(3, 100));
  assert.equal(next.seq, 2n, 'the failed batches burned no seqs');
  assert.equal(next.offsetBytes, end);
  await writer.close();
  const scanned = await scanFile(storage, log1, { expectSeq: 1n });
  assert.equal(scanned.outcome.tail, 'clean');
  assert.deepEqual(scanned.entries.map((e) => entryKey(e.record)), [entryKey(write(0, MiB)), entryKey(write(3, 100))]);
});
