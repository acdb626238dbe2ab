import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { liveWriterEnd, RecentLogBytes, RecordStreamVerifier, StorageLogSource, TeeLogStorage } from '../../src/fetch/index.js';
import { formatLogName, LogWriter } from '../../src/log/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { readInto, type OpenMode, type StorageFile } from '../../src/storage/storage.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

/** A MemStorage that counts reads of files opened read-only (the fetch server's reads). */
class CountingStorage extends MemStorage {
  fileReads = 0;

  override async open(name: string, mode: OpenMode): Promise<StorageFile> {
    const file = await super.open(name, mode);
    if (mode !== 'read') return file;
    const read = file.read.bind(file);
    file.read = (target, position) => {
      this.fileReads++;
      return read(target, position);
    };
    return file;
  }
}

type Op = { kind: 'append'; sizes: number[] } | { kind: 'rotate' } | { kind: 'truncate'; backBytes: number } | { kind: 'read'; backBytes: number; lengthBytes: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('append' as const), sizes: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 4 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'rotate' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), backBytes: fc.integer({ min: 0, max: 200 }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('read' as const), backBytes: fc.integer({ min: 0, max: 1200 }), lengthBytes: fc.integer({ min: 1, max: 600 }) }) },
);

void test('property: a read from the ring returns exactly the bytes the file holds, and the last appended bytes are always held', () => {
  const capacityBytes = 512;
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), fc.integer({ min: 0, max: 255 }), (ops, fill) => {
      const recent = new RecentLogBytes(capacityBytes);
      recent.arm();
      const files = new Map<string, Buffer>();
      let name = 'log-1';
      let byte = fill;
      for (const op of ops) {
        const content = files.get(name) ?? Buffer.alloc(0);
        if (op.kind === 'append') {
          const parts = op.sizes.map((n) => Buffer.from(Array.from({ length: n }, () => (byte = (byte * 31 + 7) & 0xff))));
          recent.appended(name, parts, content.length);
          files.set(name, Buffer.concat([content, ...parts]));
          // The newest bytes, up to the capacity, are held right after an append.
          const size = files.get(name)!.length;
          const tail = Math.min(capacityBytes, size - content.length);
          if (tail > 0) {
            const target = Buffer.alloc(tail);
            assert.ok(recent.read(name, target, size - tail), 'the bytes just appended are held');
            assert.deepEqual(target, files.get(name)!.subarray(size - tail));
          }
        } else if (op.kind === 'rotate') {
          name = `log-${files.size + 1}`;
        } else if (op.kind === 'truncate') {
          files.set(name, content.subarray(0, Math.max(0, content.length - op.backBytes)));
          recent.forget();
        } else {
          const at = Math.max(0, content.length - op.backBytes);
          const target = Buffer.alloc(op.lengthBytes, 0xee);
          if (recent.read(name, target, at)) assert.deepEqual(target, content.subarray(at, at + op.lengthBytes));
        }
      }
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('the fetch source reads what the writer just appended from memory, not from the file', async () => {
  const storage = new CountingStorage();
  const recent = new RecentLogBytes(1 << 20);
  const writer = await LogWriter.open(new TeeLogStorage(storage, 'alpha', recent), { host: 'alpha', logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 30 });
  const source = new StorageLogSource({ storage, live: liveWriterEnd(writer, 'alpha'), recent });
  const name = formatLogName(1, 'alpha');
  const file = await source.open(name);
  assert.ok(recent.armed, 'an open fetch file arms the ring');
  for (let i = 0; i < 20; i++) await writer.append({ kind: 'write', lamport: BigInt(i + 1), offsetBytes: i * 4096, payload: Buffer.alloc(4096, i) });
  await writer.sync();
  const durable = writer.durablePosition().endOffsetBytes;
  const fromMemory = await readInto(file, Buffer.alloc(durable), 0);
  assert.equal(storage.fileReads, 0, 'no read reached the file');
  assert.ok(recent.hits > 0);
  const plain = await storage.open(name, 'read');
  assert.deepEqual(fromMemory, await readInto(plain, Buffer.alloc(durable), 0));
  await plain.close();
  await file.close();
  assert.equal(recent.armed, false, 'no fetch file is open');
  assert.equal(recent.allocatedBytes, 1 << 20, 'the ring is kept for a stream that opens the next file at once');
  const readsBefore = storage.fileReads; // the plain reads above
  const again = await source.open(name);
  assert.deepEqual(await readInto(again, Buffer.alloc(durable), 0), fromMemory);
  assert.equal(storage.fileReads, readsBefore, 'reopened before the log grew: still from memory');
  await again.close();
  await writer.append({ kind: 'write', lamport: 100n, offsetBytes: 0, payload: Buffer.alloc(4096, 7) });
  await writer.sync();
  assert.equal(recent.allocatedBytes, 0, 'the first append with no fetch file open drops the ring');
  await writer.close();
});

void test('bytes older than the ring holds, and bytes written before it was armed, are read from the file', async () => {
  const storage = new CountingStorage();
  const recent = new RecentLogBytes(8192);
  const tee = new TeeLogStorage(storage, 'alpha', recent);
  const name = formatLogName(1, 'alpha');
  const log = await tee.open(name, 'create');
  await log.write(Buffer.alloc(4096, 1), 0); // before any fetch: not kept
  const source = new StorageLogSource({ storage, recent });
  const file = await source.open(name);
  await log.write(Buffer.alloc(16384, 2), 4096);
  const early = await readInto(file, Buffer.alloc(4096), 0);
  assert.deepEqual(early, Buffer.alloc(4096, 1));
  assert.equal(storage.fileReads, 1);
  const old = await readInto(file, Buffer.alloc(4096), 4096); // pushed out of the 8 KiB ring
  assert.deepEqual(old, Buffer.alloc(4096, 2));
  assert.equal(storage.fileReads, 2);
  const newest = await readInto(file, Buffer.alloc(8192), 4096 + 8192);
  assert.deepEqual(newest, Buffer.alloc(8192, 2));
  assert.equal(storage.fileReads, 2, 'the newest 8 KiB came from memory');
  await file.close();
  await log.close();
});

void test('a failed append or a truncate empties the ring, so a rewritten range is never served from an older copy', async () => {
  const storage = new CountingStorage();
  const recent = new RecentLogBytes(1 << 16);
  const tee = new TeeLogStorage(storage, 'alpha', recent);
  const name = formatLogName(1, 'alpha');
  const log = await tee.open(name, 'create');
  const file = await new StorageLogSource({ storage, recent }).open(name);
  await log.write(Buffer.alloc(4096, 1), 0);
  assert.equal(recent.heldBytes, 4096);
  storage.failAll = true;
  await assert.rejects(log.write(Buffer.alloc(4096, 2), 4096));
  storage.failAll = false;
  assert.equal(recent.heldBytes, 0, 'a failed write forgets');
  await log.write(Buffer.alloc(4096, 3), 4096);
  await log.truncate(4096);
  assert.equal(recent.heldBytes, 0, 'a truncate forgets');
  await log.write(Buffer.alloc(4096, 4), 4096);
  assert.deepEqual(await readInto(file, Buffer.alloc(4096), 4096), Buffer.alloc(4096, 4));
  await file.close();
  await log.close();
});

void test("another host's log and other files are written through untouched", async () => {
  const storage = new MemStorage();
  const recent = new RecentLogBytes(1 << 16);
  recent.arm();
  const tee = new TeeLogStorage(storage, 'alpha', recent);
  const other = await tee.open(formatLogName(1, 'beta'), 'create');
  await other.write(Buffer.alloc(100, 9), 0);
  const meta = await tee.open('replay-position', 'create');
  await meta.write(Buffer.alloc(10, 9), 0);
  assert.equal(recent.heldBytes, 0);
  await other.close();
  await meta.close();
});

/** Three records of 4 KiB, as the writer lays them out; and where the second one's payload starts. */
async function threeRecords(): Promise<{ bytes: Buffer; secondPayloadAt: number; secondStart: number }> {
  const storage = new MemStorage();
  const writer = await LogWriter.open(storage, { host: 'alpha', logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 30 });
  const ends: number[] = [];
  for (let i = 0; i < 3; i++) {
    await writer.append({ kind: 'write', lamport: BigInt(i + 1), offsetBytes: i * 4096, payload: Buffer.alloc(4096, i + 1) });
    ends.push(writer.position().endOffsetBytes);
  }
  await writer.sync();
  await writer.close();
  const bytes = (await storage.readAll(formatLogName(1, 'alpha')))!;
  return { bytes, secondStart: ends[0]!, secondPayloadAt: ends[1]! - 4096 };
}

void test('the server skips the payload checksum only for records wholly from its own memory; headers are always checked', async () => {
  const { bytes, secondStart, secondPayloadAt } = await threeRecords();
  const damaged = Buffer.from(bytes);
  damaged[secondPayloadAt + 100]! ^= 0xff;
  // From the file (untrusted): the damage is found at the second record.
  const fromFile = new RecordStreamVerifier(0).push(damaged);
  assert.equal(fromFile.fault?.offsetBytes, secondStart);
  // All from memory: the payload check is skipped (the receiver checks every record again).
  assert.equal(new RecordStreamVerifier(0).push(damaged, true).fault, undefined);
  // The second record starts in memory and ends in a piece read from the file: checked.
  const mixed = new RecordStreamVerifier(0);
  assert.equal(mixed.push(damaged.subarray(0, secondPayloadAt + 200), true).fault, undefined);
  assert.equal(mixed.push(damaged.subarray(secondPayloadAt + 200)).fault?.offsetBytes, secondStart);
  // A damaged header is found in memory too.
  const badHeader = Buffer.from(bytes);
  badHeader[secondStart + 20]! ^= 0xff;
  assert.equal(new RecordStreamVerifier(0).push(badHeader, true).fault?.offsetBytes, secondStart);
});
