/**
 * A preload for marsd when profiling the benchmark (`BENCH_MARSD_CPU_PROF=DIR`): Node 20
 * refuses `--cpu-prof` in NODE_OPTIONS, so the bench starts marsd with
 * `NODE_OPTIONS=--import dist/bench/cpu-profile.js` instead. This module starts the V8
 * sampling profiler through `node:inspector` and, when the process exits (marsd calls
 * process.exit after a clean SIGTERM stop), writes DIR/marsd-PID.cpuprofile, which
 * Chrome DevTools or speedscope open. Inspector calls on the main thread are synchronous,
 * so this works inside the 'exit' handler.
 */
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Set by bench/run.ts for marsd only. */
const dirVariable = 'BENCH_CPU_PROF_DIR';
/** Sampling interval of the profiler; V8's default is 1000 µs. */
const samplingIntervalUs = 500;

const dir = process.env[dirVariable];
if (dir !== undefined && dir !== '') {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: samplingIntervalUs });
  session.post('Profiler.start');
  process.on('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (err !== null) {
        process.stderr.write(`cpu-profile: ${err.message}\n`);
        return;
      }
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `marsd-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
