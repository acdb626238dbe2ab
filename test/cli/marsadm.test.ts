/**
 * marsadm and marsd as operators use them: exit codes, one-line errors, and the
 * commands of a single host against a real daemon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { stat, writeFile } from 'node:fs/promises';
import { marsadm, marsdPath, removeDir, run, sparseFile, startMarsd, tempDir } from '../support/processes.js';

const mib = 1024 * 1024;

function oneLine(text: string): string {
  const lines = text.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got: ${text}`);
  return lines[0]!;
}

test('bad usage exits 2: no command, an unknown command, a missing argument, a bad name', async () => {
  const dir = await tempDir('mars-cli');
  try {
    assert.equal((await marsadm(dir)).code, 2);
    const unknown = await marsadm(dir, 'frobnicate');
    assert.equal(unknown.code, 2);
    assert.match(oneLine(unknown.stderr), /unknown command 'frobnicate'/);
    const missing = await marsadm(dir, 'create-resource', 'r0');
    assert.equal(missing.code, 2);
    assert.match(oneLine(missing.stderr), /missing required argument 'DEVICE'/);
    assert.equal((await marsadm(dir, 'create-resource', 'bad/name', '/tmp/x')).code, 2);
    assert.equal((await marsadm(dir, 'create-cluster', '--host', 'a')).code, 2);
    assert.equal((await marsadm(dir, 'create-cluster', '--host', 'a', '--listen', 'not-an-address')).code, 2);
    assert.equal((await marsadm(dir, 'create-resource', 'r0', '/tmp/x', '--size', 'lots')).code, 2);
    const noSecret = await marsadm(dir, 'join-cluster', '127.0.0.1:7777', '--host', 'b', '--listen', '127.0.0.2:7777');
    assert.equal(noSecret.code, 2);
    assert.match(oneLine(noSecret.stderr), /--secret-file/);
    assert.equal((await marsadm(dir, 'join-cluster', '--host', 'b', '--listen', '127.0.0.2:7777', '--secret-file', '/x')).code, 2);
    assert.equal((await marsadm(dir, 'merge-cluster', '127.0.0.1:7777')).code, 2);
    assert.equal((await marsadm(dir, 'merge-cluster', 'nowhere', '--secret-file', '/x')).code, 2);
    assert.equal((await marsadm(dir, 'wait-cluster', '--timeout', 'soon')).code, 2);
    assert.equal((await marsadm(dir, 'join-resource', 'r0')).code, 2);
    assert.equal((await marsadm(dir, 'leave-resource', 'r0', '--host', 'bad/host')).code, 2);
    const help = await marsadm(dir, '--help');
    assert.equal(help.code, 0);
    const words = ['create-cluster', 'join-cluster', 'leave-cluster', 'merge-cluster', 'wait-cluster', 'view-hosts', 'create-resource', 'join-resource', 'leave-resource', 'up', 'down'];
    for (const word of [...words, 'log-rotate', 'log-delete', 'cron', 'view', 'view-role', 'view-replay-rest']) {
      assert.match(help.stdout, new RegExp(`\\b${word}\\b`), `--help lists ${word}`);
    }
  } finally {
    await removeDir(dir);
  }
});

test('without a running daemon marsadm says so in one line and exits 1', async () => {
  const dir = await tempDir('mars-cli');
  try {
    for (const args of [['view', 'r0'], ['view-hosts'], ['wait-cluster'], ['leave-cluster'], ['up', 'r0']]) {
      const result = await marsadm(dir, ...args);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(oneLine(result.stderr), /marsd is not running/);
    }
  } finally {
    await removeDir(dir);
  }
});

test('create-cluster writes host.json and a 0600 secret, and refuses a directory twice', async () => {
  const dir = await tempDir('mars-cli');
  try {
    const first = await marsadm(dir, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777');
    assert.equal(first.code, 0, first.stderr);
    const secret = await stat(join(dir, 'cluster.secret'));
    assert.equal(secret.mode & 0o777, 0o600);
    const again = await marsadm(dir, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777');
    assert.equal(again.code, 1);
    assert.match(oneLine(again.stderr), /already belongs to a cluster/);
  } finally {
    await removeDir(dir);
  }
});

test('marsd refuses to start on a directory that is not a state directory, in one line', async () => {
  const dir = await tempDir('mars-cli');
  try {
    const result = await run(process.execPath, [marsdPath, '--dir', dir, '--nbd', '127.0.0.1:0'], { timeoutMs: 20_000 });
    assert.equal(result.code, 1);
    assert.match(oneLine(result.stderr), /not a MARS state directory/);
    await writeFile(join(dir, 'host.json'), '{ broken');
    const corrupt = await run(process.execPath, [marsdPath, '--dir', dir, '--nbd', '127.0.0.1:0'], { timeoutMs: 20_000 });
    assert.equal(corrupt.code, 1);
    assert.match(oneLine(corrupt.stderr), /host\.json: not valid JSON/);
  } finally {
    await removeDir(dir);
  }
});

test('create-resource checks the resource and the device, and view and the macros report the primary', { timeout: 60_000 }, async () => {
  const dir = await tempDir('mars-cli');
  const daemon = await (async () => {
    assert.equal((await marsadm(dir, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777')).code, 0);
    return startMarsd(dir);
  })();
  try {
    const disk = await sparseFile(join(dir, 'disk0'), 16 * mib);
    const odd = await sparseFile(join(dir, 'odd'), 16 * mib + 512);
    const fail = async (why: RegExp, ...args: string[]): Promise<void> => {
      const r = await marsadm(dir, ...args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(oneLine(r.stderr), why);
    };
    await fail(/does not exist/, 'create-resource', 'r0', join(dir, 'missing'));
    await fail(/not a multiple of 4096/, 'create-resource', 'r0', odd);
    await fail(/is neither a regular file nor a block device/, 'create-resource', 'r0', dir);
    await fail(/larger than device/, 'create-resource', 'r0', disk, '--size', String(32 * mib));
    const created = await marsadm(dir, 'create-resource', 'r0', disk, '--size', '8M');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, new RegExp(`nbd://127\\.0\\.0\\.1:${daemon.nbdPort}/r0`));
    await fail(/already exists/, 'create-resource', 'r0', disk);
    await fail(/already belongs to resource r0/, 'create-resource', 'r1', disk);
    await fail(/does not exist on this host/, 'view', 'nope');

    const macro = async (name: string): Promise<string> => {
      const r = await marsadm(dir, `view-${name}`, 'r0');
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    };
    assert.equal(await macro('role'), 'Primary');
    assert.equal(await macro('primarynode'), 'alpha');
    assert.equal(await macro('is-primary'), '1');
    assert.equal(await macro('is-consistent'), '1');
    assert.equal(await macro('is-split-brain'), '0');
    assert.equal(await macro('disk-state'), 'UpToDate');
    assert.equal(await macro('replay-rest'), '0');
    const json = await marsadm(dir, 'view', 'all', '--json');
    const parsed = JSON.parse(json.stdout) as { resources: { resource: string; sizeBytes: number; role: string }[] };
    assert.deepEqual(parsed.resources.map((r) => [r.resource, r.sizeBytes, r.role]), [['r0', 8 * mib, 'Primary']]);
    const human = await marsadm(dir, 'view');
    assert.match(human.stdout, /r0 UpToDate Replicating Primary alpha/);
  } finally {
    await daemon.stop();
    await removeDir(dir);
  }
});

test('SIGTERM stops marsd cleanly and removes the control socket', { timeout: 60_000 }, async () => {
  const dir = await tempDir('mars-cli');
  try {
    assert.equal((await marsadm(dir, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777')).code, 0);
    const daemon = await startMarsd(dir);
    const disk = await sparseFile(join(dir, 'disk0'), 4 * mib);
    assert.equal((await marsadm(dir, 'create-resource', 'r0', disk)).code, 0);
    assert.equal(await daemon.stop(), 0, daemon.stderr());
    await assert.rejects(stat(join(dir, 'control.sock')), /ENOENT/);
    assert.match(daemon.stderr(), /stopped cleanly/);
  } finally {
    await removeDir(dir);
  }
});
