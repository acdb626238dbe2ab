/**
 * SIGHUP (the unit's ExecReload): marsd checks every resource's hooks.json at once and
 * says in its log whether it is valid, and keeps serving; the example hooks.json of
 * contrib/ is valid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadHooks } from '../../src/daemon/hooks.js';
import { mustMarsadm, newHostDir, resourceDir } from '../support/daemon-helpers.js';
import { removeDir, repoRoot, sparseFile, startMarsd, waitFor } from '../support/processes.js';

void test('SIGHUP reports each resource\'s hooks as valid or not, and marsd goes on serving', async () => {
  const dir = await newHostDir('mars-reload');
  const daemon = await startMarsd(dir);
  try {
    await mustMarsadm(dir, 'create-resource', 'r0', await sparseFile(join(dir, 'disk0'), 4 * 1024 * 1024));
    await mustMarsadm(dir, 'create-resource', 'r1', await sparseFile(join(dir, 'disk1'), 4 * 1024 * 1024));
    await copyFile(join(repoRoot, 'contrib', 'hooks', 'hooks.json'), join(resourceDir(dir, 'r0'), 'hooks.json'));
    await writeFile(join(resourceDir(dir, 'r1'), 'hooks.json'), '{"formatVersion": 1, "onPrimary": "not argv"}');
    daemon.child.kill('SIGHUP');
    await waitFor('the reload to be logged', () => daemon.stderr().includes('"msg":"reloaded"'), 10_000);
    assert.match(daemon.stderr(), /"msg":"reload: r0: hooks ok \(onPrimary, onSecondary\)"/);
    assert.match(daemon.stderr(), /"msg":"reload: r1: hooks invalid: [^"]*hooks\.json: onPrimary must be a non-empty array of strings/);
    assert.equal(daemon.child.exitCode, null, 'marsd still runs');
    assert.equal((await mustMarsadm(dir, 'view-is-primary', 'r0')).trim(), '1');
  } finally {
    assert.equal(await daemon.stop(), 0);
    await removeDir(dir);
  }
});

void test('the example hooks.json in contrib/ is valid', async () => {
  const hooks = await loadHooks(join(repoRoot, 'contrib', 'hooks'));
  assert.deepEqual(hooks?.onPrimary, ['/usr/local/sbin/mars-app-hook', '/srv/app', 'app.service']);
});
