/**
 * Five real marsd on 127.0.0.1 … 127.0.0.5 form a cluster with create-cluster and
 * join-cluster; every host sees every other; resource keys reach the members of their
 * resource and no other host; a host killed with kill -9 shows as unreachable, restarts
 * and catches up with what changed while it was down; a host leaves. The tests of this
 * file run in order on one cluster.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { adm } from '../support/adm.js';
import { sparseFile, waitFor } from '../support/processes.js';
import {
  cleanup,
  clusterRoot,
  createCluster,
  joinCluster,
  metaFile,
  metaValue,
  must,
  recordFields,
  newHost,
  start,
  viewHosts,
  waitCluster,
  waitHosts,
  type TestHost,
} from '../support/cluster-helpers.js';

const mib = 1024 * 1024;

/** The role fields of an indicator (it also carries needsLog, consistent, deviceBytes, version). */
function stateOf(actual: unknown): { isPrimary: unknown; state: unknown } | undefined {
  if (actual === null || typeof actual !== 'object') return undefined;
  const a = actual as Record<string, unknown>;
  return { isPrimary: a['isPrimary'], state: a['state'] };
}
const hostCount = 5;

void describe('a cluster of five real daemons', { timeout: 180_000 }, () => {
  let root = '';
  const hosts: TestHost[] = [];
  const host = (i: number): TestHost => hosts[i - 1]!;
  const allAlive = (names: readonly string[]): Record<string, string> => Object.fromEntries(names.map((n) => [n, 'alive']));
  const names = (): string[] => hosts.map((h) => h.name);

  before(async () => {
    root = await clusterRoot('mars-cluster');
    for (let i = 1; i <= hostCount; i++) hosts.push(await newHost(root, `h${i}`, `127.0.0.${i}`));
    await createCluster(host(1));
    await start(host(1));
    // h2 joins through h1; the others through h2, which joined itself: any running member
    // will do. Their joins go one after another, their daemons start together.
    const joinedH2 = await joinCluster(host(2), host(1), host(1));
    assert.equal(joinedH2.code, 0, joinedH2.stderr);
    await start(host(2));
    for (let i = 3; i <= hostCount; i++) {
      const joined = await joinCluster(host(i), host(2), host(1));
      assert.equal(joined.code, 0, joined.stderr);
    }
    await Promise.all(hosts.slice(2).map((h) => start(h)));
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('view-hosts on every host lists every host as alive', async () => {
    for (const h of hosts) await waitHosts(h, allAlive(names()));
    const lines = await viewHosts(host(3));
    assert.deepEqual(
      lines.map((l) => `${l.name} ${l.address}`),
      hosts.map((h) => `${h.name} ${h.listen}`),
    );
    for (const h of hosts) assert.match(await waitCluster(h), /metadata exchanged with 4 host\(s\)$/m);
  });

  void test('resource keys reach the members of the resource and no other host', async () => {
    const disks = await Promise.all(hosts.map((h) => sparseFile(join(root, `${h.name}.disk`), 8 * mib)));
    await must(adm(host(1).dir, 'create-resource', 'r1', disks[0]!), 'create-resource r1');
    await must(adm(host(2).dir, 'join-resource', 'r1', disks[1]!), 'join-resource r1 on h2');
    await must(adm(host(3).dir, 'join-resource', 'r1', disks[2]!), 'join-resource r1 on h3');
    for (const h of hosts) await waitCluster(h);
    for (const member of [host(1), host(2), host(3)]) {
      assert.equal(await metaValue(member, 'resource/r1/primary'), 'h1', `${member.name} knows the primary`);
      assert.equal(await metaValue(member, 'resource/r1/size'), 8 * mib);
      assert.equal(await metaValue(member, 'resource/r1/data/h3'), disks[2]);
      assert.deepEqual(stateOf(await metaValue(member, 'resource/r1/actual/h1')), { isPrimary: true, state: 'serving' });
    }
    for (const other of [host(4), host(5)]) {
      assert.equal(await metaFile(other, 'resource-r1.json'), undefined, `${other.name} holds no key of r1`);
      assert.deepEqual(recordFields(await metaValue(other, 'cluster/host/h1')), { address: host(1).listen, resources: ['r1'] }, 'but knows who is a member');
    }
    assert.equal((await must(adm(host(2).dir, 'view-role', 'r1'), 'view-role')).trim(), 'Secondary');
    assert.equal((await must(adm(host(2).dir, 'view-primarynode', 'r1'), 'view-primarynode')).trim(), 'h1');
  });

  void test('a host killed with kill -9 shows as unreachable, restarts and catches up', async () => {
    const h3 = host(3);
    await h3.daemon!.kill9();
    h3.daemon = undefined;
    await waitHosts(host(1), { ...allAlive(names()), h3: 'unreachable' });
    assert.match(await waitCluster(host(1)), /unreachable: h3/);
    // While h3 is down: a resource key it should get (h4 joins r1) and a cluster key (h5 creates r2).
    await must(adm(host(4).dir, 'join-resource', 'r1', join(root, 'h4.disk')), 'join-resource r1 on h4');
    await must(adm(host(5).dir, 'create-resource', 'r2', join(root, 'h5.disk')), 'create-resource r2 on h5');
    await start(h3);
    await waitHosts(h3, allAlive(names()));
    await waitCluster(h3);
    await waitFor('h3 to catch up', async () => (await metaValue(h3, 'resource/r1/data/h4')) === join(root, 'h4.disk'), 10_000);
    assert.deepEqual(recordFields(await metaValue(h3, 'cluster/host/h5')), { address: host(5).listen, resources: ['r2'] });
    assert.equal(await metaFile(h3, 'resource-r2.json'), undefined, 'h3 is not a member of r2');
    await waitHosts(host(1), allAlive(names()));
  });

  void test('switches: down stops serving r1 on its primary, up serves it again, and the indicator follows', async () => {
    await must(adm(host(1).dir, 'down', 'r1'), 'down r1');
    assert.equal((await must(adm(host(1).dir, 'view-disk-state', 'r1'), 'view-disk-state')).trim(), 'Detached');
    await waitFor('the indicator on h2', async () => JSON.stringify(stateOf(await metaValue(host(2), 'resource/r1/actual/h1'))) === JSON.stringify({ isPrimary: false, state: 'detached' }), 10_000);
    await must(adm(host(1).dir, 'up', 'r1'), 'up r1');
    assert.equal((await must(adm(host(1).dir, 'view-role', 'r1'), 'view-role')).trim(), 'Primary');
    await waitFor('the indicator on h2', async () => JSON.stringify(stateOf(await metaValue(host(2), 'resource/r1/actual/h1'))) === JSON.stringify({ isPrimary: true, state: 'serving' }), 10_000);
  });

  void test('a host leaves: refused while a member of a resource, then gone from every view', async () => {
    const h4 = host(4);
    const refused = await adm(h4.dir, 'leave-cluster');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /still a member of resource\(s\) r1/);
    await must(adm(h4.dir, 'leave-resource', 'r1'), 'leave-resource r1');
    const left = await adm(h4.dir, 'leave-cluster', '--timeout', '20');
    assert.equal(left.code, 0, left.stderr);
    assert.match(left.stdout, /left the cluster/);
    assert.equal(await h4.daemon!.exited, 0, 'marsd stops after leaving');
    h4.daemon = undefined;
    const rest = names().filter((n) => n !== 'h4');
    for (const h of hosts) if (h !== h4) await waitHosts(h, allAlive(rest));
    const again = await adm(h4.dir, 'view-hosts');
    assert.equal(again.code, 1, 'no daemon runs in the directory that left');
  });
});
