/**
 * marsd and marsadm with a state directory that others could change: one writable by
 * group or others is refused with one line (exit 1) unless --insecure-dir; a symbolic
 * link planted where a file or directory of the state should be is refused at start and
 * never followed; control.sock is a socket of mode 0600.
 */
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { marsadm, marsdPath, run, sparseFile, startMarsd, tempDir } from '../support/processes.js';

const MiB = 1024 * 1024;

function marsd(dir: string, ...args: string[]): ReturnType<typeof run> {
  return run(process.execPath, [marsdPath, '--dir', dir, '--nbd', '127.0.0.1:0', ...args], { timeoutMs: 30_000 });
}

void describe('state directory hardening', { timeout: 120_000 }, () => {
  let root = '';
  let dir = '';
  let outside = '';

  before(async () => {
    root = await tempDir('mars-statedir-');
    dir = join(root, 'state');
    outside = join(root, 'outside');
    await mkdir(outside);
    assert.equal((await marsadm(dir, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777')).code, 0);
    const daemon = await startMarsd(dir);
    try {
      const created = await marsadm(dir, 'create-resource', 'r0', await sparseFile(join(root, 'disk.img'), 4 * MiB));
      assert.equal(created.code, 0, created.stderr);
      assert.equal(((await lstat(join(dir, 'control.sock'))).mode & 0o777).toString(8), '600', 'control.sock is 0600');
      assert.ok((await lstat(join(dir, 'control.sock'))).isSocket());
    } finally {
      assert.equal(await daemon.stop(), 0);
    }
  });

  after(async () => {
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  void test('a state directory writable by others or by group is refused with one line; --insecure-dir accepts it', async () => {
    for (const mode of [0o777, 0o770, 0o702]) {
      await chmod(dir, mode);
      const r = await marsd(dir);
      assert.equal(r.code, 1, `mode ${mode.toString(8)}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`^marsd: state directory ${dir} is writable by (group and others|group|others) \\(mode ${mode.toString(8)}\\): chmod go-w ${dir}, or pass --insecure-dir to accept it$`));
    }
    const daemon = await startMarsd(dir, { extraArgs: ['--insecure-dir'] });
    assert.equal(await daemon.stop(), 0, 'served with --insecure-dir');
    await chmod(dir, 0o700);
  });

  void test('marsadm create-cluster refuses an existing world-writable directory unless --insecure-dir', async () => {
    const open = join(root, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    const r = await marsadm(open, 'create-cluster', '--host', 'beta', '--listen', '127.0.0.2:7777');
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim(), /^marsadm: state directory .* is writable by group and others \(mode 777\)/);
    assert.deepEqual(await readdir(open), [], 'nothing was written');
    const ok = await marsadm(open, 'create-cluster', '--host', 'beta', '--listen', '127.0.0.2:7777', '--insecure-dir');
    assert.equal(ok.code, 0, ok.stderr);
  });

  void test('planted symbolic links, for a file or a directory of the state, are refused at start and not followed', async () => {
    const victim = join(outside, 'victim');
    await writeFile(victim, 'precious');
    const cases: [string, string][] = [
      [join(dir, 'resource-r0', 'resource.json'), victim],
      [join(dir, 'host.json'), victim],
      [join(dir, 'meta'), outside],
      [join(dir, 'resource-r0'), outside],
    ];
    for (const [path, target] of cases) {
      const saved = `${path}.saved`;
      await rename(path, saved);
      await symlink(target, path);
      try {
        const r = await marsd(dir);
        assert.equal(r.code, 1, `${path}: ${r.stderr}`);
        assert.equal(r.stderr.trim(), `marsd: ${path} is a symbolic link: marsd follows no links inside its state directory (replace it by the file or directory itself)`);
      } finally {
        await rm(path);
        await rename(saved, path);
      }
    }
    assert.equal(await readFile(victim, 'utf8'), 'precious');
    assert.deepEqual((await readdir(outside)).sort(), ['victim'], 'nothing was created through a link');
    const daemon = await startMarsd(dir);
    assert.equal(await daemon.stop(), 0, 'starts again once the links are gone');
  });
});
