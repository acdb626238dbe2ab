/**
 * Replication across a real network partition: the primary (alpha) and the secondary
 * (beta) run in two network namespaces joined by a veth pair (test/support/netns.ts);
 * the link goes down during a full sync and comes back. (A partition during fetch under
 * load is the simulator's: partitions and heals in hundreds of seeds with the prefix
 * check after every step, docs/simulator.md; on real links test/cluster/partition and
 * test/wan/outages cut them.) The test process writes to the primary's export over a second link that is never
 * cut. Each test ends with the secondary byte-identical to the primary's export. Needs
 * root and `ip netns`; skipped with the reason otherwise. The namespaces are always
 * removed and only daemons started here are stopped, by PID. Seeded (PARTITION_SEED).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { NbdClient } from '../../src/nbd/client.js';
import { adm } from '../support/adm.js';
import { marsadmPath, removeDir, run, sparseFile, startMarsd, tempDir, waitFor } from '../support/processes.js';
import { settleWithin } from '../support/daemon-helpers.js';
import { must, type TestHost } from '../support/cluster-helpers.js';
import { createNetnsPair, netnsSkipReason, type NetnsPair } from '../support/netns.js';
import { assertSameAsPrimary, MiB, mustAdm, randomDevice, randomWrites, readExport, status, viewMacro, waitCaughtUp, type ReplicaJson } from '../support/replication-helpers.js';

const seed = Number(process.env['PARTITION_SEED'] ?? 5);
const peerPort = 7777;
const nbdPort = 10809;
const sizeBytes = 32 * MiB;

const reason = await netnsSkipReason();
/**
 * The daemons close a link that has received nothing for this long (MARS_INTERVALS
 * peerIdleMs; production 6 s): the sync sees the cut after it, not after the production limit.
 */
const peerIdleMs = 3_000;
const intervals = `peerIdleMs=${peerIdleMs}`;

async function replica(host: TestHost, name: string): Promise<ReplicaJson> {
  const r = (await status(host, name)).replica;
  assert.ok(r !== null && r !== undefined, `${host.name} has no replica of ${name}`);
  return r;
}

void describe('replication across a network partition', { skip: reason ?? false, timeout: 240_000 }, () => {
  let root = '';
  let net: NetnsPair | undefined;
  const hosts: TestHost[] = [];
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (h: TestHost, name: string): string => join(root, `${h.name}-${name}.img`);
  const connectAlpha = (name: string): Promise<NbdClient> => NbdClient.connect({ host: net!.nbdAddress, port: nbdPort, exportName: name });

  before(async () => {
    root = await tempDir('mars-repl-partition');
    net = await createNetnsPair('rp');
    for (const [i, name] of (['alpha', 'beta'] as const).entries()) {
      const address = net.addresses[i]!;
      hosts.push({ name, ip: address, dir: join(root, name), listen: `${address}:${peerPort}`, daemon: undefined });
    }
    await must(adm(alpha().dir, 'create-cluster', '--host', 'alpha', '--listen', alpha().listen), 'create-cluster');
    alpha().daemon = await startMarsd(alpha().dir, { nbdHost: net.nbdAddress, nbdPort, prefix: net.inNs(0), intervals });
    const joinArgs = [...net.inNs(1).slice(1), process.execPath, marsadmPath, '--dir', beta().dir, 'join-cluster', alpha().listen, '--host', 'beta', '--listen', beta().listen, '--secret-file', join(alpha().dir, 'cluster.secret')];
    const joined = await run('ip', joinArgs, { timeoutMs: 30_000 });
    assert.equal(joined.code, 0, joined.stderr);
    beta().daemon = await startMarsd(beta().dir, { nbdHost: '127.0.0.1', nbdPort, prefix: net.inNs(1), intervals });
    await must(adm(beta().dir, 'wait-cluster', '--timeout', '20'), 'wait-cluster');
  });

  after(async () => {
    for (const h of hosts) {
      const d = h.daemon;
      h.daemon = undefined;
      if (d !== undefined && (await settleWithin(d.stop(), 10_000)) === undefined) await d.kill9();
    }
    await net?.tearDown();
    if (root !== '') await removeDir(root);
  });

  /** alpha creates `name` over random bytes and writes; beta's disk is blank (every block differs). */
  async function createResource(name: string, random: Random, deviceSeed: number): Promise<NbdClient> {
    await randomDevice(device(alpha(), name), sizeBytes, deviceSeed);
    await sparseFile(device(beta(), name), sizeBytes);
    await mustAdm(alpha(), 'create-resource', name, device(alpha(), name));
    const client = await connectAlpha(name);
    await randomWrites(client, sizeBytes, 30, random);
    return client;
  }

  async function assertBetaSame(client: NbdClient, name: string, what: string): Promise<void> {
    await assertSameAsPrimary(await readExport(client, sizeBytes), beta(), device(beta(), name), what);
  }

  void test('a partition during the full sync heals and the secondary ends byte-identical', async (t) => {
    const name = 'r1';
    const random = new Random(seed + 1);
    t.diagnostic(`seed ${seed}`);
    const client = await createResource(name, random, seed + 10);
    // A slow link (about 3 MB/s from alpha) so that the sync is still running when it is cut.
    const limited = await net!.limitRate(24);
    t.diagnostic(limited ? 'replication link limited to 24 mbit/s' : 'tbf unavailable: the link runs at full speed');
    try {
      await mustAdm(beta(), 'join-resource', name, device(beta(), name));
      let cutAt = 0;
      await waitFor('the sync to copy something', async () => {
        cutAt = (await replica(beta(), name)).sync?.doneBytes ?? 0;
        return cutAt > 0;
      }, 30_000, 10);
      await net!.cut();
      const cutAtMs = Date.now();
      await randomWrites(client, sizeBytes, 30, random);
      // Not a pause that hopes the cut has had its effect: the sync must notice it (a silently
      // dead link is noticed when nothing arrives for the idle limit, peerIdleMs), and stay inconsistent.
      let cut = await replica(beta(), name);
      await waitFor('the sync to see its source unreachable', async () => {
        cut = await replica(beta(), name);
        return cut.sync?.state === 'source-unreachable' || cut.sync?.state === 'done';
      }, 60_000, 200);
      t.diagnostic(`cut at ${cutAt} of ${sizeBytes} bytes; after ${Date.now() - cutAtMs} ms: sync ${cut.sync?.state} at ${cut.sync?.doneBytes}`);
      if (limited) assert.equal(cut.sync?.state, 'source-unreachable', 'the sync cannot finish across the cut');
      assert.equal(cut.consistent, false);
      assert.equal(await viewMacro(beta(), 'is-consistent', name), '0');
      await net!.heal();
      await net!.unlimitRate();
      await randomWrites(client, sizeBytes, 30, random);
      await waitCaughtUp(alpha(), beta(), name, 90_000);
      await assertBetaSame(client, name, 'after the partition during sync');
    } finally {
      await net!.heal().catch(() => undefined);
      await net!.unlimitRate();
      await client.close().catch(() => undefined);
    }
  });
});
