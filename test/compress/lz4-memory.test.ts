/**
 * lz4 (un)compression keeps marsd's memory bounded: the library's own buffers are
 * allocated and freed on one thread (src/compress/lz4-thread.ts). Through libuv's thread
 * pool, every pool thread's allocator kept what the main thread freed, and the resident
 * set grew by hundreds of MiB over a few hundred chunks (docs/benchmarks.md, "Memory").
 * The resident set is sampled after every chunk, not looked at once at the end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableCompressions, Compressor, decompress } from '../../src/compress/index.js';
import { lz4Load, stopLz4Threads } from '../../src/compress/lz4-worker.js';
import { lz4JobsInFlightMax } from '../../src/compress/limits.js';

const chunkBytes = 1024 * 1024;
const chunks = 320;
/** Chunks in flight at once, as a fetch stream reading ahead on a few links. */
const concurrency = 12;
/** What the resident set may grow by over the run: the chunks in flight and their outputs, with room for the heap. */
const rssGrowthBytesMax = 160 * 1024 * 1024;

/** Seeded xorshift: a chunk that compresses (one random byte in four) and differs per chunk. */
function chunk(seed: number): Buffer {
  const b = Buffer.alloc(chunkBytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const hasLz4 = availableCompressions().includes('lz4');

void test('lz4 round trips of hundreds of 1 MiB chunks keep the resident set bounded', { skip: !hasLz4 && 'lz4-napi does not load here', timeout: 120_000 }, async () => {
  const sources = Array.from({ length: 16 }, (_, i) => chunk(i + 1));
  const compressor = new Compressor('lz4');
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  let peakInFlight = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < chunks) {
      const n = next++;
      const source = sources[n % sources.length]!.subarray(0, chunkBytes - (n % 7) * 4096);
      const packed = await compressor.compress(source);
      assert.ok(packed !== undefined, `chunk ${n} compresses`);
      peakInFlight = Math.max(peakInFlight, lz4Load().inFlight);
      const raw = await decompress('lz4', packed, source.length);
      assert.ok(raw.equals(source), `chunk ${n} comes back as it was`);
      peak = Math.max(peak, process.memoryUsage().rss);
      assert.ok(peak - baseline <= rssGrowthBytesMax, `after chunk ${n} the resident set grew by ${((peak - baseline) / 2 ** 20).toFixed(0)} MiB`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  assert.ok(peakInFlight <= lz4JobsInFlightMax, `at most ${lz4JobsInFlightMax} jobs at the lz4 thread (saw ${peakInFlight})`);
});

void test('dying lz4 threads fail the jobs in flight with EIO, and the next job starts a new one', { skip: !hasLz4 && 'lz4-napi does not load here', timeout: 30_000 }, async () => {
  const compressor = new Compressor('lz4');
  const source = chunk(99);
  const inFlight = Array.from({ length: 4 }, () => compressor.compress(source).then(() => 'done', (err: Error & { code?: string }) => err.code ?? err.message));
  await stopLz4Threads();
  const outcomes = await Promise.all(inFlight);
  for (const o of outcomes) assert.ok(o === 'done' || o === 'EIO', `a job ends done or with EIO, not ${o}`);
  const packed = await new Compressor('lz4').compress(source);
  assert.ok(packed !== undefined);
  assert.ok((await decompress('lz4', packed, source.length)).equals(source));
});
