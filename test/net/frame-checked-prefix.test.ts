import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32c } from '@node-rs/crc32';
import { encodeFrame, encodeFrameParts, FrameDecoder, FrameType, frameHeaderBytes, selfCheckedFrameTypes } from '../../src/net/frame.js';
import { chunks, errorCode } from './stream-pieces.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
/** Fetch DATA: the one frame type whose payload carries checks of its own. */
const dataType = 0x29;

/** A frame as encodeFrameParts writes it, from a payload cut into parts at `cuts`, checked over its first `checked` bytes (0: whole). */
function framed(type: number, payload: Buffer, cuts: number[], checked: number): Buffer {
  return Buffer.concat(encodeFrameParts(type, chunks(payload, cuts), checked));
}

const frameArb = fc
  .record({ payload: fc.uint8Array({ minLength: 1, maxLength: 400 }), cuts: fc.array(fc.nat(), { maxLength: 4 }), partial: fc.boolean(), checked: fc.nat() })
  .map(({ payload, cuts, partial, checked }) => ({ payload: Buffer.from(payload), cuts, checked: partial ? 1 + (checked % payload.length) : 0 }));

void test('DATA frames checksummed over a prefix round-trip, mixed with whole-checked frames, through a stream cut anywhere', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
      const stream = Buffer.concat(frames.map((f) => framed(dataType, f.payload, f.cuts, f.checked)));
      const decoder = new FrameDecoder();
      const decoded = chunks(stream, cuts).flatMap((c) => decoder.push(c));
      assert.deepEqual(
        decoded.map((f) => [f.type, [...f.payload]]),
        frames.map((f) => [dataType, [...f.payload]]),
      );
      assert.equal(decoder.bufferedBytes, 0);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('a whole-checked frame is byte for byte what a version-1 peer sends and expects: the checked field is zero', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 4 }), (bytes, cuts) => {
      const payload = Buffer.from(bytes);
      const parts = framed(dataType, payload, cuts, 0);
      assert.deepEqual(parts, encodeFrame(dataType, payload));
      assert.equal(parts.readUInt16LE(6), 0);
      assert.equal(parts.readUInt32LE(12), crc32c(payload));
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});

void test('a bit flipped in the header or the checked prefix is refused; one in the unchecked rest is handed on for the records to catch', () => {
  const payload = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff));
  const checked = 24;
  const frame = framed(dataType, payload, [10, 30], checked);
  assert.equal(frame.readUInt16LE(6), checked);
  for (let bit = 0; bit < frame.length * 8; bit++) {
    const copy = Buffer.from(frame);
    const at = bit >> 3;
    copy[at]! ^= 1 << (bit & 7);
    if (at < frameHeaderBytes + checked) {
      assert.throws(() => new FrameDecoder().push(copy), (e: unknown) => ['FRAME_CORRUPT', 'FRAME_BAD_VERSION', 'FRAME_TOO_LARGE'].includes(errorCode(e) ?? ''), `bit ${bit}`);
    } else {
      const frames = new FrameDecoder().push(copy);
      assert.equal(frames.length, 1, `bit ${bit}`);
      assert.deepEqual(frames[0]!.payload, copy.subarray(frameHeaderBytes), `bit ${bit}: the flipped byte is what the receiver gets`);
      assert.notDeepEqual(frames[0]!.payload, payload);
    }
  }
});

/** A header with a valid header checksum and the given checked field. */
function forgedHeader(type: number, length: number, checked: number): Buffer {
  const header = Buffer.alloc(frameHeaderBytes);
  header.write('MARS', 0, 'ascii');
  header.writeUInt8(1, 4);
  header.writeUInt8(type, 5);
  header.writeUInt16LE(checked, 6);
  header.writeUInt32LE(length, 8);
  header.writeUInt32LE(crc32c(Buffer.alloc(0)), 12);
  header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
  return header;
}

void test('a partial checksum is refused on every frame type but DATA, and beyond the payload it claims to cover', () => {
  assert.deepEqual([...selfCheckedFrameTypes], [dataType]);
  for (const type of [FrameType.helloInitiator, FrameType.proof, FrameType.accept, FrameType.keepalive, FrameType.meta, 0x20, 0x21, 0x28, 0x2e, 0x30, 0x3f]) {
    assert.throws(() => new FrameDecoder().push(forgedHeader(type, 8, 1)), (e: unknown) => errorCode(e) === 'FRAME_CORRUPT', `type ${type}`);
    assert.throws(() => encodeFrameParts(type, [Buffer.alloc(8)], 1), /assertion failed/);
  }
  assert.throws(() => new FrameDecoder().push(forgedHeader(dataType, 8, 9)), (e: unknown) => errorCode(e) === 'FRAME_CORRUPT' && /9 bytes of a 8-byte payload/.test((e as Error).message));
  assert.throws(() => encodeFrameParts(dataType, [Buffer.alloc(8)], 9), /assertion failed/);
  // The same header with a checked field in range passes the header checks (and waits for its payload).
  const decoder = new FrameDecoder();
  assert.deepEqual(decoder.push(forgedHeader(dataType, 8, 8)), []);
  assert.equal(decoder.bufferedBytes, 0);
});
