/**
 * Clients nobody here wrote, against serve-mem.js in its own process: nbdinfo, nbdcopy,
 * qemu-img, qemu-io, fio's nbd engine, and nbdfuse with a real ext4 filesystem. A test is
 * skipped only when its tool is not installed (or, for nbdfuse, without root and FUSE).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { HOST, findTool, runTool, spawnServeMem, stopChild, WAIT_MS_MAX } from './helpers.js';
import { waitFor } from '../support/wait.js';
import { adm } from '../support/adm.js';
import { sparseFile, startMarsd } from '../support/processes.js';

const MiB = 1024 * 1024;
const TOOL_MS_MAX = 60_000;
const TEST_MS_MAX = 120_000;

/** The servers every real client is run against: the bare NBD server, and marsd's logged export. */
const targets = ['serve-mem', 'marsd'] as const;
type Target = (typeof targets)[number];

/** `--size 64M --name a --name b` as serve-mem takes it, for marsd too. */
function parseServeArgs(args: readonly string[]): { sizeBytes: number; names: string[] } {
  let sizeBytes = MiB;
  const names: string[] = [];
  for (let i = 0; i < args.length; i += 2) {
    const value = args[i + 1] ?? '';
    if (args[i] === '--size') sizeBytes = Number(value.replace(/M$/, '')) * (value.endsWith('M') ? MiB : 1);
    if (args[i] === '--name') names.push(value);
  }
  return { sizeBytes, names };
}

