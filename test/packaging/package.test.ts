/**
 * Packaging: `npm pack` gives a tarball with the built daemon and CLI, the contrib files
 * and the docs (no tests); `npm install -g` of it (into a temporary prefix) provides
 * `marsadm` and `marsd` that work: help, a state directory prepared, and a daemon that
 * starts and serves its metrics.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { freePort, removeDir, repoRoot, run, tempDir, waitFor } from '../support/processes.js';

void describe('npm pack and npm install -g', { timeout: 300_000 }, () => {
  let root = '';
  let tarball = '';
  const prefix = (): string => join(root, 'prefix');
  const bin = (name: string): string => join(prefix(), 'bin', name);

  before(async () => {
    root = await tempDir('mars-pack');
    // npm test has built dist/ already; a plain `npm pack` builds it by itself (prepare).
    const packed = await run('npm', ['pack', repoRoot, '--ignore-scripts', '--pack-destination', root], { timeoutMs: 120_000, env: { ...process.env, npm_config_loglevel: 'error' } });
    assert.equal(packed.code, 0, packed.stderr);
    tarball = join(root, packed.stdout.trim().split('\n').at(-1)!);
    assert.ok(existsSync(tarball), tarball);
  });

  after(async () => {
    await removeDir(root);
  });

  void test('the tarball holds the built CLI and daemon, contrib and docs, and no tests', async () => {
    const listed = await run('tar', ['-tzf', tarball]);
    assert.equal(listed.code, 0, listed.stderr);
    const files = new Set(listed.stdout.trim().split('\n'));
    for (const f of ['package/bin/marsadm', 'package/bin/marsd', 'package/dist/src/cli/marsadm-main.js', 'package/dist/src/daemon/marsd-main.js', 'package/dist/src/web/status-page.js', 'package/contrib/marsd.service', 'package/contrib/grafana-dashboard.json', 'package/contrib/prometheus-alerts.yml', 'package/contrib/hooks/hooks.json', 'package/docs/metrics.md', 'package/README.md']) {
      assert.ok(files.has(f), `${f} is in the tarball`);
    }
    assert.deepEqual([...files].filter((f) => f.startsWith('package/dist/test/') || f.startsWith('package/src/') || f.endsWith('.map')), []);
  });

  void test('installed globally, marsadm and marsd are on the PATH and work', async (t) => {
    const installed = await run('npm', ['install', '-g', '--prefix', prefix(), '--no-audit', '--no-fund', '--prefer-offline', tarball], { timeoutMs: 240_000, env: { ...process.env, npm_config_loglevel: 'error' } });
    assert.equal(installed.code, 0, installed.stderr);
    const env = { ...process.env, PATH: `${join(prefix(), 'bin')}:${process.env['PATH'] ?? ''}` };
    const help = await run('marsadm', ['--help'], { env });
    assert.equal(help.code, 0, help.stderr);
    for (const word of ['create-cluster', 'primary', 'events', 'completion', 'view']) assert.match(help.stdout, new RegExp(`\\n  ${word} `), `marsadm --help names ${word}`);
    const daemonHelp = await run('marsd', ['--help'], { env });
    assert.equal(daemonHelp.code, 0, daemonHelp.stderr);
    assert.match(daemonHelp.stdout, /--metrics <IP:PORT>/);
    const completion = await run('marsadm', ['completion', 'bash'], { env });
    assert.equal(completion.code, 0);
    assert.equal((await run('bash', ['-n', '-c', completion.stdout])).code, 0);

    const dir = join(root, 'state');
    const created = await run(bin('marsadm'), ['--dir', dir, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777']);
    assert.equal(created.code, 0, created.stderr);
    const metrics = `127.0.0.1:${await freePort()}`;
    const daemon = spawn(bin('marsd'), ['--dir', dir, '--nbd', '127.0.0.1:0', '--metrics', metrics], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    daemon.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
    try {
      let body = '';
      await waitFor('the installed marsd to serve its metrics', async () => {
        body = await fetch(`http://${metrics}/metrics`).then((r) => r.text(), () => '');
        return /^mars_up\{host="alpha"\} 1$/m.test(body);
      }, 30_000, 200).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; stderr: ${stderr}`);
      });
      const status = await run(bin('marsadm'), ['--dir', dir, 'view']);
      assert.equal(status.code, 0, status.stderr);
      t.diagnostic(status.stdout.trim());
    } finally {
      daemon.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    }
  });
});
