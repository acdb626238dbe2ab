import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32c } from '@node-rs/crc32';
import { encodeFrame, encodeFrameParts, FrameDecoder, FrameType, frameHeaderBytes } from '../../src/net/frame.js';
import { frameBytesMax, handshakeFrameBytesMax } from '../../src/net/limits.js';
import { chunks, errorCode } from './stream-pieces.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const typeArb = fc.constantFrom(FrameType.helloInitiator, FrameType.proof, FrameType.keepalive, FrameType.meta, 0x20, 0x3f);

void test('frames round-trip through a stream cut anywhere', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ type: typeArb, payload: fc.uint8Array({ maxLength: 300 }) }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
      const stream = Buffer.concat(frames.map((f) => encodeFrame(f.type, Buffer.from(f.payload))));
      const decoder = new FrameDecoder();
      const decoded = chunks(stream, cuts).flatMap((c) => decoder.push(c));
      assert.deepEqual(
        decoded.map((f) => ({ type: f.type, payload: [...f.payload] })),
        frames.map((f) => ({ type: f.type, payload: [...f.payload] })),
      );
      assert.equal(decoder.bufferedBytes, 0);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('every single-bit flip of a frame is rejected', () => {
  for (const payload of [Buffer.alloc(0), Buffer.from('{"type":"digest"}'), Buffer.from([0, 1, 2, 255])]) {
    const frame = encodeFrame(FrameType.meta, payload);
    for (let bit = 0; bit < frame.length * 8; bit++) {
      const copy = Buffer.from(frame);
      copy[bit >> 3]! ^= 1 << (bit & 7);
      assert.throws(() => new FrameDecoder().push(copy), (e: unknown) => ['FRAME_CORRUPT', 'FRAME_BAD_VERSION', 'FRAME_TOO_LARGE'].includes(errorCode(e) ?? ''), `bit ${bit}`);
    }
  }
});

/** A header with a valid header checksum, for lengths and versions a real encoder would never write. */
function forgedHeader(version: number, type: number, length: number): Buffer {
  const header = Buffer.alloc(frameHeaderBytes);
  header.write('MARS', 0, 'ascii');
  header.writeUInt8(version, 4);
  header.writeUInt8(type, 5);
  header.writeUInt32LE(length, 8);
  header.writeUInt32LE(0, 12);
  header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
  return header;
}

void test('an oversized length is refused from the header alone, before the payload is awaited or allocated', () => {
  const decoder = new FrameDecoder();
  assert.throws(() => decoder.push(forgedHeader(1, FrameType.meta, 0xffffffff)), (e: unknown) => errorCode(e) === 'FRAME_TOO_LARGE');
  assert.equal(decoder.bufferedBytes, 0);
  assert.throws(() => new FrameDecoder().push(forgedHeader(1, FrameType.meta, frameBytesMax + 1)), (e: unknown) => errorCode(e) === 'FRAME_TOO_LARGE');
  // Before authentication the limit is far smaller.
  assert.throws(() => new FrameDecoder(handshakeFrameBytesMax).push(forgedHeader(1, FrameType.helloInitiator, handshakeFrameBytesMax + 1)), (e: unknown) => errorCode(e) === 'FRAME_TOO_LARGE');
});

void test('an unknown frame version or type is refused explicitly', () => {
  assert.throws(() => new FrameDecoder().push(forgedHeader(2, FrameType.meta, 0)), (e: unknown) => errorCode(e) === 'FRAME_BAD_VERSION');
  assert.throws(() => new FrameDecoder().push(forgedHeader(1, 0x7f, 0)), (e: unknown) => errorCode(e) === 'FRAME_CORRUPT');
});

void test('garbage is refused as soon as its first bytes arrive', () => {
  assert.throws(() => new FrameDecoder().push(Buffer.from('G')), (e: unknown) => errorCode(e) === 'FRAME_CORRUPT');
  assert.throws(() => new FrameDecoder().push(Buffer.from('GET / HTTP/1.1\r\n\r\n')), (e: unknown) => errorCode(e) === 'FRAME_CORRUPT');
  fc.assert(
    fc.property(fc.uint8Array({ minLength: frameHeaderBytes, maxLength: 200 }), (bytes) => {
      const decoder = new FrameDecoder();
      assert.throws(() => decoder.push(Buffer.from(bytes)), (e: unknown) => errorCode(e) !== undefined);
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});

test('a frame sent as parts is byte for byte the frame of the joined payload', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 5 }), fc.constantFrom(FrameType.meta, 0x29, 0x34), (arrays, type) => {
      const parts = arrays.map((a) => Buffer.from(a));
      assert.ok(Buffer.concat(encodeFrameParts(type, parts)).equals(encodeFrame(type, Buffer.concat(parts))));
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});
