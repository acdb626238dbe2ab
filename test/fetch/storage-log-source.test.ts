import { test } from 'node:test';
import assert from 'node:assert/strict';
import { liveWriterEnd, StorageLogSource } from '../../src/fetch/index.js';
import { formatLogName, LogWriter } from '../../src/log/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';

const write = (i: number) => ({ kind: 'write' as const, lamport: BigInt(i), offsetBytes: i * 512, payload: Buffer.alloc(100, i) });

void test("the live file's durable end is the writer's fdatasync'd end, never its written end", async () => {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, { host: 'alpha', logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 20 });
  const source = new StorageLogSource({ storage, live: liveWriterEnd(writer, 'alpha') });
  const name = formatLogName(1, 'alpha');
  await writer.append(write(1));
  await writer.sync();
  const synced = writer.durablePosition().endOffsetBytes;
  await writer.append(write(2));
  assert.ok(writer.position().endOffsetBytes > synced);
  assert.deepEqual(await source.info(name), { name, durableBytes: synced, complete: false });
  assert.deepEqual(await source.list(), [{ name, durableBytes: synced, complete: false }]);
  await writer.close();
});

void test('a rotated file is complete at its full length; the new live file starts empty', async () => {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, { host: 'alpha', logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 20 });
  const source = new StorageLogSource({ storage, live: liveWriterEnd(writer, 'alpha') });
  await writer.append(write(1));
  const endBytes = writer.position().endOffsetBytes;
  const changed = source.nextChange();
  let woke = false;
  void changed.then(() => (woke = true));
  await writer.rotate();
  source.notifyChange();
  await changed;
  assert.ok(woke);
  assert.deepEqual(await source.list(), [
    { name: formatLogName(1, 'alpha'), durableBytes: endBytes, complete: true },
    { name: formatLogName(2, 'alpha'), durableBytes: 0, complete: false },
  ]);
  assert.equal(await source.info('not-a-log'), undefined);
  assert.equal(await source.info(formatLogName(3, 'alpha')), undefined);
  await writer.close();
});

void test('without a live writer every file counts as it is, and only a file followed by a later one is complete', async () => {
  const storage = new MemStorage();
  await storage.writeAtomic(formatLogName(4, 'alpha'), Buffer.alloc(10));
  await storage.writeAtomic(formatLogName(5, 'alpha'), Buffer.alloc(3));
  await storage.writeAtomic('replay-alpha', Buffer.alloc(1));
  const source = new StorageLogSource({ storage });
  assert.deepEqual(await source.list(), [
    { name: formatLogName(4, 'alpha'), durableBytes: 10, complete: true },
    { name: formatLogName(5, 'alpha'), durableBytes: 3, complete: false },
  ]);
});
