/**
 * `npm test`: every test file under test/ (`test/AREA/NAME.test.ts`, compiled to dist/),
 * in two lanes that run side by side:
 *
 * - the main lane: one file at a time (`--test-concurrency=1`). Most of these files start
 *   real daemons and clients whose timing matters; on a machine with two CPUs two of
 *   them at once make each other flaky.
 * - the background lane: the files that only compute (the simulator's seeds), at the
 *   lowest CPU priority (nice 19). The scheduler gives them only what the main lane leaves
 *   idle, and the main lane's daemons spend most of their time waiting, so the seeds run
 *   in time the main lane does not use instead of adding a minute and more to it.
 *
 * The files come from the sources, not from dist/: a test file deleted from test/ but
 * still compiled in dist/ does not run. The background lane's report is printed after the
 * main lane's; the exit code is non-zero when any file of either lane failed. Extra
 * arguments are test files (`node dist/test/run-tests.js dist/test/log/record.test.js`):
 * those run in the main lane only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is dist/test/run-tests.js when compiled). */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** Areas whose files only compute: run in the background lane. */
const backgroundAreas: readonly string[] = ['sim'];
/** The lowest priority: the background lane gets only CPU time nobody else wants. */
const backgroundNice = 19;

function testFiles(): { main: string[]; background: string[] } {
  const main: string[] = [];
  const background: string[] = [];
  const areas = readdirSync(join(repoRoot, 'test'), { withFileTypes: true }).filter((e) => e.isDirectory());
  for (const area of areas.map((a) => a.name).sort()) {
    for (const file of readdirSync(join(repoRoot, 'test', area)).sort()) {
      if (!file.endsWith('.test.ts')) continue;
      const compiled = join('dist', 'test', area, file.replace(/\.ts$/, '.js'));
      (backgroundAreas.includes(area) ? background : main).push(compiled);
    }
  }
  return { main, background };
}

function nodeTest(files: readonly string[], output: 'inherit' | 'pipe'): ChildProcess {
  const reporter = output === 'inherit' && process.stdout.isTTY ? ['--test-reporter=spec'] : [];
  return spawn(process.execPath, ['--test', '--test-concurrency=1', ...reporter, ...files], { cwd: repoRoot, stdio: ['ignore', output, output === 'pipe' ? 'pipe' : 'inherit'] });
}

function exitCode(child: ChildProcess): Promise<number> {
  return new Promise((resolvePromise) => child.on('close', (code, signal) => resolvePromise(code ?? (signal === null ? 1 : 128))));
}

async function main(): Promise<void> {
  const chosen = process.argv.slice(2).map((f) => relative(repoRoot, resolve(f)));
  const inBackground = (f: string): boolean => backgroundAreas.some((area) => f.startsWith(join('dist', 'test', area) + '/'));
  const files = chosen.length > 0 ? { main: chosen.filter((f) => !inBackground(f)), background: chosen.filter(inBackground) } : testFiles();
  let backgroundOut = '';
  let background: Promise<number> = Promise.resolve(0);
  if (files.background.length > 0) {
    const child = nodeTest(files.background, 'pipe');
    // Before the child has loaded node: the test files it starts inherit the priority.
    if (child.pid !== undefined) setPriority(child.pid, backgroundNice);
    child.stdout?.on('data', (d: Buffer) => (backgroundOut += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (backgroundOut += d.toString()));
    background = exitCode(child);
  }
  const mainCode = files.main.length === 0 ? 0 : await exitCode(nodeTest(files.main, 'inherit'));
  const backgroundCode = await background;
  if (files.background.length > 0) {
    process.stdout.write(`\n# background lane (nice ${backgroundNice}): ${files.background.join(' ')}\n${backgroundOut}`);
    process.stdout.write(`# background lane ${backgroundCode === 0 ? 'passed' : `FAILED (exit ${backgroundCode})`}\n`);
  }
  process.exitCode = mainCode !== 0 ? mainCode : backgroundCode;
}

await main();
