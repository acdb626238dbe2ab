import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MarsError } from '../../src/core/errors.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { encodeRecord, recordHeaderBytes, type LogRecord } from '../../src/log/record.js';
import { LogScanner } from '../../src/log/scanner.js';
import { crc32c } from '@node-rs/crc32';
import { entryArbitrary, entryKey, fcSeed, scanFile } from './helpers.js';

const name = 'log-000000001-test';

function writeRecord(seq: bigint, payload: string | Buffer): LogRecord {
  return { kind: 'write', seq, lamport: seq * 10n, offsetBytes: Number(seq) * 4096, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload) };
}

/** How each record's syncedBytes is chosen: from its index and its own offset. */
type SyncedRule = (index: number, offsetBytes: number) => number;
/** As if the writer synced after every record. */
const syncedEach: SyncedRule = (_index, offsetBytes) => offsetBytes;

function logImage(records: readonly LogRecord[], synced: SyncedRule = syncedEach): { image: Buffer; offsets: number[] } {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let at = 0;
  records.forEach((record, index) => {
    offsets.push(at);
    const encoded = encodeRecord(record, synced(index, at));
    parts.push(encoded);
    at += encoded.length;
  });
  return { image: Buffer.concat(parts), offsets };
}

async function storageWith(image: Buffer): Promise<MemStorage> {
  const storage = new MemStorage();
  await storage.writeAtomic(name, image);
  return storage;
}

/** Scans; returns the records read before the scan stopped or threw, and how it ended. */
async function scanImage(image: Buffer, readChunkBytes = 4096): Promise<{ records: LogRecord[]; error?: MarsError; tail?: string; endOffsetBytes?: number }> {
  const storage = await storageWith(image);
  const file = await storage.open(name, 'read');
  const scanner = new LogScanner(file, name, { readChunkBytes, expectSeq: 1n });
  const records: LogRecord[] = [];
  try {
    for await (const entry of scanner) records.push(entry.record);
  } catch (err) {
    assert.ok(err instanceof MarsError, String(err));
    return { records, error: err };
  }
  const outcome = scanner.outcome();
  return { records, tail: outcome.tail, endOffsetBytes: outcome.endOffsetBytes };
}

const four = [writeRecord(1n, 'record-1'), writeRecord(2n, 'record-2'), writeRecord(3n, 'record-3'), writeRecord(4n, 'record-4')];

function assertPrefix(found: readonly LogRecord[], expected: readonly LogRecord[], count: number): void {
  assert.equal(found.length, count);
  found.forEach((record, i) => {
    assert.equal(record.seq, expected[i]!.seq);
    assert.equal(entryKey(record), entryKey(expected[i]!));
  });
}

function flipped(image: Buffer, bitIndex: number): Buffer {
  const copy = Buffer.from(image);
  const byte = Math.floor(bitIndex / 8);
  copy[byte] = (copy[byte] ?? 0) ^ (1 << (bitIndex % 8));
  return copy;
}

void test('a clean log is read back record by record, and ends clean', async () => {
  const { image, offsets } = logImage(four);
  const storage = await storageWith(image);
  const scanned = await scanFile(storage, name, { readChunkBytes: 64 });
  assertPrefix(scanned.entries.map((e) => e.record), four, 4);
  assert.deepEqual(scanned.entries.map((e) => e.offsetBytes), offsets);
  assert.equal(scanned.outcome.tail, 'clean');
  assert.equal(scanned.outcome.endOffsetBytes, image.length);
  assert.equal(scanned.outcome.nextSeq, 5n);
});

void test('every record list is read back whatever the chunk size', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(entryArbitrary(300), { maxLength: 20 }), fc.integer({ min: 64, max: 2048 }), async (entries, readChunkBytes) => {
      const records = entries.map((entry, i) => ({ ...entry, seq: BigInt(i + 1) }));
      const { image } = logImage(records);
      const result = await scanImage(image, readChunkBytes);
      assert.equal(result.error, undefined);
      assert.equal(result.tail, 'clean');
      assertPrefix(result.records, records, records.length);
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});

