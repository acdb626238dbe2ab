/**
 * What the benchmark scripts share: output, tables, random and compared device files,
 * the results file, and stopping what a run started when it fails or is interrupted.
 */
import { randomFillSync } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';

export const fillChunkBytes = 16 * 1024 * 1024;

export function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A text table: the first column left-aligned, the others right-aligned, a rule under the head. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const line = (row: readonly string[]): string => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  const [head, ...body] = rows;
  if (head === undefined) return '';
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** A file of `sizeBytes` random bytes, fdatasync'd. */
export async function randomFile(path: string, sizeBytes: number): Promise<string> {
  const handle = await open(path, 'w');
  try {
    const chunk = Buffer.allocUnsafe(fillChunkBytes);
    for (let at = 0; at < sizeBytes; at += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, sizeBytes - at));
      randomFillSync(part);
      await handle.write(part, 0, part.length, at);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return path;
}

export async function sameFiles(a: string, b: string, sizeBytes: number): Promise<boolean> {
  const [ha, hb] = [await open(a, 'r'), await open(b, 'r')];
  const [ba, bb] = [Buffer.allocUnsafe(fillChunkBytes), Buffer.allocUnsafe(fillChunkBytes)];
  try {
    for (let at = 0; at < sizeBytes; at += fillChunkBytes) {
      const n = Math.min(fillChunkBytes, sizeBytes - at);
      await ha.read(ba, 0, n, at);
      await hb.read(bb, 0, n, at);
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
    }
    return true;
  } finally {
    await ha.close();
    await hb.close();
  }
}

/** The results as JSON (numbers that are not finite, such as Infinity, as strings). */
export async function writeResults(path: string, results: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(results, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2)}\n`);
}

let cleanup: (() => Promise<void>) | undefined;

/**
 * Sets what stops everything a run started (daemons, helpers, directories); it runs on
 * SIGINT and SIGTERM too. A reader that goes away (`npm run bench | head`) must not crash
 * the run before it has stopped what it started, so output errors are ignored.
 */
export function onCleanup(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  cleanup = () => (running ??= fn());
  return cleanup;
}

function onSignal(signal: NodeJS.Signals): void {
  process.stderr.write(`bench failed: interrupted by ${signal}; stopping what it started\n`);
  const done = cleanup === undefined ? Promise.resolve() : cleanup();
  done.then(
    () => process.exit(1),
    () => process.exit(1),
  );
}

/** Runs a benchmark's main: exit 0, or 1 with one line on stderr; interrupts stop what it started. */
export function runMain(main: () => Promise<void>): void {
  process.stdout.on('error', () => undefined);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
