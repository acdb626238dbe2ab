import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Random } from '../../src/core/random.js';
import { Compressor, skipChunksAfterMiss, skipChunksAfterMissMax } from '../../src/compress/index.js';

const chunkBytes = 64 * 1024;
const aheadChunks = 4;

/** Offers `chunks` as the fetch server does: `aheadChunks` compressions started before the first is awaited. */
async function offerAhead(compressor: Compressor, chunks: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
  const pending: Promise<Buffer | undefined>[] = [];
  const out: (Buffer | undefined)[] = [];
  for (const chunk of chunks) {
    pending.push(compressor.compress(chunk));
    if (pending.length >= aheadChunks) out.push(await pending.shift()!);
  }
  for (const p of pending) out.push(await p);
  return out;
}

void test('data that does not compress is tried about once per skipChunksAfterMiss chunks, however many are compressed ahead', async () => {
  const random = new Random(41);
  const chunks = Array.from({ length: 200 }, () => random.bytes(chunkBytes));
  const compressor = new Compressor('deflate');
  const out = await offerAhead(compressor, chunks);
  assert.ok(out.every((o) => o === undefined), 'random data is sent plain');
  const bound = aheadChunks + Math.ceil(chunks.length / skipChunksAfterMiss);
  assert.ok(compressor.tried <= bound, `${compressor.tried} of ${chunks.length} chunks tried (at most ${bound})`);
});

void test('data that compresses is compressed chunk by chunk, several at a time', async () => {
  const chunks = Array.from({ length: 40 }, (_, i) => Buffer.alloc(chunkBytes, i));
  const compressor = new Compressor('deflate');
  const out = await offerAhead(compressor, chunks);
  assert.ok(out.every((o) => o !== undefined && o.length < chunkBytes / 10), 'every chunk compressed');
  assert.equal(compressor.tried, chunks.length);
});

void test('a long run of data that does not compress is tried less and less often: each miss in a row doubles the skip', async () => {
  const random = new Random(43);
  const chunk = random.bytes(1024);
  const compressor = new Compressor('deflate');
  for (let i = 0; i < 512; i++) assert.equal(await compressor.compress(chunk), undefined);
  // Tried at chunk 0, then after skips of 16, 32, 64, 128, 128, 128: chunks 0, 17, 50, 115, 244, 373, 502.
  assert.equal(compressor.tried, 7);
});

/**
 * The skip as a state machine, offered chunks one at a time (the sync source): against a
 * model of the rule, for any sequence of compressible and random chunks, which chunks are
 * tried; and whatever the sequence, compressible data is never sent plain for more than
 * `skipChunksAfterMissMax` chunks in a row.
 */
void test('the skip after misses follows its rule for any mix of data, and compressible data waits at most skipChunksAfterMissMax chunks', async () => {
  const random = new Random(47);
  const plain = random.bytes(1024);
  const compressible = Buffer.alloc(1024, 7);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 8 }), async (runs) => {
      const compressor = new Compressor('deflate');
      let skip = 0;
      let nextSkip = skipChunksAfterMiss;
      let plainCompressibleInRow = 0;
      for (const [compresses, count] of runs) {
        for (let i = 0; i < count; i++) {
          const triedBefore = compressor.tried;
          const out = await compressor.compress(compresses ? compressible : plain);
          const modelTries = skip === 0;
          assert.equal(compressor.tried - triedBefore, modelTries ? 1 : 0, 'tried exactly when the model tries');
          if (!modelTries) skip--;
          else if (compresses) nextSkip = skipChunksAfterMiss;
          else {
            skip = nextSkip;
            nextSkip = Math.min(skipChunksAfterMissMax, nextSkip * 2);
          }
          assert.equal(out !== undefined, modelTries && compresses);
          plainCompressibleInRow = compresses && out === undefined ? plainCompressibleInRow + 1 : 0;
          assert.ok(plainCompressibleInRow <= skipChunksAfterMissMax, `${plainCompressibleInRow} compressible chunks in a row sent plain`);
        }
      }
    }),
    { seed: 53, numRuns: 60 },
  );
});
