import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ChunkBuffers, LentChunks } from '../../src/fetch/server.js';
import { fetchChunkBytesMax } from '../../src/fetch/limits.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

/**
 * A model of the fetch server's stream: records of random sizes laid end to end, read in
 * chunks of fetchChunkBytesMax into buffers of a ChunkBuffers, each sent (lent) and later
 * written to the kernel, in order, at random moments. The verifier's end is the last
 * record boundary within what was read. A buffer in use is one whose frame is not written
 * yet, or whose chunk reaches past the verified end (a partial record's views).
 */
void test('a chunk buffer is never read into again while its frame is unwritten or a partial record still needs it', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: Math.floor(3.5 * fetchChunkBytesMax) }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 200 }),
      (recordBytes, writeNow) => {
        const boundaries: number[] = [];
        let total = 0;
        for (const r of recordBytes) boundaries.push((total += r));
        const buffers = new ChunkBuffers();
        const lent = new LentChunks(buffers);
        const inUse: { buffer: Buffer; endBytes: number; entry: { written: boolean } }[] = [];
        const seen = new Set<Buffer>();
        let reused = 0;
        let readEnd = 0;
        let verifiedEnd = 0;
        let step = 0;
        const writeOne = (): void => {
          const first = inUse.find((u) => !u.entry.written);
          if (first !== undefined) lent.written(first.entry, verifiedEnd);
        };
        while (readEnd < total) {
          const buffer = buffers.take();
          const busy = inUse.filter((u) => !u.entry.written || u.endBytes > verifiedEnd);
          assert.ok(!busy.some((u) => u.buffer === buffer), `a buffer in use was handed out again at ${readEnd}`);
          if (seen.has(buffer)) reused++;
          seen.add(buffer);
          const endBytes = Math.min(total, readEnd + fetchChunkBytesMax);
          readEnd = endBytes;
          verifiedEnd = Math.max(verifiedEnd, ...boundaries.filter((b) => b <= readEnd));
          lent.recycle(verifiedEnd);
          inUse.push({ buffer, endBytes, entry: lent.lend(endBytes, buffer) });
          while (writeNow[step++ % writeNow.length] === true && inUse.some((u) => !u.entry.written)) writeOne();
        }
        while (inUse.some((u) => !u.entry.written)) writeOne();
        assert.equal(lent.count, 0, 'at the end of the stream every buffer went back');
        if (writeNow.every((w) => w) && recordBytes.every((r) => r <= fetchChunkBytesMax) && total > 8 * fetchChunkBytesMax) assert.ok(reused > 0, 'written and verified buffers are reused');
      },
    ),
    { seed: fcSeed, numRuns: 200 },
  );
});

void test('a buffer written and verified past is reused, and those kept for reuse are bounded', () => {
  const one = new ChunkBuffers();
  const lent = new LentChunks(one);
  const first = one.take();
  const entry = lent.lend(fetchChunkBytesMax, first);
  lent.recycle(fetchChunkBytesMax);
  assert.notEqual(one.take(), first, 'not while its frame is unwritten');
  lent.written(entry, fetchChunkBytesMax - 1);
  assert.notEqual(one.take(), first, 'not while a partial record reaches into it');
  lent.recycle(fetchChunkBytesMax);
  assert.equal(one.take(), first, 'then it is used again');

  const buffers = new ChunkBuffers();
  const taken = Array.from({ length: 20 }, () => buffers.take());
  for (const b of taken) buffers.give(b);
  assert.ok(buffers.freeCount <= 8, `${buffers.freeCount} kept`);
  assert.ok(buffers.freeCount > 0);
});
