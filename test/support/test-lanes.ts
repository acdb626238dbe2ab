/**
 * Which lane of `npm test` (test/run-tests.ts) a test file runs in, from its source: the
 * simulator's files in the background lane; a file that starts processes (it imports
 * test/support/processes.ts or node:child_process, directly or through other files under
 * test/) in the main lane, one file at a time, and so does a file listed in
 * `mainLaneFiles`; every other file in the in-process lane.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';

/** Areas whose files only compute: run in the background lane. */
export const backgroundAreas: readonly string[] = ['sim'];
/**
 * Files that start no process but stay in the main lane, with why: beside the main lane's
 * daemons they missed their time limit on a busy machine.
 */
export const mainLaneFiles: Readonly<Record<string, string>> = {
  'test/fetch/fetch-tcp.test.ts': 'sixty rounds of real fdatasync against a 30 s limit: beside the daemons fsyncs it took over 30 s twice',
};
/** A test source that imports one of these starts processes itself. */
const processModules: readonly string[] = ['node:child_process', join('test', 'support', 'processes.ts')];

/** Compiled test files (dist/test/AREA/NAME.test.js), per lane, in order. */
export interface Lanes {
  main: string[];
  inProcess: string[];
  background: string[];
}

/** The relative imports (as repository paths of .ts sources) and node: modules of a test source, type-only imports left out. */
export function importsOf(repoRoot: string, source: string): string[] {
  const text = readFileSync(join(repoRoot, source), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s(?!type\s)[^;]*?from\s+'([^']+)'|import\('([^']+)'\)/gm)) {
    const spec = m[1] ?? m[2]!;
    if (spec.startsWith('node:')) out.push(spec);
    else if (spec.startsWith('.')) out.push(normalize(join(dirname(source), spec)).replace(/\.js$/, '.ts'));
  }
  return out;
}

/** Whether a test source (a repository path) starts processes: it imports, through files under test/, a process module. */
export function startsProcesses(repoRoot: string, source: string, seen = new Set<string>()): boolean {
  if (seen.has(source)) return false;
  seen.add(source);
  return importsOf(repoRoot, source).some((i) => processModules.includes(i) || (i.startsWith(join('test', '/')) && startsProcesses(repoRoot, i, seen)));
}

/** Every test file under test/AREA/, from the sources (a file deleted from test/ but still in dist/ does not run). */
export function testLanes(repoRoot: string): Lanes {
  const lanes: Lanes = { main: [], inProcess: [], background: [] };
  const areas = readdirSync(join(repoRoot, 'test'), { withFileTypes: true }).filter((e) => e.isDirectory());
  for (const area of areas.map((a) => a.name).sort()) {
    for (const file of readdirSync(join(repoRoot, 'test', area)).sort()) {
      if (!file.endsWith('.test.ts')) continue;
      const compiled = join('dist', 'test', area, file.replace(/\.ts$/, '.js'));
      if (backgroundAreas.includes(area)) lanes.background.push(compiled);
      else if (join('test', area, file) in mainLaneFiles || startsProcesses(repoRoot, join('test', area, file))) lanes.main.push(compiled);
      else lanes.inProcess.push(compiled);
    }
  }
  return lanes;
}
