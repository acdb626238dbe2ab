/**
 * A preload for marsd when measuring its memory in a benchmark (`BENCH_MARSD_MEM_LOG=DIR`):
 * started like the CPU profiler (`NODE_OPTIONS=--import dist/bench/mem-probe.js`), it
 * appends one JSON line every `sampleIntervalMs` to DIR/marsd-PID.memlog with the split of
 * the resident set: `process.memoryUsage()` (V8 heap, external, array buffers) beside what
 * the kernel counts (VmRSS, VmHWM) and, from /proc/self/smaps, the resident bytes of the
 * glibc main heap (`[heap]`) and of the other anonymous mappings (thread arenas, V8 pages,
 * buffers mapped alone). Resident bytes well above `external` + heap are memory malloc
 * keeps after it was freed (fragmentation), not memory the daemon holds.
 */
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Set by the bench for marsd only. */
const dirVariable = 'BENCH_MEM_LOG_DIR';
const sampleIntervalMs = 500;
const bytesPerMiB = 1024 * 1024;

function statusMiB(status: string, key: string): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(status);
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}

/** Resident MiB of the main heap and of the other anonymous mappings. */
function mappedMiB(): { heapMiB: number; anonMiB: number } {
  let heapKiB = 0;
  let anonKiB = 0;
  let kind: 'heap' | 'anon' | 'other' = 'other';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header !== null) {
      const name = header[1]!;
      kind = name === '[heap]' ? 'heap' : name === '' ? 'anon' : 'other';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss === null) continue;
    if (kind === 'heap') heapKiB += Number(rss[1]);
    else if (kind === 'anon') anonKiB += Number(rss[1]);
  }
  return { heapMiB: heapKiB / 1024, anonMiB: anonKiB / 1024 };
}

const dir = process.env[dirVariable];
if (dir !== undefined && dir !== '') {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `marsd-${process.pid}.memlog`);
  const sample = (): void => {
    const u = process.memoryUsage();
    const status = readFileSync('/proc/self/status', 'utf8');
    const line = {
      t: Date.now(),
      rssMiB: statusMiB(status, 'VmRSS'),
      hwmMiB: statusMiB(status, 'VmHWM'),
      heapUsedMiB: u.heapUsed / bytesPerMiB,
      heapTotalMiB: u.heapTotal / bytesPerMiB,
      externalMiB: u.external / bytesPerMiB,
      arrayBuffersMiB: u.arrayBuffers / bytesPerMiB,
      ...mappedMiB(),
    };
    appendFileSync(path, `${JSON.stringify(line)}\n`);
  };
  setInterval(sample, sampleIntervalMs).unref();
}
