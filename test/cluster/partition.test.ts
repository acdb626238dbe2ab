/**
 * A real network partition: two network namespaces joined by a veth pair, one marsd in
 * each. The link goes down, both sides change metadata (cluster keys and keys of a
 * resource they share), the link comes back, and both converge. Needs root and
 * `ip netns`; skipped with the reason otherwise. The namespaces are always removed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { adm } from '../support/adm.js';
import { marsadmPath, removeDir, run, sparseFile, startMarsd, tempDir, waitFor, type Marsd } from '../support/processes.js';
import { findTool, isRoot, settleWithin } from '../support/daemon-helpers.js';
import { metaValue, must, recordFields, type TestHost } from '../support/cluster-helpers.js';

const mib = 1024 * 1024;
const suffix = String(process.pid % 100_000);
const namespaces = [`mars-a-${suffix}`, `mars-b-${suffix}`] as const;
const veths = [`mva${suffix}`, `mvb${suffix}`] as const;
const addresses = ['10.199.77.1', '10.199.77.2'] as const;
const peerPort = 7777;

async function ip(...args: string[]): Promise<void> {
  const r = await run('ip', args, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

async function skipReason(): Promise<string | undefined> {
  if (!isRoot()) return 'needs root (network namespaces)';
  if (findTool('ip') === undefined) return 'needs the ip tool (iproute2)';
  const probe = `mars-probe-${suffix}`;
  const added = await run('ip', ['netns', 'add', probe], { timeoutMs: 10_000 });
  if (added.code !== 0) return `ip netns is not available here: ${added.stderr.trim()}`;
  await run('ip', ['netns', 'del', probe], { timeoutMs: 10_000 });
  return undefined;
}

async function setUpNetwork(): Promise<void> {
  for (const ns of namespaces) await ip('netns', 'add', ns);
  await ip('link', 'add', veths[0], 'type', 'veth', 'peer', 'name', veths[1]);
  for (const i of [0, 1] as const) {
    await ip('link', 'set', veths[i], 'netns', namespaces[i]);
    await ip('-n', namespaces[i], 'addr', 'add', `${addresses[i]}/24`, 'dev', veths[i]);
    await ip('-n', namespaces[i], 'link', 'set', veths[i], 'up');
    await ip('-n', namespaces[i], 'link', 'set', 'lo', 'up');
  }
}

async function tearDownNetwork(): Promise<void> {
  for (const ns of namespaces) await run('ip', ['netns', 'del', ns], { timeoutMs: 10_000 }).catch(() => undefined);
}

const reason = await skipReason();

void test('a partition by a veth link going down heals, and both sides converge', { skip: reason ?? false, timeout: 120_000 }, async () => {
  const root = await tempDir('mars-partition');
  const daemons: Marsd[] = [];
  const hosts: TestHost[] = [0, 1].map((i) => ({ name: `n${i + 1}`, ip: addresses[i]!, dir: join(root, `n${i + 1}`), listen: `${addresses[i]}:${peerPort}`, daemon: undefined }));
  const [a, b] = hosts as [TestHost, TestHost];
  const inNs = (i: 0 | 1): string[] => ['ip', 'netns', 'exec', namespaces[i]];
  try {
    await setUpNetwork();
    await must(adm(a.dir, 'create-cluster', '--host', a.name, '--listen', a.listen), 'create-cluster');
    daemons.push(await startMarsd(a.dir, { nbdHost: '127.0.0.1', nbdPort: 10809, prefix: inNs(0) }));
    const joinArgs = [...inNs(1).slice(1), process.execPath, marsadmPath, '--dir', b.dir, 'join-cluster', a.listen, '--host', b.name, '--listen', b.listen, '--secret-file', join(a.dir, 'cluster.secret')];
    const joined = await run('ip', joinArgs, { timeoutMs: 30_000 });
    assert.equal(joined.code, 0, joined.stderr);
    daemons.push(await startMarsd(b.dir, { nbdHost: '127.0.0.1', nbdPort: 10809, prefix: inNs(1) }));
    const disk = async (name: string): Promise<string> => sparseFile(join(root, name), 4 * mib);
    await must(adm(a.dir, 'create-resource', 'r1', await disk('a-r1')), 'create-resource r1');
    await must(adm(b.dir, 'join-resource', 'r1', await disk('b-r1')), 'join-resource r1');
    await must(adm(b.dir, 'wait-cluster', '--timeout', '20'), 'wait-cluster');

    await ip('-n', namespaces[0], 'link', 'set', veths[0], 'down');
    await must(adm(a.dir, 'create-resource', 'ra', await disk('a-ra')), 'create-resource ra (partitioned)');
    await must(adm(b.dir, 'create-resource', 'rb', await disk('b-rb')), 'create-resource rb (partitioned)');
    await must(adm(a.dir, 'down', 'r1'), 'down r1 on n1 (partitioned)');
    await must(adm(b.dir, 'down', 'r1'), 'down r1 on n2 (partitioned)');
    assert.deepEqual(recordFields(await metaValue(a, 'cluster/host/n2')), { address: b.listen, resources: ['r1'] }, 'n1 has not heard of rb yet');
    await ip('-n', namespaces[0], 'link', 'set', veths[0], 'up');

    const converged = async (): Promise<boolean> => {
      for (const h of hosts) {
        const records = [recordFields(await metaValue(h, 'cluster/host/n1')), recordFields(await metaValue(h, 'cluster/host/n2'))];
        const desired = [await metaValue(h, 'resource/r1/desired/n1'), await metaValue(h, 'resource/r1/desired/n2')];
        if (JSON.stringify(records) !== JSON.stringify([{ address: a.listen, resources: ['r1', 'ra'] }, { address: b.listen, resources: ['r1', 'rb'] }])) return false;
        if (JSON.stringify(desired) !== JSON.stringify([{ attach: false }, { attach: false }])) return false;
      }
      return true;
    };
    await waitFor('both sides to converge after the partition', converged, 60_000, 250);
    await must(adm(a.dir, 'wait-cluster', '--timeout', '30'), 'wait-cluster after healing');
  } finally {
    for (const d of daemons) if ((await settleWithin(d.stop(), 10_000)) === undefined) await d.kill9();
    await tearDownNetwork();
    await removeDir(root);
  }
});
