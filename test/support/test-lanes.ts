/**
 * Which lane of `npm test` (test/run-tests.ts) a test file runs in, from its source: the
 * simulator's files in the background lane; a file that starts processes (it imports
 * test/support/processes.ts or node:child_process, directly or through other files under
 * test/) in the main lane, one file at a time, and so does a file listed in
 * `mainLaneFiles`; every other file in the in-process lane. A file that starts processes
 * but is listed in `quietProcessFiles` runs in the side lane instead, after the
 * in-process files.
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
/**
 * Files that start processes but neither load the machine (no sustained writes, no fio, no
 * browser, no kill -9 under load) nor hold a time limit that a busy machine misses: they
 * run in the side lane after the in-process files, beside the main lane, instead of
 * adding their time to it. Each with what it starts.
 */
export const quietProcessFiles: Readonly<Record<string, string>> = {
  'test/cli/marsadm.test.ts': 'marsadm against one daemon, a few small writes',
  'test/cli/member-view.test.ts': 'two daemons, view while one is paused or killed',
  'test/cli/leave-cluster-host.test.ts': 'three daemons, membership changes',
  'test/cli/join-name.test.ts': 'one daemon and two joins',
  'test/events/events.test.ts': 'three daemons, one handover and one split brain',
  'test/metrics/metrics.test.ts': 'three daemons, small writes, the metrics endpoint',
  'test/metrics/docs.test.ts': 'reads the docs and one help text',
  'test/cluster/membership.test.ts': 'five daemons without data',
  'test/cluster/merge.test.ts': 'daemons of two clusters without data',
  'test/cluster/tls.test.ts': 'two daemons over TLS without data',
  'test/cluster/identity.test.ts': 'a restart after a crash between two writes',
  'test/cluster/join-refusals.test.ts': 'joins refused before any data',
  'test/replication/resize-delete.test.ts': 'two daemons, resize and delete of a small resource',
  'test/daemon/state-dir-hardening.test.ts': 'daemon starts refused on unsafe state directories',
  'test/daemon/device-identity.test.ts': 'create-resource and join-resource on linked disks',
  'test/roles/hooks.test.ts': 'hook commands run by one daemon',
  'test/packaging/package.test.ts': 'npm pack and npm install -g into a temporary prefix',
  'test/packaging/completion.test.ts': 'bash runs the completion script',
  'test/packaging/reload.test.ts': 'SIGHUP to one daemon',
};
/** A test source that imports one of these starts processes itself. */
const processModules: readonly string[] = ['node:child_process', join('test', 'support', 'processes.ts')];

/** Compiled test files (dist/test/AREA/NAME.test.js), per lane, in order. */
export interface Lanes {
  main: string[];
  inProcess: string[];
  /** Files that start processes quietly (`quietProcessFiles`): in the side lane, after the in-process files. */
  quietProcesses: string[];
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
  const lanes: Lanes = { main: [], inProcess: [], quietProcesses: [], background: [] };
  const areas = readdirSync(join(repoRoot, 'test'), { withFileTypes: true }).filter((e) => e.isDirectory());
  for (const area of areas.map((a) => a.name).sort()) {
    for (const file of readdirSync(join(repoRoot, 'test', area)).sort()) {
      if (!file.endsWith('.test.ts')) continue;
      const compiled = join('dist', 'test', area, file.replace(/\.ts$/, '.js'));
      if (backgroundAreas.includes(area)) lanes.background.push(compiled);
      else if (join('test', area, file) in quietProcessFiles) lanes.quietProcesses.push(compiled);
      else if (join('test', area, file) in mainLaneFiles || startsProcesses(repoRoot, join('test', area, file))) lanes.main.push(compiled);
      else lanes.inProcess.push(compiled);
    }
  }
  return lanes;
}
