/**
 * A preload that counts a process's garbage collections by kind (`NODE_OPTIONS=--import
 * dist/bench/gc-count.js`, with BENCH_GC_COUNT_DIR set): after every collection it
 * rewrites DIR/PID.json with the counts so far, { major, minor, incremental, weak,
 * majorMs, minorMs }, so that a bench reads a daemon's full collections over a stage
 * (after minus before) without V8's --trace-gc, which NODE_OPTIONS refuses. Processes
 * that inherit the variable (marsadm too) each write their own file.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { join } from 'node:path';

const dir = process.env['BENCH_GC_COUNT_DIR'];
if (dir !== undefined && dir !== '') {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${process.pid}.json`);
  const temp = `${file}.tmp`;
  const counts = { major: 0, minor: 0, incremental: 0, weak: 0, majorMs: 0, minorMs: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        counts.major++;
        counts.majorMs += entry.duration;
      } else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        counts.minor++;
        counts.minorMs += entry.duration;
      } else if (kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) counts.incremental++;
      else if (kind === constants.NODE_PERFORMANCE_GC_WEAKCB) counts.weak++;
    }
    writeFileSync(temp, JSON.stringify(counts));
    renameSync(temp, file); // a reader never sees half a file
  });
  observer.observe({ entryTypes: ['gc'] });
}
