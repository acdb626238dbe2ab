import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Random } from '../../src/core/random.js';
import { encodeFrame, FrameDecoder, type Frame } from '../../src/net/frame.js';
import { decoderPoolBufferBytes, decoderPoolBuffersMax, decoderPooledBytesMin } from '../../src/net/limits.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const dataType = 0x34;
const chunkBytes = 64 * 1024;

/** Feeds `bytes` to the decoder in socket-sized chunks (each a fresh buffer, as a socket's are). */
function feed(decoder: FrameDecoder, bytes: Buffer, size = chunkBytes): Frame[] {
  const frames: Frame[] = [];
  for (let at = 0; at < bytes.length; at += size) frames.push(...decoder.push(Buffer.from(bytes.subarray(at, at + size))));
  return frames;
}

/** A decoder whose consumer has released once (before that, joins use buffers of the payload's own size). */
function releasingDecoder(): FrameDecoder {
  const decoder = new FrameDecoder();
  const [f] = feed(decoder, encodeFrame(dataType, Buffer.alloc(200 * 1024, 1)));
  assert.ok(f!.release !== undefined);
  assert.equal(f!.payload.buffer.byteLength, 200 * 1024, 'until a consumer releases, a join takes only what the payload needs');
  f!.release();
  return decoder;
}

void test('a consumer that never releases gets payload-sized buffers, however many frames come', () => {
  const decoder = new FrameDecoder();
  const frames = feed(decoder, Buffer.concat(Array.from({ length: 8 }, (_, i) => encodeFrame(dataType, Buffer.alloc(100 * 1024 + i, i)))));
  assert.deepEqual(
    frames.map((f) => f.payload.buffer.byteLength),
    frames.map((_, i) => 100 * 1024 + i),
  );
});

void test('a large payload split over chunks is joined into a reusable buffer, and a released one is reused', () => {
  const decoder = releasingDecoder();
  const rnd = new Random(7);
  const first = rnd.bytes(1024 * 1024 + 8);
  const [a] = feed(decoder, encodeFrame(dataType, first));
  assert.ok(a !== undefined && a.payload.equals(first));
  assert.equal(typeof a.release, 'function', 'a joined large payload is pooled');
  assert.equal(a.payload.buffer.byteLength, decoderPoolBufferBytes);
  const pooled = a.payload.buffer;
  a.release!();
  a.release!(); // twice is harmless: the buffer is pooled once
  const second = rnd.bytes(512 * 1024);
  const third = rnd.bytes(300 * 1024);
  const [b, c] = feed(decoder, Buffer.concat([encodeFrame(dataType, second), encodeFrame(dataType, third)]));
  assert.ok(b!.payload.equals(second) && c!.payload.equals(third));
  assert.equal(b!.payload.buffer, pooled, 'the released buffer is used again');
  assert.notEqual(c!.payload.buffer, pooled, 'but only once: the pool held one buffer');
});

void test('small payloads and payloads that arrive in one chunk are never pooled', () => {
  const decoder = new FrameDecoder();
  const small = new Random(8).bytes(decoderPooledBytesMin - 1);
  const [s] = feed(decoder, encodeFrame(dataType, small), 1000);
  assert.ok(s!.payload.equals(small));
  assert.equal(s!.release, undefined);
  const whole = new Random(9).bytes(200 * 1024);
  const [w] = decoder.push(encodeFrame(dataType, whole)); // one chunk: a view of it, no join
  assert.ok(w!.payload.equals(whole));
  assert.equal(w!.release, undefined);
});

void test('the pool keeps at most decoderPoolBuffersMax buffers', () => {
  const decoder = releasingDecoder();
  const rnd = new Random(10);
  const n = decoderPoolBuffersMax + 3;
  const frames = feed(decoder, Buffer.concat(Array.from({ length: n }, () => encodeFrame(dataType, rnd.bytes(128 * 1024)))));
  assert.equal(frames.length, n);
  const buffers = new Set(frames.map((f) => f.payload.buffer));
  assert.equal(buffers.size, n, 'nothing released yet: every payload has its own buffer');
  for (const f of frames) f.release!();
  const again = feed(decoder, Buffer.concat(Array.from({ length: n }, () => encodeFrame(dataType, rnd.bytes(128 * 1024)))));
  const reused = again.filter((f) => buffers.has(f.payload.buffer)).length;
  assert.equal(reused, decoderPoolBuffersMax, 'exactly the pooled buffers come back, the rest are new');
});

void test('a payload still held is never overwritten, whatever is released around it', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ bytes: fc.integer({ min: 1, max: 300 * 1024 }), release: fc.boolean() }), { minLength: 1, maxLength: 24 }),
      fc.integer({ min: 1000, max: 100_000 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      (specs, chunk, seed) => {
        const rnd = new Random(seed);
        const payloads = specs.map((s) => rnd.bytes(s.bytes));
        const decoder = releasingDecoder();
        const held: { frame: Frame; original: Buffer }[] = [];
        let i = 0;
        // Two passes over the same stream, so that the second reuses what the first released.
        for (const pass of [0, 1]) {
          const frames = feed(decoder, Buffer.concat(payloads.map((p) => encodeFrame(dataType, p))), chunk);
          assert.equal(frames.length, payloads.length, `pass ${pass}`);
          for (const [k, frame] of frames.entries()) {
            assert.ok(frame.payload.equals(payloads[k]!), `pass ${pass}, frame ${k} arrives intact`);
            if (specs[k]!.release && frame.release !== undefined) frame.release();
            else held.push({ frame, original: payloads[k]! });
            i++;
          }
        }
        for (const h of held) assert.ok(h.frame.payload.equals(h.original), 'a payload not released stays intact');
        return i === 2 * payloads.length;
      },
    ),
    { seed: fcSeed, numRuns: 60 },
  );
});