void test('a record larger than a read chunk is read whole', async () => {
  const big = [writeRecord(1n, Buffer.alloc(100_000, 7)), writeRecord(2n, 'after')];
  const result = await scanImage(logImage(big).image, 64);
  assert.equal(result.tail, 'clean');
  assertPrefix(result.records, big, 2);
});

void test('every single-bit flip in a middle record is LOG_CORRUPT naming its offset', async () => {
  const { image, offsets } = logImage(four);
  const start = offsets[1]!;
  const end = offsets[2]!;
  for (let bit = start * 8; bit < end * 8; bit++) {
    for (const readChunkBytes of [64, 4096]) {
      const result = await scanImage(flipped(image, bit), readChunkBytes);
      assert.equal(result.error?.code, 'LOG_CORRUPT', `bit ${bit}`);
      assert.match(result.error.message, new RegExp(`${name} at offset ${start}:`));
      assertPrefix(result.records, four, 1);
    }
  }
});

void test('every single-bit flip in the first record is LOG_CORRUPT when later records were written after a sync', async () => {
  const { image } = logImage(four);
  for (let bit = 0; bit < (recordHeaderBytes + 8) * 8; bit++) {
    const result = await scanImage(flipped(image, bit));
    assert.equal(result.error?.code, 'LOG_CORRUPT', `bit ${bit}`);
    assert.match(result.error.message, / at offset 0:/);
    assert.equal(result.records.length, 0);
  }
});

void test('every single-bit flip in the last record is a torn tail with the prefix intact', async () => {
  const { image, offsets } = logImage(four);
  const start = offsets[3]!;
  for (let bit = start * 8; bit < image.length * 8; bit++) {
    const result = await scanImage(flipped(image, bit));
    assert.equal(result.error, undefined, `bit ${bit}: ${result.error?.message}`);
    assert.equal(result.tail, 'torn');
    assert.equal(result.endOffsetBytes, start);
    assertPrefix(result.records, four, 3);
  }
});

void test('a flip in an unsynced batch is a torn tail when no later record was written after a sync', async () => {
  // Records 3 and 4 were one batch written after the sync that covered records 1 and 2.
  const { image, offsets } = logImage(four, (index, at) => (index < 2 ? at : 2 * (recordHeaderBytes + 8)));
  const start = offsets[2]!;
  for (let bit = start * 8; bit < offsets[3]! * 8; bit++) {
    const result = await scanImage(flipped(image, bit));
    assert.equal(result.error, undefined, `bit ${bit}: ${result.error?.message}`);
    assert.equal(result.tail, 'torn');
    assert.equal(result.endOffsetBytes, start);
    assertPrefix(result.records, four, 2);
  }
});

void test('a log cut at every byte of its last record is a torn tail with the prefix intact', async () => {
  const { image, offsets } = logImage(four);
  const start = offsets[3]!;
  for (let cut = start; cut < image.length; cut++) {
    const result = await scanImage(image.subarray(0, cut), 64);
    assert.equal(result.error, undefined, `cut ${cut}`);
    assert.equal(result.tail, cut === start ? 'clean' : 'torn');
    assert.equal(result.endOffsetBytes, start);
    assertPrefix(result.records, four, 3);
  }
});

void test('zeros where the last batch should be are a torn tail', async () => {
  const { image, offsets } = logImage(four);
  const zeroed = Buffer.from(image);
  zeroed.fill(0, offsets[2]);
  const result = await scanImage(zeroed);
  assert.equal(result.tail, 'torn');
  assertPrefix(result.records, four, 2);
});

void test('a lost batch followed by a surviving one written before the next sync is a torn tail', async () => {
  // All four records were written after the sync that covered nothing (syncedBytes 0).
  const { image, offsets } = logImage(four, () => 0);
  const holed = Buffer.from(image);
  holed.fill(0, offsets[1], offsets[2]);
  const result = await scanImage(holed);
  assert.equal(result.tail, 'torn');
  assert.equal(result.endOffsetBytes, offsets[1]);
  assertPrefix(result.records, four, 1);
});

