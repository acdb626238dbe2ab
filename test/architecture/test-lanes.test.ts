/**
 * The lanes of `npm test`: a file that starts processes must be in the main lane (two of
 * them at once on two CPUs make each other flaky), and the lane a file is put in must
 * follow its imports through helpers, not only its own lines.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { importsOf, mainLaneFiles, quietProcessFiles, startsProcesses, testLanes } from '../support/test-lanes.js';

/** The repository root (this file is dist/test/architecture/test-lanes.test.js when compiled). */
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../..');
/** Calls that start a process, by any of the test helpers or directly. */
const startsAProcess = /\b(startMarsd|startTestCluster|startSmallCluster|marsadm|mustMarsadm|mustAdm|mustRun|spawn|spawnSync|execFile|execFileSync)\(/;

async function sourcesReached(source: string, seen = new Set<string>()): Promise<string[]> {
  if (seen.has(source)) return [];
  seen.add(source);
  const nested = await Promise.all(importsOf(repoRoot, source).filter((i) => i.startsWith('test/')).map((i) => sourcesReached(i, seen)));
  return [source, ...nested.flat()];
}

void test('every test file is in exactly one lane, and the simulator, a daemon test and a codec test where they belong', () => {
  const lanes = testLanes(repoRoot);
  const all = [...lanes.main, ...lanes.inProcess, ...lanes.quietProcesses, ...lanes.background];
  assert.equal(new Set(all).size, all.length, 'no file in two lanes');
  assert.ok(lanes.background.includes(join('dist', 'test', 'sim', 'cluster-sim.test.js')));
  assert.ok(lanes.main.includes(join('dist', 'test', 'daemon', 'crash.test.js')));
  assert.ok(lanes.main.includes(join('dist', 'test', 'replication', 'log-space.test.js')), 'a file that starts its daemons through helpers');
  assert.ok(lanes.inProcess.includes(join('dist', 'test', 'log', 'record.test.js')));
  for (const file of Object.keys(mainLaneFiles)) assert.ok(lanes.main.includes(join('dist', file).replace(/\.ts$/, '.js')), `${file} is listed for the main lane`);
});

void test('every file listed as quiet exists, starts processes (else it would be in-process) and runs in the side lane, not the main one', () => {
  const lanes = testLanes(repoRoot);
  const listed = Object.keys(quietProcessFiles);
  assert.ok(listed.length > 0);
  for (const file of listed) {
    assert.ok(startsProcesses(repoRoot, file), `${file} is listed as quiet but starts no process: it belongs to the in-process lane`);
    const compiled = join('dist', file).replace(/\.ts$/, '.js');
    assert.ok(lanes.quietProcesses.includes(compiled), `${file} runs in the side lane`);
    assert.ok(!lanes.main.includes(compiled), `${file} is not in the main lane`);
  }
  assert.equal(lanes.quietProcesses.length, listed.length, 'only listed files are quiet');
});

void test('no file of the in-process lane, nor any test file it imports, calls anything that starts a process', async () => {
  const lanes = testLanes(repoRoot);
  assert.ok(lanes.inProcess.length > 0);
  for (const compiled of lanes.inProcess) {
    const source = compiled.replace(/^dist\//, '').replace(/\.js$/, '.ts');
    for (const reached of await sourcesReached(source)) {
      const m = startsAProcess.exec(await readFile(join(repoRoot, reached), 'utf8'));
      assert.equal(m, null, `${source} runs in the in-process lane, but ${reached} calls ${m?.[1]}()`);
    }
  }
});

void test('a file that reaches processes.ts through a helper is in the main lane; a type-only import does not count', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mars-lanes-'));
  try {
    const put = async (path: string, text: string): Promise<void> => {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), text);
    };
    await put('test/support/processes.ts', 'export const x = 1;\n');
    await put('test/support/helper.ts', "import {\n  x,\n} from './processes.js';\nexport const y = x;\n");
    await put('test/support/types.ts', "import type { Thing } from './processes.js';\nexport type T = Thing;\n");
    await put('test/a/through-helper.test.ts', "import { y } from '../support/helper.js';\n");
    await put('test/a/spawns.test.ts', "import { spawn } from 'node:child_process';\n");
    await put('test/a/types-only.test.ts', "import type { T } from '../support/types.js';\nimport { z } from '../../src/z.js';\n");
    await put('test/sim/seeds.test.ts', "import { spawn } from 'node:child_process';\n");
    const lanes = testLanes(root);
    assert.deepEqual(lanes.main, [join('dist', 'test', 'a', 'spawns.test.js'), join('dist', 'test', 'a', 'through-helper.test.js')]);
    assert.deepEqual(lanes.inProcess, [join('dist', 'test', 'a', 'types-only.test.js')]);
    assert.deepEqual(lanes.background, [join('dist', 'test', 'sim', 'seeds.test.js')]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
