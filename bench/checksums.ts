/**
 * Measures the candidate payload checksums of the log record (docs/log-format.md):
 * crc32c from @node-rs/crc32 against xxh64 and xxh3-64 from @node-rs/xxhash, on the
 * buffer sizes the write path sees (4 KiB NBD writes, 64 KiB batches, 1 MiB records).
 * Standalone: `npx tsc -p . && node dist/bench/checksums.js`. Prints MiB/s and calls/s.
 * Wall-clock time is read here on purpose: this is a measurement, not the core.
 */
import { crc32c } from '@node-rs/crc32';
import { xxh3, xxh64 } from '@node-rs/xxhash';
import { randomFillSync } from 'node:crypto';

/** 60 bytes is the record header (its checksum is always crc32c); the rest are payload sizes. */
const sizesBytes = [60, 4 * 1024, 64 * 1024, 1024 * 1024] as const;
/** How long each (function, size) pair is measured; long enough to smooth out JIT warm-up. */
const measureMsMin = 1000;
const warmupCallsMax = 2000;
const bytesPerMiB = 1024 * 1024;

interface Candidate {
  readonly name: string;
  readonly digest: (input: Buffer) => unknown;
}

const candidates: readonly Candidate[] = [
  { name: 'crc32c', digest: (input) => crc32c(input) },
  { name: 'xxh64', digest: (input) => xxh64(input) },
  { name: 'xxh3-64', digest: (input) => xxh3.xxh64(input) },
];

interface Figure {
  readonly name: string;
  readonly sizeBytes: number;
  readonly mibPerS: number;
  readonly callsPerS: number;
}

/** Calls `digest` in rounds until `measureMsMin` has passed; returns the rate. */
function measure(candidate: Candidate, input: Buffer): Figure {
  let sink = 0;
  for (let i = 0; i < warmupCallsMax; i++) if (candidate.digest(input) === undefined) sink++;
  let calls = 0;
  let roundCalls = 16;
  const startNs = process.hrtime.bigint();
  let elapsedMs = 0;
  while (elapsedMs < measureMsMin) {
    for (let i = 0; i < roundCalls; i++) if (candidate.digest(input) === undefined) sink++;
    calls += roundCalls;
    if (roundCalls < 1 << 16) roundCalls *= 2;
    elapsedMs = Number(process.hrtime.bigint() - startNs) / 1e6;
  }
  if (sink !== 0) throw new Error('a digest returned undefined');
  const callsPerS = (calls * 1000) / elapsedMs;
  return { name: candidate.name, sizeBytes: input.length, callsPerS, mibPerS: (callsPerS * input.length) / bytesPerMiB };
}

function formatSize(sizeBytes: number): string {
  if (sizeBytes >= bytesPerMiB) return `${sizeBytes / bytesPerMiB} MiB`;
  return sizeBytes >= 1024 ? `${sizeBytes / 1024} KiB` : `${sizeBytes} B`;
}

function main(): void {
  console.log(`node ${process.version}, ${process.arch}`);
  console.log('| checksum | size | MiB/s | calls/s |');
  console.log('|---|---|---:|---:|');
  for (const sizeBytes of sizesBytes) {
    const input = randomFillSync(Buffer.allocUnsafe(sizeBytes));
    for (const candidate of candidates) {
      const figure = measure(candidate, input);
      console.log(`| ${figure.name} | ${formatSize(sizeBytes)} | ${Math.round(figure.mibPerS)} | ${Math.round(figure.callsPerS)} |`);
    }
  }
}

main();