void test('a gap or a step back in seq is LOG_SEQ_GAP naming the offset', async () => {
  for (const seqs of [
    [1n, 2n, 4n],
    [1n, 2n, 2n],
    [1n, 2n, 1n],
  ]) {
    const records = seqs.map((seq) => writeRecord(seq, `r${seq}`));
    const { image, offsets } = logImage(records);
    const result = await scanImage(image);
    assert.equal(result.error?.code, 'LOG_SEQ_GAP', seqs.join(','));
    assert.match(result.error.message, new RegExp(` at offset ${offsets[2]}:`));
    assert.equal(result.records.length, 2);
  }
});

void test('the first record must carry the expected seq', async () => {
  const storage = await storageWith(logImage(four).image);
  await assert.rejects(scanFile(storage, name, { expectSeq: 2n }), { code: 'LOG_SEQ_GAP' });
});

void test('an unknown format version is LOG_BAD_VERSION', async () => {
  const { image, offsets } = logImage(four);
  const at = offsets[2]!;
  image.writeUInt16LE(2, at + 4);
  image.writeUInt32LE(crc32c(image.subarray(at, at + 60)), at + 60);
  const result = await scanImage(image);
  assert.equal(result.error?.code, 'LOG_BAD_VERSION');
  assert.match(result.error.message, new RegExp(` at offset ${at}:`));
});

void test('a header with a valid checksum but implausible fields is LOG_CORRUPT even at the end', async () => {
  const { image, offsets } = logImage(four);
  const at = offsets[3]!;
  image.writeUInt32LE(1, at + 56);
  image.writeUInt32LE(crc32c(image.subarray(at, at + 60)), at + 60);
  const result = await scanImage(image);
  assert.equal(result.error?.code, 'LOG_CORRUPT');
  assert.equal(result.records.length, 3);
});

void test('a record that claims more durable bytes than precede it is LOG_CORRUPT', async () => {
  const { image } = logImage(four, (index, at) => (index === 2 ? at + 1 : at));
  const result = await scanImage(image);
  assert.equal(result.error?.code, 'LOG_CORRUPT');
  assert.equal(result.records.length, 2);
});

void test('a record inside a payload with an implausible seq is no evidence of corruption', async () => {
  const first = writeRecord(1n, 'first');
  const firstBytes = recordHeaderBytes + 5;
  // The second record's payload holds a valid record of another stream that claims
  // everything after the first record was durable.
  const nested = encodeRecord(writeRecord(12_345n, 'nested'), firstBytes + 1);
  const second = writeRecord(2n, Buffer.concat([Buffer.alloc(8), nested]));
  const { image } = logImage([first, second], () => 0);
  image[firstBytes + 9] = (image[firstBytes + 9] ?? 0) ^ 1; // damage the second header
  const result = await scanImage(image);
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(result.tail, 'torn');
  assert.equal(result.endOffsetBytes, firstBytes);
});

void test('a scan resumes from a record boundary with the expected seq', async () => {
  const { image, offsets } = logImage(four);
  const storage = await storageWith(image);
  const scanned = await scanFile(storage, name, { fromOffsetBytes: offsets[2]!, expectSeq: 3n, readChunkBytes: 64 });
  assertPrefix(scanned.entries.map((e) => e.record), four.slice(2), 2);
  assert.equal(scanned.outcome.tail, 'clean');
});

void test('a start beyond the end of the file is LOG_CORRUPT', async () => {
  const storage = await storageWith(logImage(four).image);
  await assert.rejects(scanFile(storage, name, { fromOffsetBytes: 10_000 }), { code: 'LOG_CORRUPT' });
});

