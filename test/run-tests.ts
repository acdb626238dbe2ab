/**
 * `npm test`: every test file under test/ (`test/AREA/NAME.test.ts`, compiled to dist/),
 * in three lanes that run side by side:
 *
 * - the main lane: one file at a time (`--test-concurrency=1`). Most of these files start
 *   real daemons and clients whose timing matters; on a machine with two CPUs two of
 *   them at once make each other flaky.
 * - the side lane: first the files that start no process (no marsd, no marsadm, no tool),
 *   found from their imports (a file that reaches test/support/processes.ts or
 *   node:child_process, directly or through a helper, starts processes), then the files
 *   that start processes quietly (`quietProcessFiles` in test/support/test-lanes.ts: no
 *   load on the machine, no tight time limit). They run one at a time beside the main
 *   lane, at its priority: the in-process files need about two minutes of CPU, which the
 *   main lane's waiting daemons leave idle, and some of them have real-time limits (TCP in
 *   one process) that a lower priority starves on a busy machine; the quiet ones take
 *   their minute and a half of waiting off the main lane, which sets the suite's time.
 * - the background lane: the simulator's seeds, at the lowest CPU priority (nice 19). The
 *   scheduler gives them only what the other lanes leave idle, and the main lane's
 *   daemons spend most of their time waiting, so the seeds run in time nobody else uses.
 *
 * The files come from the sources, not from dist/: a test file deleted from test/ but
 * still compiled in dist/ does not run. The other lanes' reports are printed after the
 * main lane's; the exit code is non-zero when any file of any lane failed. Extra
 * arguments are test files (`node dist/test/run-tests.js dist/test/log/record.test.js`):
 * those run in the main lane only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backgroundAreas, testLanes, type Lanes } from './support/test-lanes.js';

/** The repository root (this file is dist/test/run-tests.js when compiled). */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The lowest priority: the background lane gets only CPU time nobody else wants. */
const backgroundNice = 19;
/** The side lane runs at the main lane's priority (see above). */
const sideNice = 0;

function nodeTest(files: readonly string[], output: 'inherit' | 'pipe'): ChildProcess {
  const reporter = output === 'inherit' && process.stdout.isTTY ? ['--test-reporter=spec'] : [];
  return spawn(process.execPath, ['--test', '--test-concurrency=1', ...reporter, ...files], { cwd: repoRoot, stdio: ['ignore', output, output === 'pipe' ? 'pipe' : 'inherit'] });
}

function exitCode(child: ChildProcess): Promise<number> {
  return new Promise((resolvePromise) => child.on('close', (code, signal) => resolvePromise(code ?? (signal === null ? 1 : 128))));
}

/** A lane beside the main one: its output is kept and printed after the main lane's. */
interface SideLane {
  readonly name: string;
  readonly files: readonly string[];
  readonly nice: number;
  output: string;
  code: Promise<number>;
}

function startSideLane(name: string, files: readonly string[], nice: number): SideLane {
  const lane: SideLane = { name, files, nice, output: '', code: Promise.resolve(0) };
  if (files.length === 0) return lane;
  const child = nodeTest(files, 'pipe');
  // Before the child has loaded node: the test files it starts inherit the priority.
  if (child.pid !== undefined) setPriority(child.pid, nice);
  child.stdout?.on('data', (d: Buffer) => (lane.output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (lane.output += d.toString()));
  lane.code = exitCode(child);
  return lane;
}

async function main(): Promise<void> {
  const chosen = process.argv.slice(2).map((f) => relative(repoRoot, resolve(f)));
  const inBackground = (f: string): boolean => backgroundAreas.some((area) => f.startsWith(join('dist', 'test', area) + '/'));
  const files: Lanes = chosen.length > 0 ? { main: chosen.filter((f) => !inBackground(f)), inProcess: [], quietProcesses: [], background: chosen.filter(inBackground) } : testLanes(repoRoot);
  const sides = [startSideLane('side lane', [...files.inProcess, ...files.quietProcesses], sideNice), startSideLane('background lane', files.background, backgroundNice)];
  const mainCode = files.main.length === 0 ? 0 : await exitCode(nodeTest(files.main, 'inherit'));
  let code = mainCode;
  for (const lane of sides) {
    const laneCode = await lane.code;
    if (lane.files.length === 0) continue;
    process.stdout.write(`\n# ${lane.name} (nice ${lane.nice}): ${lane.files.join(' ')}\n${lane.output}`);
    process.stdout.write(`# ${lane.name} ${laneCode === 0 ? 'passed' : `FAILED (exit ${laneCode})`}\n`);
    if (code === 0) code = laneCode;
  }
  process.exitCode = code;
}

await main();
