import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { allRuns, runBlocks } from '../../src/sync/compare.js';
import { isZeroBlock } from '../../src/sync/digest.js';
import { RangeModePolicy } from '../../src/sync/range-mode.js';
import { decodeSyncState, encodeSyncState } from '../../src/sync/state-file.js';
import { blockDigests, differingRuns, isConsistentAfterSync, loadSyncState, ProgressBook, saveSyncState, syncLimits, TokenBucket, type Run } from '../../src/sync/index.js';
import { endPosition, startPosition } from './helpers.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const { blockBytes } = syncLimits;

/** The dumb model: one run per block, then merged with its neighbour when adjacent and of the same kind. */
function modelRuns(differs: boolean[], zero: boolean[]): Run[] {
  const runs: { firstBlock: number; blocks: number; kind: 'data' | 'zero' }[] = [];
  differs.forEach((d, i) => {
    if (!d) return;
    const kind = zero[i] ? 'zero' : 'data';
    const last = runs[runs.length - 1];
    if (last !== undefined && last.kind === kind && last.firstBlock + last.blocks === i) last.blocks++;
    else runs.push({ firstBlock: i, blocks: 1, kind });
  });
  return runs;
}

void test('the runs to send are exactly the differing blocks, coalesced, zero blocks apart', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.boolean()), { minLength: 1, maxLength: 256 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (blocks, seed) => {
      const source = Buffer.alloc(blocks.length * 8);
      const target = Buffer.alloc(blocks.length * 8);
      blocks.forEach(([differs], i) => {
        source.writeBigUInt64LE(seed ^ BigInt(i), i * 8);
        target.writeBigUInt64LE(differs ? seed ^ BigInt(i) ^ (1n << BigInt(i % 64)) : seed ^ BigInt(i), i * 8);
      });
      const asked: number[] = [];
      const runs = differingRuns(source, target, (i) => (asked.push(i), blocks[i]![1]));
      assert.deepEqual(runs, modelRuns(blocks.map(([d]) => d), blocks.map(([, z]) => z)));
      assert.deepEqual(asked, blocks.flatMap(([d], i) => (d ? [i] : [])), 'isZero is asked only of differing blocks');
      assert.equal(runBlocks(runs), blocks.filter(([d]) => d).length);
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});

void test('a copied range is every block, zero runs apart', () => {
  assert.deepEqual(allRuns(5, (i) => i === 1 || i === 2), [
    { firstBlock: 0, blocks: 1, kind: 'data' },
    { firstBlock: 1, blocks: 2, kind: 'zero' },
    { firstBlock: 3, blocks: 2, kind: 'data' },
  ]);
});

void test('block digests depend on every byte, on the seed, and cover a short last block', () => {
  const data = Buffer.alloc(2 * blockBytes + 100, 1);
  const a = blockDigests(data, 1n);
  assert.equal(a.length, 3 * 8);
  const flipped = Buffer.from(data);
  flipped[blockBytes + 17] = 2;
  const b = blockDigests(flipped, 1n);
  assert.ok(a.subarray(0, 8).equals(b.subarray(0, 8)) && !a.subarray(8, 16).equals(b.subarray(8, 16)) && a.subarray(16).equals(b.subarray(16)));
  assert.ok(!blockDigests(data, 2n).subarray(0, 8).equals(a.subarray(0, 8)), 'another seed, other digests');
  const zeroes = Buffer.alloc(blockBytes + 8);
  assert.ok(isZeroBlock(zeroes, 0, blockBytes) && isZeroBlock(zeroes, blockBytes, blockBytes + 8));
  zeroes[blockBytes - 1] = 1;
  assert.ok(!isZeroBlock(zeroes, 0, blockBytes), 'a non-zero last byte');
});

