import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { Compressor, skipChunksAfterMiss } from '../../src/compress/index.js';

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
