/**
 * The identity move of merge-cluster: the sealed secret opens only with the old secret of
 * the side it is meant for, and a crash between the writes of the move is repaired at
 * the next start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { adoptIdentity, loadIdentity, openMerge, repairIdentity, sealMerge, secretFileText } from '../../src/daemon/identity.js';
import { hostFormatVersion, type HostConfig } from '../../src/daemon/state-dir.js';
import { removeDir, tempDir } from '../support/processes.js';

const old = { clusterId: 'cluster-a', secret: randomBytes(32) };
const next = { clusterId: 'cluster-b', secret: randomBytes(32) };

void test('a sealed merge opens with the old secret only, and never shows the new secret', () => {
  const value = sealMerge(old, next);
  assert.equal(JSON.stringify(value).includes(next.secret.toString('hex')), false);
  assert.equal(JSON.stringify(value).includes(next.secret.toString('base64')), false);
  assert.deepEqual(openMerge(value, old), next);
  assert.equal(openMerge(value, { clusterId: 'cluster-a', secret: randomBytes(32) }), undefined, 'a wrong secret does not open it');
  assert.equal(openMerge(value, next), undefined, 'the other side has nothing to adopt');
  const tampered = { ...value, sealed: Buffer.from(Buffer.from(value.sealed, 'base64').map((b, i) => (i === 40 ? b ^ 1 : b))).toString('base64') };
  assert.equal(openMerge(tampered, old), undefined, 'a changed byte is caught');
});

void test('an identity move interrupted after the new secret was written is finished at the next start', async () => {
  const dir = await tempDir('mars-identity');
  try {
    const config: HostConfig = { formatVersion: hostFormatVersion, host: 'a1', listen: '127.0.0.1:7777', clusterId: old.clusterId };
    await writeFile(join(dir, 'host.json'), JSON.stringify(config));
    await writeFile(join(dir, 'cluster.secret'), secretFileText(old.secret));
    const moved = await adoptIdentity(dir, config, old, next);
    assert.equal(moved.clusterId, next.clusterId);
    assert.deepEqual((await loadIdentity(dir, moved)).former, old);
    // The crash: host.json still names the old cluster, cluster.secret holds the new secret.
    await writeFile(join(dir, 'host.json'), JSON.stringify(config));
    const identity = await loadIdentity(dir, config);
    const repaired = await repairIdentity(dir, config, identity, { ...sealMerge(old, next) });
    assert.equal(repaired.clusterId, next.clusterId);
    assert.equal((JSON.parse(await readFile(join(dir, 'host.json'), 'utf8')) as HostConfig).clusterId, next.clusterId);
    assert.equal(await repairIdentity(dir, repaired, await loadIdentity(dir, repaired), undefined), repaired, 'nothing to repair');
    await assert.rejects(repairIdentity(dir, config, identity, undefined), /no merge says which cluster/);
  } finally {
    await removeDir(dir);
  }
});