void test('bad scan options are EINVAL', async () => {
  const storage = await storageWith(Buffer.alloc(0));
  const file = await storage.open(name, 'read');
  assert.throws(() => new LogScanner(file, name, { readChunkBytes: 8 }), { code: 'EINVAL' });
  assert.throws(() => new LogScanner(file, name, { readChunkBytes: 4096, fromOffsetBytes: -1 }), { code: 'EINVAL' });
  const scanner = new LogScanner(file, name, { readChunkBytes: 4096 });
  assert.throws(() => scanner.outcome(), { code: 'EINVAL' });
  assert.equal(await scanner.next(), undefined);
  assert.deepEqual(scanner.outcome(), { tail: 'clean', endOffsetBytes: 0, nextSeq: undefined });
});

void test('a growing log is read to its current end, then resumed when more arrives', async () => {
  const { image, offsets } = logImage(four);
  const storage = new MemStorage();
  const writerFile = await storage.open(name, 'create');
  const cut = offsets[2]! + 30;
  await writerFile.write(image.subarray(0, cut), 0);
  const file = await storage.open(name, 'read');
  const scanner = new LogScanner(file, name, { readChunkBytes: 64, tailMayGrow: true });
  const seen: LogRecord[] = [];
  for (let e = await scanner.next(); e !== undefined; e = await scanner.next()) seen.push(e.record);
  const first = scanner.outcome();
  assert.equal(first.tail, 'incomplete');
  assert.equal(first.endOffsetBytes, offsets[2]);
  assert.equal(seen.length, 2);
  await writerFile.write(image.subarray(cut), cut);
  for (let e = await scanner.next(); e !== undefined; e = await scanner.next()) seen.push(e.record);
  assert.equal(scanner.outcome().tail, 'clean');
  assert.equal(scanner.outcome().endOffsetBytes, image.length);
  assertPrefix(seen, four, 4);
  assert.equal(await scanner.next(), undefined);
});

void test('a growing log still reports corruption of durable bytes', async () => {
  const { image, offsets } = logImage(four);
  const storage = await storageWith(flipped(image, (offsets[1]! + 70) * 8));
  const file = await storage.open(name, 'read');
  const scanner = new LogScanner(file, name, { readChunkBytes: 64, tailMayGrow: true });
  assert.ok(await scanner.next());
  await assert.rejects(scanner.next(), { code: 'LOG_CORRUPT' });
});

void test('a scan that reuses its read buffer yields every record intact when each is used before the next', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.nat({ max: 9000 }), { minLength: 1, maxLength: 30 }), fc.integer({ min: recordHeaderBytes, max: 20000 }), async (sizes, readChunkBytes) => {
      const records = sizes.map((size, i) => writeRecord(BigInt(i + 1), Buffer.alloc(size, (i * 37) % 251)));
      const { image } = logImage(records);
      const file = await (await storageWith(image)).open(name, 'read');
      const scanner = new LogScanner(file, name, { readChunkBytes, expectSeq: 1n, reuseBuffer: true });
      const backing = new Set<ArrayBufferLike>();
      let count = 0;
      for (let e = await scanner.next(); e !== undefined; e = await scanner.next()) {
        const expected = records[count]! as Extract<LogRecord, { kind: 'write' }>;
        assert.equal(e.record.kind, 'write');
        assert.ok(e.record.payload.equals(expected.payload), `record ${count + 1} differs`);
        if (e.record.payload.length > 0) backing.add(e.record.payload.buffer);
        count++;
      }
      assert.equal(count, records.length);
      assert.equal(scanner.outcome().tail, 'clean');
      // Reused: the payloads came from at most as many buffers as the largest record needed growth steps.
      assert.ok(backing.size <= records.length, 'more buffers than records');
      if (records.length > 3 && Math.max(...sizes) + recordHeaderBytes <= readChunkBytes) assert.equal(backing.size <= 1, true, `payloads came from ${backing.size} buffers`);
    }),
    { seed: fcSeed, numRuns: 100 },
  );
});
