/**
 * resize and delete-resource across members, on two real daemons: resize grows only and
 * only to what every member's device holds (refused with one line otherwise, nothing
 * changed); the new area is zeroed through the log, so the secondary ends byte-identical
 * without a sync; a device grown underneath is noticed by resize without down/up, NBD
 * clients staying; delete-resource is refused on any member while the export is open
 * anywhere, then removes the resource on every member and leaves the devices as they are.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { adm } from '../support/adm.js';
import { waitFor } from '../support/processes.js';
import { cleanup, metaValue, type TestHost } from '../support/cluster-helpers.js';
import { connect, digest, firstDifference, MiB, mustAdm, randomDevice, randomWrites, readDevice, readExport, startCluster, status, waitCaughtUp } from '../support/replication-helpers.js';

const seed = Number(process.env['RESIZE_SEED'] ?? 5);

void describe('resize and delete-resource', { timeout: 180_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (h: TestHost): string => join(root, `${h.name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-resize', 2));
    await randomDevice(device(alpha()), 32 * MiB, seed);
    await randomDevice(device(beta()), 20 * MiB, seed + 1);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()), '--size', String(16 * MiB));
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    const c = await connect(alpha(), 'r1');
    await randomWrites(c, 16 * MiB, 40, random);
    await c.close();
    await waitCaughtUp(alpha(), beta(), 'r1');
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('resize refuses to shrink, an unaligned size, and a size a member cannot hold; nothing changes', async () => {
    const shrink = await adm(alpha().dir, 'resize', 'r1', String(8 * MiB));
    assert.equal(shrink.code, 1);
    assert.match(shrink.stderr.trim(), /^marsadm: resize only grows: r1 has 16777216 bytes, 8388608 would shrink it$/);
    const odd = await adm(alpha().dir, 'resize', 'r1', String(16 * MiB + 512));
    assert.equal(odd.code, 1);
    assert.match(odd.stderr.trim(), /not a multiple of 4096/);
    const tooBig = await adm(alpha().dir, 'resize', 'r1', String(24 * MiB));
    assert.equal(tooBig.code, 1);
    assert.match(tooBig.stderr.trim(), /^marsadm: the device of member beta has 20971520 bytes, fewer than 25165824; nothing changed$/);
    assert.equal((await status(alpha(), 'r1')).sizeBytes, 16 * MiB);
  });

  void test('resize grows on every member; the new area arrives as zeroes through the log, byte-identical', async () => {
    await mustAdm(beta(), 'resize', 'r1', String(20 * MiB));
    await waitFor('both members to have the new size', async () => (await status(alpha(), 'r1')).sizeBytes === 20 * MiB && (await status(beta(), 'r1')).sizeBytes === 20 * MiB);
    const c = await connect(alpha(), 'r1');
    try {
      assert.equal(c.sizeBytes, 20 * MiB, 'a new connection sees the new size');
      await c.write(18 * MiB, Buffer.alloc(64 * 1024, 0x5a));
      await c.flush();
      const image = await readExport(c, 20 * MiB);
      assert.ok(image.subarray(16 * MiB, 18 * MiB).equals(Buffer.alloc(2 * MiB)), 'the new area reads as zeroes, not the device\'s old bytes');
      await waitCaughtUp(alpha(), beta(), 'r1');
      assert.equal(firstDifference(image, await readDevice(device(beta()), 20 * MiB)), undefined, 'beta byte-identical, new area included');
      assert.equal((await status(beta(), 'r1')).replica?.sync, null, 'no sync was needed');
    } finally {
      await c.close();
    }
  });

  void test('a device grown underneath is noticed by resize without down/up; an open NBD client stays, a new one sees the new size', async () => {
    const open = await connect(alpha(), 'r1');
    try {
      const before = await open.read(0, 4096);
      await truncate(device(beta()), 24 * MiB);
      await mustAdm(alpha(), 'resize', 'r1', String(24 * MiB));
      await waitFor('both members to have 24 MiB', async () => (await status(alpha(), 'r1')).sizeBytes === 24 * MiB && (await status(beta(), 'r1')).sizeBytes === 24 * MiB);
      assert.ok((await open.read(0, 4096)).equals(before), 'the client that was open reads on');
      const fresh = await connect(alpha(), 'r1');
      try {
        assert.equal(fresh.sizeBytes, 24 * MiB, 'a new connection sees the new size');
        const image = await readExport(fresh, 24 * MiB);
        await waitCaughtUp(alpha(), beta(), 'r1');
        assert.equal(firstDifference(image, await readDevice(device(beta()), 24 * MiB)), undefined, 'beta byte-identical, new area included');
      } finally {
        await fresh.close();
      }
    } finally {
      await open.close();
    }
  });

  void test('delete-resource is refused on any member while the export is open anywhere, then --force removes r1 on every member and leaves the devices', async () => {
    const c = await connect(alpha(), 'r1');
    await waitFor("beta to see alpha's NBD client", async () => {
      const actual = (await metaValue(beta(), 'resource/r1/actual/alpha')) as { nbdClients?: unknown[] } | undefined;
      return Array.isArray(actual?.nbdClients) && actual.nbdClients.length === 1;
    });
    for (const h of [alpha(), beta()]) {
      const refused = await adm(h.dir, 'delete-resource', 'r1');
      assert.equal(refused.code, 1, `${h.name}: ${refused.stdout}`);
      assert.match(refused.stderr.trim(), /^marsadm: delete-resource refused: r1 has 1 NBD connection\(s\) open: alpha 127\.0\.0\.1:\d+ \(close them, or use --force to disconnect them\)$/);
    }
    const before = digest(await readDevice(device(beta()), 20 * MiB));
    const forced = await mustAdm(beta(), 'delete-resource', 'r1', '--force');
    assert.match(forced, /^resource r1 deleted on alpha beta; devices are left as they are; disconnected alpha 127\.0\.0\.1:\d+\n$/);
    await c.close().catch(() => undefined);
    for (const h of hosts) {
      await waitFor(`r1 gone on ${h.name}`, async () => {
        const view = await adm(h.dir, 'view', 'all');
        const dirGone = await access(join(h.dir, 'resource-r1')).then(() => false, () => true);
        return view.code === 0 && !view.stdout.includes('resource r1') && dirGone;
      });
    }
    assert.equal(digest(await readDevice(device(beta()), 20 * MiB)), before, 'the device is left as it was');
    const again = await adm(beta().dir, 'view', 'r1');
    assert.equal(again.code, 1);
  });
});