/** A marsd in `dir` with one resource per name, each on its own sparse file. */
async function startMarsdTarget(args: readonly string[], dir: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const { sizeBytes, names } = parseServeArgs(args);
  const state = path.join(dir, 'state');
  assert.equal((await adm(state, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777')).code, 0);
  const daemon = await startMarsd(state);
  try {
    for (const name of names) {
      const created = await adm(state, 'create-resource', name, await sparseFile(path.join(dir, `${name}.img`), sizeBytes));
      assert.equal(created.code, 0, created.stderr);
    }
  } catch (err) {
    await daemon.kill9();
    throw err;
  }
  return {
    port: daemon.nbdPort,
    stop: async () => {
      await daemon.stop();
    },
  };
}

/** Runs body against a fresh server of the given kind and a scratch directory; skips if a tool is missing. */
async function withServer(
  t: TestContext,
  target: Target,
  tools: readonly string[],
  args: readonly string[],
  body: (server: { port: number }, dir: string) => Promise<void>,
): Promise<void> {
  const missing = tools.filter((tool) => findTool(tool) === undefined);
  if (missing.length > 0) {
    t.skip(`${missing.join(', ')} not installed`);
    return;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nbd-real-'));
  try {
    const server: { port: number; stop: () => Promise<void> } = target === 'marsd' ? await startMarsdTarget(args, dir) : await spawnServeMem(args);
    try {
      await body(server, dir);
    } finally {
      await server.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function uri(port: number, name: string): string {
  return `nbd://${HOST}:${port}/${name}`;
}

function assertSucceeded(result: { code: number | null; stdout: string; stderr: string }, what: string): void {
  assert.equal(result.code, 0, `${what} exited with ${result.code}\n${result.stdout}\n${result.stderr}`);
}

for (const target of targets) void test(`nbdinfo --json reports the size and every capability we offer (${target})`, { timeout: TEST_MS_MAX }, async (t) => {
  await withServer(t, target, ['nbdinfo'], ['--size', '64M', '--name', 'disk'], async ({ port }) => {
    const result = await runTool('nbdinfo', ['--json', uri(port, 'disk')], TOOL_MS_MAX);
    assertSucceeded(result, 'nbdinfo');
    const info = JSON.parse(result.stdout) as { protocol: string; exports: Record<string, unknown>[] };
    assert.equal(info.protocol, 'newstyle-fixed');
    const [disk] = info.exports;
    assert.ok(disk);
    assert.equal(disk['export-size'], 64 * MiB);
    for (const flag of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn']) assert.equal(disk[flag], true, flag);
    assert.equal(disk['is_read_only'], false);
    assert.equal(disk['block_size_minimum'], 1);
    assert.equal(disk['block_size_preferred'], 4096);
    assert.equal(disk['block_size_maximum'], 32 * MiB);
  });
});

for (const target of targets) void test(`nbdinfo --list shows every export (${target})`, { timeout: TEST_MS_MAX }, async (t) => {
  await withServer(t, target, ['nbdinfo'], ['--size', '1M', '--name', 'alpha', '--name', 'beta'], async ({ port }) => {
    const result = await runTool('nbdinfo', ['--list', '--json', `nbd://${HOST}:${port}`], TOOL_MS_MAX);
    assertSucceeded(result, 'nbdinfo --list');
    const info = JSON.parse(result.stdout) as { exports: { 'export-name': string; 'export-size': number }[] };
    assert.deepEqual(info.exports.map((e) => e['export-name']).sort(), ['alpha', 'beta']);
    assert.ok(info.exports.every((e) => e['export-size'] === MiB));
  });
});

for (const target of targets) void test(`nbdcopy copies a random file into the export and back unchanged; qemu-img compare agrees (${target})`, { timeout: TEST_MS_MAX }, async (t) => {
  await withServer(t, target, ['nbdcopy', 'qemu-img'], ['--size', '16M', '--name', 'disk'], async ({ port }, dir) => {
    const source = path.join(dir, 'source.img');
    const back = path.join(dir, 'back.img');
    const data = randomBytes(16 * MiB);
    data.fill(0, 3 * MiB, 7 * MiB); // a zero run, so that zeroing paths are used too
    await writeFile(source, data);
    assertSucceeded(await runTool('nbdcopy', [source, uri(port, 'disk')], TOOL_MS_MAX), 'nbdcopy to export');
    assertSucceeded(await runTool('nbdcopy', [uri(port, 'disk'), back], TOOL_MS_MAX), 'nbdcopy from export');
    assert.ok((await readFile(back)).equals(data), 'the copy came back unchanged');
    assertSucceeded(await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, uri(port, 'disk')], TOOL_MS_MAX), 'qemu-img compare');
    // And qemu-img compare does notice a difference.
    const client = await NbdClient.connect({ host: HOST, port, exportName: 'disk' });
    await client.write(5 * MiB, Buffer.from([1]));
    await client.close();
    const differs = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, uri(port, 'disk')], TOOL_MS_MAX);
    assert.equal(differs.code, 1, differs.stdout + differs.stderr);
  });
});

for (const target of targets) void test(`qemu-io writes a pattern and reads it back (${target})`, { timeout: TEST_MS_MAX }, async (t) => {
  await withServer(t, target, ['qemu-io'], ['--size', '4M', '--name', 'disk'], async ({ port }) => {
    const commands = ['-c', 'write -P 0xab 0 64k', '-c', 'read -P 0xab 0 64k', '-c', 'write -z 64k 64k', '-c', 'read -P 0 64k 64k', '-c', 'flush'];
    const result = await runTool('qemu-io', ['-f', 'raw', ...commands, uri(port, 'disk')], TOOL_MS_MAX);
    assertSucceeded(result, 'qemu-io');
    assert.doesNotMatch(result.stdout + result.stderr, /fail|error/i);
    const client = await NbdClient.connect({ host: HOST, port, exportName: 'disk' });
    try {
      assert.ok((await client.read(0, 64 * 1024)).equals(Buffer.alloc(64 * 1024, 0xab)));
    } finally {
      await client.close();
    }
  });
});

for (const target of targets) void test(`fio with the nbd engine writes random blocks at depth 16 and verifies them with crc32c (${target})`, { timeout: TEST_MS_MAX }, async (t) => {
  await withServer(t, target, ['fio'], ['--size', '64M', '--name', 'disk'], async ({ port }, dir) => {
    const args = [
      '--name=verify',
      '--ioengine=nbd',
      `--uri=${uri(port, 'disk')}`,
      '--rw=randwrite',
      '--bs=4k',
      '--size=32M',
      '--iodepth=16',
      '--verify=crc32c',
      '--verify_fatal=1',
      '--output-format=json',
    ];
    const result = await runTool('fio', args, TOOL_MS_MAX, dir);
    assertSucceeded(result, 'fio');
    const json = result.stdout.slice(result.stdout.indexOf('{'));
    const report = JSON.parse(json) as { jobs: { error: number; read: { io_bytes: number }; write: { io_bytes: number } }[] };
    const [job] = report.jobs;
    assert.ok(job);
    assert.equal(job.error, 0);
    assert.equal(job.write.io_bytes, 32 * MiB);
    assert.equal(job.read.io_bytes, 32 * MiB, 'every written block was read back and verified');
    assert.doesNotMatch(result.stderr, /verify/i);
  });
});

void test('nbdfuse exposes the export as a file that takes an ext4 filesystem: mkfs, mount, write, fsck', { timeout: TEST_MS_MAX }, async (t) => {
  if (process.getuid?.() !== 0 || !existsSync('/dev/fuse')) {
    t.skip('needs root and /dev/fuse');
    return;
  }
  await withServer(t, 'serve-mem', ['nbdfuse', 'fusermount3', 'mkfs.ext4', 'fsck.ext4', 'mount', 'umount'], ['--size', '64M', '--name', 'fs'], async ({ port }, dir) => {
    const fuseDir = path.join(dir, 'fuse');
    const fsDir = path.join(dir, 'fs');
    await mkdir(fuseDir);
    await mkdir(fsDir);
    const fuse = spawn('nbdfuse', [fuseDir, uri(port, 'fs')], { stdio: 'ignore' });
    const image = path.join(fuseDir, 'nbd');
    let mounted = false;
    try {
      await waitFor('nbdfuse to expose its file', () => existsSync(image) || fuse.exitCode !== null, WAIT_MS_MAX, 5);
      assert.equal(fuse.exitCode, null, 'nbdfuse is running');
      assertSucceeded(await runTool('mkfs.ext4', ['-q', '-F', image], TOOL_MS_MAX), 'mkfs.ext4');
      assertSucceeded(await runTool('mount', ['-o', 'loop', image, fsDir], TOOL_MS_MAX), 'mount');
      mounted = true;
      await writeFile(path.join(fsDir, 'hello.txt'), 'hello from ext4 over NBD\n');
      assertSucceeded(await runTool('umount', [fsDir], TOOL_MS_MAX), 'umount');
      mounted = false;
      assertSucceeded(await runTool('fsck.ext4', ['-f', '-n', image], TOOL_MS_MAX), 'fsck.ext4');
      assertSucceeded(await runTool('mount', ['-o', 'loop,ro', image, fsDir], TOOL_MS_MAX), 'mount again');
      mounted = true;
      assert.equal(await readFile(path.join(fsDir, 'hello.txt'), 'utf8'), 'hello from ext4 over NBD\n');
    } finally {
      if (mounted) await runTool('umount', [fsDir], TOOL_MS_MAX);
      await runTool('fusermount3', ['-u', fuseDir], TOOL_MS_MAX);
      await stopChild(fuse);
    }
  });
});
