import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Random } from '../../src/core/random.js';
import { encodeFrame, FrameDecoder, FrameType, type Frame } from '../../src/net/frame.js';
import { decoderPoolBufferBytes } from '../../src/net/limits.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const dataType = 0x29;

/**
 * Feeds `stream` as a socket with one reusable read buffer does: each read is copied into
 * the same buffer and handed over as a view of it, and the buffer is scribbled over right
 * after push returns (the next read rewrites it), so any frame or leftover that still
 * pointed into it would change.
 */
function feedBorrowed(decoder: FrameDecoder, stream: Buffer, readBuffer: Buffer, readSizes: readonly number[], onFrames: (frames: Frame[]) => void): void {
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const size = Math.min(readSizes[i % readSizes.length]!, readBuffer.length, stream.length - at);
    stream.copy(readBuffer, 0, at, at + size);
    at += size;
    const frames = decoder.push(readBuffer.subarray(0, size), undefined, true);
    readBuffer.fill(0xa5 ^ (i & 0xff));
    onFrames(frames);
  }
}

void test('frames decoded from a reused read buffer stay intact after the buffer is rewritten', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ bytes: fc.integer({ min: 0, max: 1024 * 1024 + 16 }), release: fc.boolean() }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.integer({ min: 1, max: 300 * 1024 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      (specs, readSizes, seed) => {
        const rnd = new Random(seed);
        const payloads = specs.map((s) => rnd.bytes(s.bytes));
        const stream = Buffer.concat(payloads.map((p) => encodeFrame(dataType, p)));
        const decoder = new FrameDecoder();
        const readBuffer = Buffer.alloc(256 * 1024);
        const held: { frame: Frame; original: Buffer }[] = [];
        let k = 0;
        // Two passes, so that the second reuses the payload buffers the first released.
        for (let pass = 0; pass < 2; pass++) {
          feedBorrowed(decoder, stream, readBuffer, readSizes, (frames) => {
            for (const frame of frames) {
              const index = k % payloads.length;
              assert.ok(frame.payload.equals(payloads[index]!), `frame ${k} arrives intact`);
              assert.notEqual(frame.payload.buffer, readBuffer.buffer, 'no frame is a view of the read buffer');
              if (specs[index]!.release && frame.release !== undefined) frame.release();
              else held.push({ frame, original: payloads[index]! });
              k++;
            }
          });
          assert.equal(decoder.bufferedBytes, 0, 'nothing left over at a frame boundary');
        }
        assert.equal(k, 2 * payloads.length);
        for (const h of held) assert.ok(h.frame.payload.equals(h.original), 'a payload not released stays intact however the read buffer and the pool are reused');
      },
    ),
    { seed: fcSeed, numRuns: 40 },
  );
});

void test('a large payload read through a reused buffer goes into a pooled buffer that comes back once released', () => {
  const decoder = new FrameDecoder();
  const readBuffer = Buffer.alloc(64 * 1024);
  const rnd = new Random(11);
  const got: Frame[] = [];
  const payloads = [rnd.bytes(1024 * 1024), rnd.bytes(1024 * 1024), rnd.bytes(1024 * 1024)];
  // The first frame shows that the consumer releases; from then on buffers come from the pool.
  feedBorrowed(decoder, encodeFrame(dataType, payloads[0]!), readBuffer, [65_536], (frames) => got.push(...frames));
  got[0]!.release!();
  feedBorrowed(decoder, encodeFrame(dataType, payloads[1]!), readBuffer, [65_536], (frames) => got.push(...frames));
  assert.equal(got[1]!.payload.buffer.byteLength, decoderPoolBufferBytes);
  const pooled = got[1]!.payload.buffer;
  got[1]!.release!();
  feedBorrowed(decoder, encodeFrame(dataType, payloads[2]!), readBuffer, [1000, 65_536], (frames) => got.push(...frames));
  assert.equal(got[2]!.payload.buffer, pooled, 'the released buffer is used again');
  assert.ok(got[2]!.payload.equals(payloads[2]!));
});

void test('what follows the handshake in a borrowed read is kept until the limit is raised', () => {
  const decoder = new FrameDecoder(512);
  const after = new Random(12).bytes(4000); // larger than the handshake's limit
  const stream = Buffer.concat([encodeFrame(FrameType.accept, Buffer.from('ok')), encodeFrame(FrameType.meta, after)]);
  const readBuffer = Buffer.from(stream);
  const first = decoder.push(readBuffer, (f) => f.type === FrameType.accept, true);
  readBuffer.fill(0);
  assert.deepEqual(
    first.map((f) => f.type),
    [FrameType.accept],
  );
  decoder.limitBytes = 1024 * 1024;
  const rest = decoder.push(Buffer.alloc(0));
  assert.equal(rest.length, 1);
  assert.ok(rest[0]!.payload.equals(after));
});

void test('a payload that lies in one chunk of the receiver\'s own is a view of it, in a borrowed one a copy', () => {
  const payload = new Random(13).bytes(4096);
  const frame = encodeFrame(dataType, payload);
  const owned = new FrameDecoder().push(frame);
  assert.equal(owned[0]!.payload.buffer, frame.buffer, 'owned: no copy');
  const borrowed = new FrameDecoder().push(frame, undefined, true);
  assert.notEqual(borrowed[0]!.payload.buffer, frame.buffer, 'borrowed: a copy');
  assert.ok(borrowed[0]!.payload.equals(payload));
});
