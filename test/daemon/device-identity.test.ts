/**
 * One disk under two resources is refused by identity, not by path string: a symlink or a
 * hard link of a disk already in use is refused on create-resource and join-resource,
 * with one line naming the resource and the path it uses; another disk is accepted.
 */
import assert from 'node:assert/strict';
import { link, mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deviceIdentity, sameDevice } from '../../src/storage/fs-storage.js';
import { adm } from '../support/adm.js';
import { sparseFile, tempDir } from '../support/processes.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import { mustAdm, startCluster } from '../support/replication-helpers.js';

const MiB = 1024 * 1024;

void test('sameDevice: a symlink, a chain of symlinks and a hard link name the same disk; another file and a missing one do not', async () => {
  const dir = await tempDir('mars-devid-');
  try {
    const disk = await sparseFile(join(dir, 'disk'), MiB);
    const other = await sparseFile(join(dir, 'other'), MiB);
    await mkdir(join(dir, 'sub'));
    await symlink(disk, join(dir, 'alias'));
    await symlink('../alias', join(dir, 'sub', 'alias2'));
    await link(disk, join(dir, 'hard'));
    assert.equal(await sameDevice(disk, join(dir, 'alias')), true);
    assert.equal(await sameDevice(join(dir, 'sub', 'alias2'), disk), true);
    assert.equal(await sameDevice(join(dir, 'hard'), join(dir, 'alias')), true);
    assert.equal(await sameDevice(disk, join(dir, 'sub', '..', 'disk')), true);
    assert.equal(await sameDevice(disk, other), false);
    assert.equal(await sameDevice(disk, join(dir, 'missing')), false);
    assert.equal((await deviceIdentity(join(dir, 'sub', 'alias2')))?.realPath, disk);
    assert.equal(await deviceIdentity(join(dir, 'missing')), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void describe('create-resource and join-resource refuse an alias of a disk in use', { timeout: 120_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];

  before(async () => {
    ({ root, hosts } = await startCluster('mars-devid-cluster', 2));
    await mustAdm(hosts[0]!, 'create-resource', 'r0', await sparseFile(join(root, 'alpha-r0.img'), 8 * MiB));
    await mustAdm(hosts[1]!, 'create-resource', 'rb', await sparseFile(join(root, 'beta-rb.img'), 8 * MiB));
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('create-resource through a symlink or hard link of r0\'s disk is refused with one line; another disk is accepted', async () => {
    const alpha = hosts[0]!;
    const disk = join(root, 'alpha-r0.img');
    await symlink(disk, join(root, 'alpha-alias.img'));
    await link(disk, join(root, 'alpha-hard.img'));
    for (const alias of ['alpha-alias.img', 'alpha-hard.img']) {
      const r = await adm(alpha.dir, 'create-resource', 'r1', join(root, alias));
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(r.stderr.trim(), `marsadm: device ${join(root, alias)} already belongs to resource r0 (the same disk as ${disk})`);
    }
    const view = await adm(alpha.dir, 'view', 'r1');
    assert.equal(view.code, 1, 'r1 was not created');
    await mustAdm(alpha, 'create-resource', 'r1', await sparseFile(join(root, 'alpha-r1.img'), 8 * MiB));
  });

  void test('join-resource through a symlink of a disk in use here is refused with one line, and this host stays out of the resource', async () => {
    const alpha = hosts[0]!;
    await symlink(join(root, 'alpha-r0.img'), join(root, 'alpha-alias2.img'));
    const r = await adm(alpha.dir, 'join-resource', 'rb', join(root, 'alpha-alias2.img'));
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.stderr.trim(), `marsadm: device ${join(root, 'alpha-alias2.img')} already belongs to resource r0 (the same disk as ${join(root, 'alpha-r0.img')})`);
    const view = await adm(alpha.dir, 'view', 'rb');
    assert.equal(view.code, 1, 'alpha did not join rb');
  });
});
