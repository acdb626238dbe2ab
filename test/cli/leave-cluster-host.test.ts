/**
 * `marsadm leave-cluster --host DEAD [--force]` with three real daemons: refused (exit 1,
 * one line, nothing changed) for this host, for a host that is not in the cluster, for a
 * member of a resource and for a host this one can reach; after gamma died and left r0,
 * alpha removes it and every member drops it from `view-hosts`; gamma started again learns
 * it was removed and stops, saying why.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { marsadm, startMarsd, waitFor } from '../support/processes.js';
import { cleanup, viewHosts, type TestHost } from '../support/cluster-helpers.js';
import { MiB, mustAdm, randomDevice, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { kill9 } from '../support/roles-helpers.js';

const sizeBytes = 2 * MiB;

void describe('leave-cluster --host DEAD', { timeout: 120_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const gamma = (): TestHost => hosts[2]!;
  const device = (h: TestHost): string => join(root, `${h.name}-r0.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-leave-host', 3));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, 5 + h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r0', device(alpha()));
    await mustAdm(gamma(), 'join-resource', 'r0', device(gamma()));
    await waitCaughtUp(alpha(), gamma(), 'r0', 60_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  const refused = async (h: TestHost, args: string[], text: RegExp): Promise<void> => {
    const r = await marsadm(h.dir, ...args);
    assert.deepEqual([r.code, r.stdout], [1, ''], `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, text);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  };

  void test('refused for this host, a stranger, a member of a resource and a reachable host; --force alone is bad usage', async () => {
    await refused(alpha(), ['leave-cluster', '--host', 'alpha'], /^marsadm: alpha is this host: run leave-cluster without --host\n$/);
    await refused(alpha(), ['leave-cluster', '--host', 'omega'], /^marsadm: omega is not a host of this cluster\n$/);
    await refused(alpha(), ['leave-cluster', '--host', 'gamma', '--force'], /^marsadm: gamma is still a member of resource\(s\) r0: leave-resource r0 --host gamma first\n$/);
    await refused(alpha(), ['leave-cluster', '--host', 'beta'], /^marsadm: beta is alive: run leave-cluster on it, or add --force\n$/);
    const usage = await marsadm(alpha().dir, 'leave-cluster', '--force');
    assert.equal(usage.code, 2, usage.stderr);
    assert.deepEqual((await viewHosts(beta())).map((h) => `${h.name} ${h.state}`), ['alpha alive', 'beta alive', 'gamma alive']);
  });

  void test('a dead host is removed by a live one, every member drops it, and started again it stops, saying why', async () => {
    await kill9(gamma());
    await mustAdm(alpha(), 'leave-resource', 'r0', '--host', 'gamma');
    await waitFor('alpha to see gamma unreachable', async () => (await viewHosts(alpha())).some((h) => h.name === 'gamma' && h.state === 'unreachable'), 30_000, 100);
    assert.equal(await mustAdm(alpha(), 'leave-cluster', '--host', 'gamma'), 'host gamma removed from the cluster; every member drops it from its host list\n');
    assert.deepEqual((await viewHosts(alpha())).map((h) => h.name), ['alpha', 'beta']);
    await waitFor('beta to drop gamma', async () => !(await viewHosts(beta())).some((h) => h.name === 'gamma'), 30_000, 100);
    assert.ok(!(await mustAdm(beta(), 'view-hosts')).includes('gamma'));
    // gamma comes back: it learns from its peers that it was removed, and stops.
    const again = await startMarsd(gamma().dir, { nbdHost: gamma().ip }).then(
      (daemon) => daemon,
      (err: unknown) => err as Error,
    );
    if (again instanceof Error) {
      assert.match(again.message, /this host \(gamma\) was removed from the cluster by alpha \(leave-cluster --host gamma\): marsd stops/);
    } else {
      const code = await Promise.race([again.exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 30_000).unref())]);
      if (code === 'running') await again.kill9();
      assert.notEqual(code, 'running', 'gamma stopped by itself');
      assert.match(again.stderr(), /this host \(gamma\) was removed from the cluster by alpha \(leave-cluster --host gamma\): marsd stops/);
    }
    assert.ok(!(await mustAdm(alpha(), 'view-hosts')).includes('gamma'));
  });
});
