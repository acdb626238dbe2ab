/**
 * `marsadm completion bash`: valid bash that names every command of `marsadm --help`, and
 * completes command words, a command's options, resource names from the state directory
 * (after --dir) and files for DEVICE, as bash itself runs it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { marsadmPath, removeDir, run, tempDir } from '../support/processes.js';

let dir = '';
let script = '';

before(async () => {
  dir = await tempDir('mars-completion');
  for (const name of ['r0', 'data1']) await mkdir(join(dir, `resource-${name}`));
  const out = await run(marsadmPath, ['completion', 'bash']);
  assert.equal(out.code, 0, out.stderr);
  script = out.stdout;
});

after(async () => {
  await removeDir(dir);
});

/** What bash offers after the words (the last one is the word being completed). */
async function complete(...words: string[]): Promise<string[]> {
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const out = await run('bash', ['-c', `${script}\nCOMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _marsadm; printf '%s\\n' "\${COMPREPLY[@]}"`]);
  assert.equal(out.code, 0, out.stderr);
  return out.stdout.split('\n').filter((l) => l !== '').sort();
}

void test('the script is valid bash and names every command marsadm --help lists', async () => {
  assert.equal((await run('bash', ['-n', '-c', script])).code, 0);
  const help = await run(marsadmPath, ['--help']);
  const commands = [...help.stdout.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
  assert.ok(commands.length > 30, `commands in --help: ${commands.join(' ')}`);
  const offered = await complete('marsadm', '');
  for (const c of commands) assert.ok(offered.includes(c), `completion offers ${c}`);
});

void test('it completes commands, options, resource names and devices', async () => {
  assert.deepEqual(await complete('marsadm', 'pri'), ['primary']);
  assert.deepEqual(await complete('marsadm', 'primary', '--f'), ['--force']);
  assert.deepEqual(await complete('marsadm', 'events', '--'), ['--dir', '--help', '--json', '--now', '--reconnect-timeout']);
  assert.deepEqual(await complete('marsadm', '--dir', dir, 'primary', ''), ['data1', 'r0']);
  assert.deepEqual(await complete('marsadm', 'pause-replay', '--dir', dir, 'd'), ['data1']);
  assert.deepEqual(await complete('marsadm', '--dir', dir, 'create-resource', 'r9', join(dir, 'resource-r')), [join(dir, 'resource-r0')]);
  assert.deepEqual(await complete('marsadm', 'completion', ''), ['bash']);
  assert.deepEqual(await complete('marsadm', 'primary', '--timeout', ''), [], 'nothing to offer for a number');
});
