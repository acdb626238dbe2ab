/**
 * The child process of lz4-memory.test.ts: lz4 round trips of 1 MiB chunks, several at a
 * time, in a process with marsd's thread pool and malloc settings (the parent sets them).
 * After every chunk it prints one JSON line: the chunk number and how much the resident
 * set has grown since the start, at most, in bytes. It exits 0 when all chunks came back
 * equal to what went in.
 */
import { Compressor, decompress } from '../../src/compress/index.js';
import { lz4Load } from '../../src/compress/lz4-worker.js';

const chunkBytes = 1024 * 1024;

/** Seeded xorshift: a chunk that compresses (one random byte in four) and differs per seed. */
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

async function main(chunks: number, concurrency: number): Promise<void> {
  const sources = Array.from({ length: 16 }, (_, i) => chunk(i + 1));
  const compressor = new Compressor('lz4');
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < chunks) {
      const n = next++;
      const source = sources[n % sources.length]!.subarray(0, chunkBytes - (n % 7) * 4096);
      const packed = await compressor.compress(source);
      if (packed === undefined) throw new Error(`chunk ${n} did not compress`);
      const raw = await decompress('lz4', packed, source.length);
      if (!raw.equals(source)) throw new Error(`chunk ${n} came back changed`);
      peak = Math.max(peak, process.memoryUsage().rss);
      process.stdout.write(`${JSON.stringify({ chunk: n, growthBytes: peak - baseline, inFlight: lz4Load().inFlight })}\n`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}

main(Number(process.argv[2]), Number(process.argv[3])).catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
