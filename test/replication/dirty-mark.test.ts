/**
 * The dirty mark between real daemons on 127.0.0.1–2: a secondary whose state directory
 * says that replay had written its device beyond its saved position (`dirty-HOST`, as a
 * crash between checkpoints leaves it) starts inconsistent; with the primary killed
 * (kill -9) it cannot get there, so `is-consistent` stays 0, `disk-state` is InConsistent,
 * `primary --force` is refused with one line naming the point, and only
 * `primary --force --allow-inconsistent` takes over.
 *
 * The mark is written by hand here (a kill -9 exactly between a mark and a checkpoint is
 * not reproducible between processes); the replayer's writing of it is covered in-process
 * (test/fetch/dirty-mark.test.ts) and by the simulator.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { adm } from '../support/adm.js';
import { waitFor } from '../support/processes.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { connect, MiB, mustAdm, randomDevice, randomWrites, startCluster, status, waitCaughtUp } from '../support/replication-helpers.js';
import { kill9, view } from '../support/roles-helpers.js';

const sizeBytes = 8 * MiB;
const seed = 52;

void describe('dirty mark', { timeout: 120_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (h: TestHost): string => join(root, `${h.name}-r1.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-dirty', 2));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()));
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    const c = await connect(alpha(), 'r1');
    await randomWrites(c, sizeBytes, 20, new Random(seed));
    await c.close();
    await waitCaughtUp(alpha(), beta(), 'r1', 60_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('below its dirty mark with the primary gone: inconsistent, --force refused naming the point, --allow-inconsistent overrides', async () => {
    assert.equal(await view(beta(), 'is-consistent', 'r1'), '1');
    await beta().daemon!.stop();
    const resourceDir = join(beta().dir, 'resource-r1');
    const position = JSON.parse(await readFile(join(resourceDir, 'replay-beta'), 'utf8')) as { logNumber: number; logHost: string; offsetBytes: number };
    const mark = { logNumber: position.logNumber, logHost: position.logHost, offsetBytes: position.offsetBytes + 4096 };
    await writeFile(join(resourceDir, 'dirty-beta'), `${JSON.stringify({ formatVersion: 1, ...mark })}\n`);
    await kill9(alpha());
    await start(beta());
    await waitFor('beta to run r1 as a secondary', async () => (await status(beta(), 'r1')).replica != null, 30_000, 100);
    const s = await status(beta(), 'r1');
    assert.equal(s.replica?.consistent, false, JSON.stringify(s));
    assert.equal(await view(beta(), 'is-consistent', 'r1'), '0');
    assert.equal(await view(beta(), 'disk-state', 'r1'), 'InConsistent');

    const refused = await adm(beta().dir, 'primary', 'r1', '--force');
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.equal(refused.stdout, '');
    const where = `${mark.logNumber}:${mark.offsetBytes} of ${mark.logHost}`;
    assert.equal(
      refused.stderr,
      `marsadm: beta is not consistent for r1: before a crash its replay wrote the device up to ${where}, and replay must get there again (from ${position.logNumber}:${position.offsetBytes}); refusing to make it primary (primary --force --allow-inconsistent takes over with that disk)\n`,
    );
    assert.equal(await view(beta(), 'is-primary', 'r1'), '0');

    const usage = await adm(beta().dir, 'primary', 'r1', '--allow-inconsistent');
    assert.equal(usage.code, 2, 'the override alone is a usage error');

    const out = await mustAdm(beta(), 'primary', 'r1', '--force', '--allow-inconsistent');
    assert.match(out, /^this host is now the primary of r1 \(was alpha\), in \d+ ms; forced: /);
    assert.equal(await view(beta(), 'is-primary', 'r1'), '1');
  });
});