void test('copy mode starts after several almost wholly different ranges, probes, and ends at the first alike range', () => {
  const policy = new RangeModePolicy(true);
  const modes: string[] = [];
  for (let i = 0; i < syncLimits.copyModeAfterRanges; i++) {
    modes.push(policy.next());
    policy.answered(256, 256);
  }
  assert.deepEqual(modes, Array<string>(syncLimits.copyModeAfterRanges).fill('digests'));
  const next = Array.from({ length: syncLimits.copyModeProbeRanges }, () => policy.next());
  assert.deepEqual(next, [...Array<string>(syncLimits.copyModeProbeRanges - 1).fill('copy'), 'digests'], 'every so often a probe');
  policy.answered(256, 10); // the probe found a range that is mostly alike
  assert.equal(policy.next(), 'digests');
  assert.equal(policy.copyMode, false);
  const off = new RangeModePolicy(false);
  for (let i = 0; i < 10; i++) off.answered(256, 256);
  assert.equal(off.next(), 'digests', 'disabled: always digests');
});

void test('progress counts a contiguous prefix, whatever order ranges finish in, and a rate over time', () => {
  const book = new ProgressBook(10 * blockBytes, 0);
  book.finished(2 * blockBytes, blockBytes, 0);
  assert.equal(book.doneBytes, 0);
  book.finished(blockBytes, blockBytes, 0);
  book.finished(blockBytes, blockBytes, 0); // twice: harmless
  assert.equal(book.doneBytes, 0);
  book.finished(0, blockBytes, 1000);
  assert.equal(book.doneBytes, 3 * blockBytes);
  book.finished(3 * blockBytes, 7 * blockBytes, 2000);
  assert.ok(book.complete);
  assert.equal(book.restBytes, 0);
  assert.equal(book.rateBytesPerS(2000), 7 * blockBytes, '7 blocks in one second');
  book.resetRate();
  assert.equal(book.rateBytesPerS(2000), 0);
  assert.throws(() => book.finished(10 * blockBytes, 1, 0), /out of the device/);
});

void test('the token bucket lets a burst through, then the rate, and repays debt before more', () => {
  const clock = new ManualClock(0);
  const bucket = new TokenBucket(clock, 1000, 500);
  assert.equal(bucket.delayMs(), 0);
  bucket.take(1500); // 500 burst, 1000 of debt
  assert.equal(bucket.delayMs(), 1000);
  clock.advance(600);
  assert.equal(bucket.delayMs(), 400);
  clock.advance(400);
  assert.equal(bucket.delayMs(), 0);
  clock.advance(60_000);
  bucket.take(600);
  assert.equal(bucket.delayMs(), 100, 'idle time earns at most the burst');
  bucket.setRate(0);
  assert.equal(bucket.delayMs(), 0, 'unlimited');
});

void test('the sync state file round-trips and refuses damage', async () => {
  const state = { resource: 'r0', sizeBytes: 1 << 30, nextBytes: 1 << 20, startPosition, endPosition: undefined };
  assert.deepEqual(decodeSyncState(encodeSyncState(state), 'f'), state);
  const storage = new MemStorage();
  await saveSyncState(storage, { ...state, nextBytes: 1 << 30, endPosition });
  assert.deepEqual(await loadSyncState(storage), { ...state, nextBytes: 1 << 30, endPosition });
  assert.throws(() => decodeSyncState(Buffer.from('{'), 'f'), { code: 'SYNC_STATE_CORRUPT' });
  assert.throws(() => decodeSyncState(Buffer.from(encodeSyncState(state).toString().replace('"formatVersion": 1', '"formatVersion": 2')), 'f'), /unknown format version 2/);
  assert.throws(() => decodeSyncState(encodeSyncState({ ...state, endPosition }), 'f'), /endPosition set before the end/);
  assert.throws(() => decodeSyncState(encodeSyncState({ ...state, nextBytes: 2 ** 31 }), 'f'), /nextBytes/);
});

void test('a synced copy is consistent only once sync is done and replay has reached its end position', () => {
  const running = { resource: 'r0', sizeBytes: 4096, nextBytes: 0, startPosition, endPosition: undefined };
  const done = { ...running, nextBytes: 4096, endPosition };
  assert.equal(isConsistentAfterSync(undefined, endPosition), false);
  assert.equal(isConsistentAfterSync(running, endPosition), false);
  assert.equal(isConsistentAfterSync(done, undefined), false);
  assert.equal(isConsistentAfterSync(done, startPosition), false);
  assert.equal(isConsistentAfterSync(done, endPosition), true);
  assert.equal(isConsistentAfterSync(done, { ...endPosition, logNumber: endPosition.logNumber + 1, offsetBytes: 0 }), true);
});
