/**
 * merge-cluster between real daemons: two clusters with disjoint resource names become
 * one (the merging side adopts the other's cluster id and secret, and its other hosts
 * follow by themselves, even across a restart); a cluster with a clashing resource name
 * is refused, naming the clash.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { adm } from '../support/adm.js';
import { sparseFile } from '../support/processes.js';
import { cleanup, clusterRoot, createCluster, joinCluster, metaValue, recordFields, must, newHost, secretFile, start, waitHosts, type TestHost } from '../support/cluster-helpers.js';

const mib = 1024 * 1024;
const hosts: TestHost[] = [];
let root = '';

after(async () => {
  await cleanup(root, hosts);
});

async function clusterOf(names: readonly [string, string][], resource: string): Promise<TestHost[]> {
  const made: TestHost[] = [];
  for (const [name, ip] of names) {
    const host = await newHost(root, name, ip);
    hosts.push(host);
    if (made.length === 0) await createCluster(host);
    else assert.equal((await joinCluster(host, made[0]!)).code, 0);
    await start(host);
    made.push(host);
  }
  const disk = await sparseFile(join(root, `${resource}.disk`), 4 * mib);
  await must(adm(made[0]!.dir, 'create-resource', resource, disk), `create-resource ${resource}`);
  return made;
}

async function clusterIdOf(host: TestHost): Promise<string> {
  return (JSON.parse(await readFile(join(host.dir, 'host.json'), 'utf8')) as { clusterId: string }).clusterId;
}

void test('merge-cluster joins two clusters with disjoint resources; a clashing name is refused', { timeout: 120_000 }, async () => {
  root = await clusterRoot('mars-merge');
  const [a1, a2] = await clusterOf([['a1', '127.0.0.1'], ['a2', '127.0.0.2']], 'ra');
  const [b1, b2] = await clusterOf([['b1', '127.0.0.3'], ['b2', '127.0.0.4']], 'rb');
  const [c1] = await clusterOf([['c1', '127.0.0.5']], 'ra');
  const bId = await clusterIdOf(b1!);
  const aId = await clusterIdOf(a1!);

  // a2 is down during the merge: it must still find its way in, under its old identity first.
  await a2!.daemon!.kill9();
  a2!.daemon = undefined;
  const merged = await adm(a1!.dir, 'merge-cluster', b1!.listen, '--secret-file', secretFile(b1!));
  assert.equal(merged.code, 0, merged.stderr);
  assert.match(merged.stdout, new RegExp(`merged into cluster ${bId}`));
  const everyone = { a1: 'alive', a2: 'alive', b1: 'alive', b2: 'alive' };
  for (const h of [a1!, b1!, b2!]) await waitHosts(h, { ...everyone, a2: 'unreachable' }, 30_000);
  assert.equal(await clusterIdOf(a2!), aId, 'a2 has not heard yet');
  await start(a2!);
  for (const h of [a1!, a2!, b1!, b2!]) await waitHosts(h, everyone, 30_000);
  assert.equal(await clusterIdOf(a2!), bId, 'the other host of the merged side adopted the id');
  assert.equal(await readFile(secretFile(a2!), 'utf8'), await readFile(secretFile(b1!), 'utf8'), '… and the secret');
  assert.deepEqual(recordFields(await metaValue(b2!, 'cluster/host/a1')), { address: a1!.listen, resources: ['ra'] });
  assert.deepEqual(recordFields(await metaValue(a2!, 'cluster/host/b1')), { address: b1!.listen, resources: ['rb'] });

  const clash = await adm(c1!.dir, 'merge-cluster', b1!.listen, '--secret-file', secretFile(b1!));
  assert.equal(clash.code, 1);
  assert.match(clash.stderr.trim(), /^marsadm: merge refused: both clusters have resource\(s\) ra$/);
  assert.notEqual(await clusterIdOf(c1!), bId, 'the refused side keeps its identity');
  await waitHosts(b1!, everyone);
});
