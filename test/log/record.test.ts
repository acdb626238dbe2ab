import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32c } from '@node-rs/crc32';
import {
  checkEntryFields,
  decodeHeader,
  encodeRecord,
  recordFromHeader,
  recordHeaderBytes,
  recordPayloadBytesMax,
  verifyPayload,
  type LogRecord,
} from '../../src/log/record.js';
import { entryArbitrary, entryKey, fcSeed, u64Arbitrary } from './helpers.js';

/** Rewrites the header checksum after a test has changed a header field on purpose. */
function resealHeader(encoded: Buffer): void {
  encoded.writeUInt32LE(crc32c(encoded.subarray(0, 60)), 60);
}

const sample: LogRecord = { kind: 'write', seq: 7n, lamport: 99n, offsetBytes: 4096, payload: Buffer.from('hello, log') };

void test('every record survives encode and decode unchanged', () => {
  fc.assert(
    fc.property(entryArbitrary(), u64Arbitrary, fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (entry, seq, syncedBytes) => {
      const record: LogRecord = { ...entry, seq };
      const encoded = encodeRecord(record, syncedBytes);
      const decoded = decodeHeader(encoded);
      assert.ok(decoded.ok, decoded.ok ? '' : decoded.detail);
      assert.equal(decoded.header.syncedBytes, syncedBytes);
      assert.equal(decoded.header.seq, seq);
      const payload = encoded.subarray(recordHeaderBytes);
      assert.ok(verifyPayload(decoded.header, payload));
      const back = recordFromHeader(decoded.header, payload);
      assert.equal(back.seq, seq);
      assert.equal(entryKey(back), entryKey(entry));
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});

void test('the header layout is little-endian at the documented offsets', () => {
  const encoded = encodeRecord(sample, 1234);
  assert.deepEqual([...encoded.subarray(0, 4)], [0x89, 0x4d, 0x4c, 0x47]);
  assert.equal(encoded.readUInt16LE(4), 1);
  assert.equal(encoded.readUInt8(6), 1);
  assert.equal(encoded.readUInt8(7), 0);
  assert.equal(encoded.readBigUInt64LE(8), 7n);
  assert.equal(encoded.readBigUInt64LE(16), 99n);
  assert.equal(encoded.readBigUInt64LE(24), 4096n);
  assert.equal(encoded.readUInt32LE(32), 10);
  assert.equal(encoded.readUInt32LE(36), 10);
  assert.equal(encoded.readBigUInt64LE(40), 1234n);
  assert.equal(encoded.readUInt32LE(56), 0);
  assert.equal(encoded.readUInt32LE(60), crc32c(encoded.subarray(0, 60)));
  assert.equal(encoded.length, recordHeaderBytes + 10);
});

void test('trim and write-zeroes records carry a length and no payload', () => {
  const encoded = encodeRecord({ kind: 'zeroes', seq: 1n, lamport: 2n, offsetBytes: 0, lengthBytes: 1 << 20 }, 0);
  assert.equal(encoded.length, recordHeaderBytes);
  const decoded = decodeHeader(encoded);
  assert.ok(decoded.ok);
  assert.equal(decoded.header.kind, 'zeroes');
  assert.equal(decoded.header.lengthBytes, 1 << 20);
  assert.equal(decoded.header.payloadBytes, 0);
  assert.ok(verifyPayload(decoded.header, Buffer.alloc(0)));
});

void test('an unknown format version with a valid header checksum is reported as bad-version', () => {
  const encoded = encodeRecord(sample, 0);
  encoded.writeUInt16LE(2, 4);
  resealHeader(encoded);
  const decoded = decodeHeader(encoded);
  assert.ok(!decoded.ok);
  assert.equal(decoded.fault, 'bad-version');
});

void test('decode rejects implausible fields even when the header checksum matches', () => {
  const cases: { name: string; change: (b: Buffer) => void; fault: string }[] = [
    { name: 'unknown kind', change: (b) => b.writeUInt8(9, 6), fault: 'bad-kind' },
    { name: 'flags set', change: (b) => b.writeUInt8(1, 7), fault: 'bad-flags' },
    { name: 'reserved set', change: (b) => b.writeUInt32LE(1, 56), fault: 'bad-reserved' },
    { name: 'length beyond the limit', change: (b) => b.writeUInt32LE(recordPayloadBytesMax + 1, 32), fault: 'bad-length' },
    { name: 'length differs from the payload', change: (b) => b.writeUInt32LE(11, 32), fault: 'bad-length' },
    { name: 'trim with a payload', change: (b) => b.writeUInt8(2, 6), fault: 'bad-length' },
    { name: 'offset beyond 2^53', change: (b) => b.writeUInt32LE(0xffffffff, 28), fault: 'bad-offset' },
    { name: 'syncedBytes beyond 2^53', change: (b) => b.writeUInt32LE(0xffffffff, 44), fault: 'bad-offset' },
  ];
  for (const c of cases) {
    const encoded = encodeRecord(sample, 0);
    c.change(encoded);
    resealHeader(encoded);
    const decoded = decodeHeader(encoded);
    assert.ok(!decoded.ok, c.name);
    assert.equal(decoded.fault, c.fault, c.name);
  }
});

void test('decode reports a short buffer, a bad magic and a bad header checksum', () => {
  const encoded = encodeRecord(sample, 0);
  const short = decodeHeader(encoded.subarray(0, 63));
  assert.ok(!short.ok && short.fault === 'short');
  const magic = Buffer.from(encoded);
  magic[0] = 0;
  const badMagic = decodeHeader(magic);
  assert.ok(!badMagic.ok && badMagic.fault === 'bad-magic');
  const field = Buffer.from(encoded);
  field[20] = (field[20] ?? 0) ^ 1;
  const badChecksum = decodeHeader(field);
  assert.ok(!badChecksum.ok && badChecksum.fault === 'bad-header-checksum');
});

void test('a changed payload fails verification', () => {
  const encoded = encodeRecord(sample, 0);
  const decoded = decodeHeader(encoded);
  assert.ok(decoded.ok);
  const payload = Buffer.from(encoded.subarray(recordHeaderBytes));
  payload[3] = (payload[3] ?? 0) ^ 0x80;
  assert.ok(!verifyPayload(decoded.header, payload));
  assert.ok(!verifyPayload(decoded.header, payload.subarray(1)));
});

void test('bad entry fields are named, and encoding them is an assertion failure', () => {
  const bad = [
    { kind: 'trim', lamport: 1n, offsetBytes: 0, lengthBytes: 0 },
    { kind: 'zeroes', lamport: 1n, offsetBytes: 0, lengthBytes: recordPayloadBytesMax + 1 },
    { kind: 'write', lamport: -1n, offsetBytes: 0, payload: Buffer.alloc(1) },
    { kind: 'write', lamport: 1n, offsetBytes: -5, payload: Buffer.alloc(1) },
    { kind: 'write', lamport: 1n, offsetBytes: 1.5, payload: Buffer.alloc(1) },
    { kind: 'write', lamport: 1n, offsetBytes: Number.MAX_SAFE_INTEGER, payload: Buffer.alloc(1) },
    { kind: 'discard', lamport: 1n, offsetBytes: 0, lengthBytes: 1 },
  ] as unknown as LogRecord[];
  for (const entry of bad) {
    assert.notEqual(checkEntryFields(entry), undefined, JSON.stringify(entry, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    assert.throws(() => encodeRecord({ ...entry, seq: 1n }, 0), /assertion failed/);
  }
  assert.throws(() => encodeRecord({ ...sample, seq: 1n << 64n }, 0), /assertion failed/);
  assert.throws(() => encodeRecord(sample, -1), /assertion failed/);
});
