/**
 * Hooks for applications: `DIR/resource-R/hooks.json` names commands (argv, no shell)
 * that marsd runs when this host becomes primary of R and when it stops being it, with
 * MARS_RESOURCE, MARS_HOST, MARS_ROLE and MARS_DEVICE in their environment and their
 * output in marsd's log. Checked on the parts (a bad file names itself; output is kept
 * and cut; a command that cannot start is an error, not a crash) and on a real handover.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hookOutputBytesMax, loadHooks, runHook } from '../../src/daemon/hooks.js';
import { removeDir, tempDir, waitFor } from '../support/processes.js';
import { cleanup } from '../support/cluster-helpers.js';
import { MiB, mustAdm, randomDevice, startCluster, waitCaughtUp, connect } from '../support/replication-helpers.js';

test('hooks.json: absent is no hooks; a bad file is refused naming it and what is wrong', async () => {
  const dir = await tempDir('mars-hooks');
  try {
    assert.equal(await loadHooks(dir), undefined);
    const file = join(dir, 'hooks.json');
    await writeFile(file, '{ not json');
    await assert.rejects(loadHooks(dir), new RegExp(`${file}: not valid JSON`));
    await writeFile(file, JSON.stringify({ formatVersion: 2 }));
    await assert.rejects(loadHooks(dir), /unknown format version 2/);
    await writeFile(file, JSON.stringify({ formatVersion: 1, onPrimary: 'systemctl start app' }));
    await assert.rejects(loadHooks(dir), /onPrimary must be a non-empty array of strings/);
    await writeFile(file, JSON.stringify({ formatVersion: 1, onPrimary: ['/bin/true'], onSecondary: ['/bin/echo', 'x'] }));
    assert.deepEqual(await loadHooks(dir), { onPrimary: ['/bin/true'], onSecondary: ['/bin/echo', 'x'] });
  } finally {
    await removeDir(dir);
  }
});

test('runHook: exit code and output reach the log, output is cut at its limit, a missing command is an error', async () => {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const log = (level: string, msg: string, fields?: Record<string, unknown>): void => void lines.push({ level, msg, ...(fields === undefined ? {} : { fields }) });
  assert.equal(await runHook(['/bin/sh', '-c', 'echo "$MARS_ROLE of $MARS_RESOURCE"; exit 3'], { MARS_ROLE: 'primary', MARS_RESOURCE: 'r9' }, log, 'r9 became primary'), 3);
  assert.equal(lines.at(-1)?.level, 'error');
  assert.match(lines.at(-1)!.msg, /r9 became primary: hook exited 3/);
  assert.equal(lines.at(-1)?.fields?.['output'], 'primary of r9\n');
  assert.equal(await runHook(['/bin/sh', '-c', `head -c ${hookOutputBytesMax * 2} /dev/zero | tr '\\0' x`], {}, log, 'big'), 0);
  const output = String(lines.at(-1)?.fields?.['output']);
  assert.equal(output.length, hookOutputBytesMax + '…(cut)'.length);
  assert.ok(output.endsWith('…(cut)'));
  assert.equal(await runHook(['/nonexistent/hook'], {}, log, 'missing'), -1);
  assert.match(lines.at(-1)!.msg, /missing: hook could not start/);
});

test('a handover runs onSecondary on the old primary and onPrimary on the new one', { timeout: 120_000 }, async () => {
  const { root, hosts } = await startCluster('mars-hooks', 2);
  try {
    const [alpha, beta] = hosts as [(typeof hosts)[0], (typeof hosts)[0]];
    const device = (name: string): string => join(root, `${name}.img`);
    await randomDevice(device('alpha'), 8 * MiB, 1);
    await randomDevice(device('beta'), 8 * MiB, 2);
    const marks = join(root, 'marks');
    await mkdir(marks);
    for (const h of hosts) {
      await mkdir(join(h.dir, 'resource-r1'), { recursive: true });
      const record = ['/bin/sh', '-c', `echo "$MARS_HOST $MARS_ROLE $MARS_RESOURCE $MARS_DEVICE" >> ${marks}/log`];
      await writeFile(join(h.dir, 'resource-r1', 'hooks.json'), JSON.stringify({ formatVersion: 1, onPrimary: record, onSecondary: record }));
    }
    await mustAdm(alpha, 'create-resource', 'r1', device('alpha'));
    await waitFor('the hook of alpha becoming primary', async () => (await readFile(join(marks, 'log'), 'utf8').catch(() => '')).includes('alpha primary r1'));
    await mustAdm(beta, 'join-resource', 'r1', device('beta'));
    const c = await connect(alpha, 'r1');
    await c.write(0, Buffer.alloc(4096, 7));
    await c.flush();
    await c.close();
    await waitCaughtUp(alpha, beta, 'r1');
    await mustAdm(beta, 'primary', 'r1');
    await waitFor('both hooks of the handover', async () => {
      const text = await readFile(join(marks, 'log'), 'utf8');
      return text.includes('alpha secondary r1') && text.includes('beta primary r1');
    });
    const lines = (await readFile(join(marks, 'log'), 'utf8')).trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(' ').slice(0, 3).join(' ')),
      ['alpha primary r1', 'alpha secondary r1', 'beta primary r1'],
    );
    assert.match(lines[2]!, /^beta primary r1 nbd:\/\/127\.0\.0\.2:\d+\/r1$/);
  } finally {
    await cleanup(root, hosts);
  }
});
