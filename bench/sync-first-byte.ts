/**
 * What stood on a full sync's way to its first byte, each measured alone on this machine
 * (docs/benchmarks.md, "Full sync (b): the way to the first byte"). Standalone:
 *   npm run build && node dist/bench/sync-first-byte.js
 * Each round, interleaved:
 * - the start-position persist: one 1 MiB range written, then the device fdatasync and an
 *   atomic write of a sync state file (what the target did before asking for any range);
 * - one metadata scope-file write (`writeAtomic`; join-resource did one more of them);
 * - the first lz4 chunk of a process whose lz4 threads are not started, and the same after
 *   `Compressor.warmUp()` had time to start them.
 * Settings: BENCH_DIR (parent of the temporary directory, default os.tmpdir()),
 * BENCH_FIRST_BYTE_ROUNDS (default 15). Prints median and p90 of each; the temporary
 * directory is removed and the lz4 threads stopped. Wall-clock time is read here on purpose.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { availableCompressions, Compressor } from '../src/compress/index.js';
import { stopLz4Threads } from '../src/compress/lz4-worker.js';
import { Random } from '../src/core/random.js';
import { FsStorage } from '../src/storage/fs-storage.js';

const bytesPerMiB = 1024 * 1024;
const deviceBytes = 64 * bytesPerMiB;
/** Time given to warmUp() before the warm chunk (longer than a thread start on a busy machine). */
const warmUpWaitMs = 1_000;

function summary(samples: readonly number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
  return `median ${at(0.5).toFixed(1)} ms, p90 ${at(0.9).toFixed(1)} ms (${sorted.length} rounds)`;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const startMs = performance.now();
  await fn();
  return performance.now() - startMs;
}

async function main(): Promise<void> {
  const rounds = Number(process.env['BENCH_FIRST_BYTE_ROUNDS'] ?? '15');
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error('BENCH_FIRST_BYTE_ROUNDS: a whole number of rounds, at least 1');
  const dir = await mkdtemp(join(process.env['BENCH_DIR'] ?? tmpdir(), 'mars-bench-first-byte-'));
  const lz4 = availableCompressions().includes('lz4');
  try {
    const storage = new FsStorage(dir);
    const device = await storage.open('device', 'create');
    const random = new Random(1);
    await device.write(random.bytes(deviceBytes), 0);
    await device.sync();
    const range = random.bytes(bytesPerMiB);
    const persist: number[] = [];
    const metadata: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await device.write(range, (i % (deviceBytes / bytesPerMiB)) * bytesPerMiB);
      persist.push(
        await timed(async () => {
          await device.sync();
          await storage.writeAtomic('sync-state', Buffer.from(JSON.stringify({ round: i, padding: 'x'.repeat(200) })));
        }),
      );
      metadata.push(await timed(() => storage.writeAtomic('scope', Buffer.alloc(600, i))));
      if (!lz4) continue;
      await stopLz4Threads();
      cold.push(await timed(() => new Compressor('lz4').compress(range)));
      const warmed = new Compressor('lz4');
      warmed.warmUp();
      await new Promise((resolve) => setTimeout(resolve, warmUpWaitMs));
      warm.push(await timed(() => warmed.compress(range)));
    }
    await device.close();
    console.log(`start-position persist (device fdatasync + sync state file): ${summary(persist)}`);
    console.log(`one metadata scope-file write: ${summary(metadata)}`);
    if (lz4) console.log(`first lz4 chunk, threads not started: ${summary(cold)}; after warmUp(): ${summary(warm)}`);
    else console.log('lz4 is not available here: no thread-start figure');
  } finally {
    await stopLz4Threads();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
