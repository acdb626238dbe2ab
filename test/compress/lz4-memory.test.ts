/**
 * lz4 (un)compression keeps marsd's memory bounded: the library's own buffers are
 * allocated and freed on the lz4 threads (src/compress/lz4-thread.ts). Through libuv's thread
 * pool, every pool thread's allocator kept what the main thread freed, and the resident
 * set grew by hundreds of MiB over a few hundred chunks (docs/benchmarks.md, "Memory").
 * The resident set is sampled after every chunk (in a child process with marsd's settings),
 * not looked at once at the end.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableCompressions, Compressor, decompress } from '../../src/compress/index.js';
import { stopLz4Threads } from '../../src/compress/lz4-worker.js';
import { lz4JobsInFlightMax } from '../../src/compress/limits.js';

const chunks = 480;
/** Chunks in flight at once, as a fetch stream reading ahead on a few links. */
const concurrency = 8;
/** What the resident set may grow by over the run: the jobs in flight, the lz4 threads (an isolate and an allocator heap each) and garbage not yet collected. */
const rssGrowthBytesMax = 256 * 1024 * 1024;
/** marsd's settings (bin/marsd): the memory lz4 kept grew with the number of pool threads. */
const marsdEnv = { UV_THREADPOOL_SIZE: '16', MALLOC_MMAP_THRESHOLD_: '4194304' };
const childPath = fileURLToPath(new URL('./lz4-memory-child.js', import.meta.url));

function chunk(seed: number): Buffer {
  const b = Buffer.alloc(1024 * 1024);
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

void test('lz4 round trips of hundreds of 1 MiB chunks keep the resident set bounded, with marsd\'s 16 pool threads', { skip: !hasLz4 && 'lz4-napi does not load here', timeout: 120_000 }, async () => {
  const child = spawn(process.execPath, [childPath, String(chunks), String(concurrency)], { env: { ...process.env, ...marsdEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let seen = 0;
  let failure: string | undefined;
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      const r = JSON.parse(line) as { chunk: number; growthBytes: number; inFlight: number };
      seen++;
      if (r.growthBytes > rssGrowthBytesMax) failure ??= `after chunk ${r.chunk} the resident set grew by ${(r.growthBytes / 2 ** 20).toFixed(0)} MiB`;
      if (r.inFlight > lz4JobsInFlightMax) failure ??= `${r.inFlight} jobs at the lz4 threads, more than ${lz4JobsInFlightMax}`;
      if (failure !== undefined) break;
    }
  } finally {
    if (failure !== undefined) child.kill('SIGKILL');
  }
  const code = await exited;
  assert.equal(failure, undefined);
  assert.equal(code, 0, `the child failed: ${stderr}`);
  assert.equal(seen, chunks, 'a line for every chunk');
});

void test('dying lz4 threads fail the jobs in flight with EIO, and the next job starts a new one', { skip: !hasLz4 && 'lz4-napi does not load here', timeout: 30_000 }, async () => {
  const compressor = new Compressor('lz4');
  const source = chunk(99);
  const inFlight = Array.from({ length: 4 }, () => compressor.compress(source).then(() => 'done', (err: unknown) => (err as Error & { code?: string }).code ?? (err as Error).message));
  await stopLz4Threads();
  const outcomes = await Promise.all(inFlight);
  for (const o of outcomes) assert.ok(o === 'done' || o === 'EIO', `a job ends done or with EIO, not ${o}`);
  const packed = await new Compressor('lz4').compress(source);
  assert.ok(packed !== undefined);
  assert.ok((await decompress('lz4', packed, source.length)).equals(source));
});
