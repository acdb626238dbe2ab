/**
 * Three real daemons on 127.0.0.1–3 replicate one resource: alpha creates it and writes;
 * beta joins with a disk full of random bytes while alpha keeps writing (fast full sync,
 * then replay from the sync's start); gamma joins later. Both secondaries end
 * byte-identical to the primary's export. pause-replay freezes a secondary's disk while
 * fetch goes on; resume-replay catches up. The tests of this file run in order on one
 * cluster.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { adm } from '../support/adm.js';
import { waitFor } from '../support/processes.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import {
  assertSameAsPrimary,
  connect,
  digest,
  MiB,
  mustAdm,
  randomDevice,
  randomWrites,
  readDevice,
  readExport,
  startCluster,
  status,
  waitCaughtUp,
} from '../support/replication-helpers.js';

/** Small enough to sync and compare quickly; the writes (up to 1 MiB each) land all over it. */
const sizeBytes = 32 * MiB;
const seed = Number(process.env['REPL_SEED'] ?? 7);

void describe('three hosts replicate one resource', { timeout: 300_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  let client: NbdClient | undefined;
  const random = new Random(seed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const gamma = (): TestHost => hosts[2]!;
  const device = (h: TestHost): string => join(root, `${h.name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-repl', 3));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.ip.length + h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()));
    client = await connect(alpha(), 'r1');
    await randomWrites(client, sizeBytes, 60, random);
  });

  after(async () => {
    await client?.close().catch(() => undefined);
    await cleanup(root, hosts);
  });

  void test('join-resource refuses bad input with one line and changes nothing', async () => {
    const small = join(root, 'small.img');
    await randomDevice(small, 16 * MiB, 1);
    const tooSmall = await adm(beta().dir, 'join-resource', 'r1', small);
    assert.equal(tooSmall.code, 1);
    assert.match(tooSmall.stderr.trim(), /^[^\n]*smaller than resource r1[^\n]*$/);
    const missing = await adm(beta().dir, 'join-resource', 'nosuch', device(beta()));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr.trim(), /^[^\n]*nosuch does not exist[^\n]*$/);
    const member = await adm(alpha().dir, 'join-resource', 'r1', small);
    assert.equal(member.code, 1);
    assert.match(member.stderr.trim(), /^[^\n]*already a member[^\n]*$/);
    const view = await status(alpha(), 'r1');
    assert.deepEqual(view.members.map((m) => m.host), ['alpha']);
  });

  void test('a joining disk full of random bytes ends byte-identical after sync plus writes during the sync', async () => {
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    // Writes while the sync runs.
    await randomWrites(client!, sizeBytes, 100, random);
    const s = await waitCaughtUp(alpha(), beta(), 'r1', 120_000);
    assert.equal(s.replica?.consistent, true);
    assert.equal(s.role, 'secondary');
    const image = await readExport(client!, sizeBytes);
    await assertSameAsPrimary(image, beta(), device(beta()), 'after sync');
    const disk = await adm(beta().dir, 'view-disk-state', 'r1');
    assert.equal(disk.stdout.trim(), 'UpToDate');
    assert.equal((await adm(beta().dir, 'view-is-consistent', 'r1')).stdout.trim(), '1');
    for (const macro of ['fetch-rest', 'replay-rest', 'sync-rest']) assert.equal((await adm(beta().dir, `view-${macro}`, 'r1')).stdout.trim(), '0', macro);
  });

  void test('a second secondary joins later and both follow new writes', async () => {
    await mustAdm(gamma(), 'join-resource', 'r1', device(gamma()));
    await randomWrites(client!, sizeBytes, 60, random);
    await waitCaughtUp(alpha(), gamma(), 'r1', 120_000);
    await waitCaughtUp(alpha(), beta(), 'r1', 60_000);
    const image = await readExport(client!, sizeBytes);
    await assertSameAsPrimary(image, beta(), device(beta()), 'beta');
    await assertSameAsPrimary(image, gamma(), device(gamma()), 'gamma');
    const members = (await status(alpha(), 'r1')).members;
    assert.deepEqual(members.map((m) => m.host), ['alpha', 'beta', 'gamma']);
  });

  void test('pause-replay freezes the disk while fetch goes on; resume-replay catches up', async () => {
    await mustAdm(gamma(), 'pause-replay', 'r1');
    const frozen = digest(await readDevice(device(gamma()), sizeBytes));
    await randomWrites(client!, sizeBytes, 40, random);
    const want = (await status(alpha(), 'r1')).logger!.logPosition;
    await waitFor('gamma to fetch while replay is paused', async () => {
      const r = (await status(gamma(), 'r1')).replica!;
      return r.fetch.state === 'caught-up' && r.fetch.restBytes === 0 && r.replay.restBytes > 0;
    });
    assert.equal((await adm(gamma().dir, 'view-repl-state', 'r1')).stdout.trim(), 'PausedReplay');
    assert.notEqual((await adm(gamma().dir, 'view-replay-rest', 'r1')).stdout.trim(), '0');
    assert.equal(digest(await readDevice(device(gamma()), sizeBytes)), frozen, 'the paused disk did not change');
    await mustAdm(gamma(), 'resume-replay', 'r1');
    const s = await waitCaughtUp(alpha(), gamma(), 'r1');
    assert.ok(BigInt(s.replica!.replay.position!.nextSeq) >= BigInt(want.nextSeq));
    await assertSameAsPrimary(await readExport(client!, sizeBytes), gamma(), device(gamma()), 'after resume-replay');
  });

  void test('log-delete waits for every member and names the one holding it back', async () => {
    await mustAdm(beta(), 'pause-replay', 'r1');
    const before = (await status(beta(), 'r1')).replica!.replay.position!.logNumber;
    for (let i = 0; i < 3; i++) {
      await randomWrites(client!, sizeBytes, 20, random);
      await mustAdm(alpha(), 'log-rotate', 'r1');
    }
    await waitCaughtUp(alpha(), gamma(), 'r1');
    const out = await mustAdm(alpha(), 'log-delete', 'r1');
    const s = await status(alpha(), 'r1');
    assert.deepEqual(s.logDeleteHeldBy, { host: 'beta', logNumber: before }, out);
    assert.ok(s.logFiles.some((f) => Number(f.name.slice(4, 13)) === before), 'the log beta needs is kept');
    const view = await mustAdm(alpha(), 'view', 'r1');
    assert.match(view, /held back by beta/);
    await mustAdm(beta(), 'resume-replay', 'r1');
    await waitCaughtUp(alpha(), beta(), 'r1');
    await waitFor('beta to report its replay position', async () => (await status(alpha(), 'r1')).logDeleteHeldBy?.logNumber !== before);
    await mustAdm(alpha(), 'log-delete', 'r1');
    const after = await status(alpha(), 'r1');
    assert.ok(after.logFiles.every((f) => Number(f.name.slice(4, 13)) > before), `old logs deleted: ${JSON.stringify(after.logFiles)}`);
  });
});
