/**
 * The runbooks of docs/operations.md, run as written (the blocks are read from the page,
 * so the page and this test cannot drift) against real daemons on 127.0.0.1–4, one after
 * the other on one resource r0: a planned handover alpha → beta (refused while alpha has
 * an NBD client, a --wait that times out, then --wait), a failover after beta died with
 * writes nobody fetched, the split brain that follows when beta comes back, gamma dead for
 * good, a new host delta, and a new disk for beta (a disk too small refused first). After each, the devices are compared
 * byte for byte with the primary's export. The documented addresses (10.0.0.N:7777),
 * devices (/dev/vg0/r0, /dev/vg1/r0, /dev/vg1/small) and secret path map to the test's. Seeded
 * (RUNBOOK_SEED).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { cleanup, newHost, secretFile, start, type TestHost } from '../support/cluster-helpers.js';
import { assertSameAsPrimary, MiB, mustAdm, randomDevice, startCluster, status, waitCaughtUp } from '../support/replication-helpers.js';
import { exportImage, explainFailure, kill9, setSwitch, writeSome } from '../support/roles-helpers.js';
import { NbdClient } from '../../src/nbd/client.js';
import { operationsRunbooks, runRunbook, type RunbookLine } from '../support/runbook.js';

const sizeBytes = 8 * MiB;
const seed = Number(process.env['RUNBOOK_SEED'] ?? 15);
const runbooks = operationsRunbooks();

void test('the operations guide holds the six runbooks, each line on a named host, each refusal with its text', () => {
  assert.deepEqual([...runbooks.keys()], ['planned-handover', 'failover', 'split-brain', 'member-dead', 'add-host', 'replace-disk']);
  for (const [name, lines] of runbooks) {
    for (const line of lines) {
      assert.ok(['alpha', 'beta', 'gamma', 'delta'].includes(line.host), `${name}: ${line.command} runs on ${line.host}`);
      if (line.expect !== undefined) assert.ok(line.expect.text !== '', `${name}: ${line.command} expects something`);
    }
  }
});

void describe('the runbooks of the operations guide, as written', { timeout: 240_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const byName = new Map<string, TestHost>();
  const random = new Random(seed);
  const host = (name: string): TestHost => byName.get(name)!;
  const disk = (h: TestHost, vg: 'vg0' | 'vg1'): string => join(root, `${h.name}-${vg}.img`);
  /** Which disk each host uses for r0 now. */
  const inUse = new Map<string, string>();

  const map = (text: string, h: TestHost): string =>
    text
      .replace(/10\.0\.0\.(\d):7777/g, (_m, n: string) => [...byName.values()].find((x) => x.ip === `127.0.0.${n}`)?.listen ?? `127.0.0.${n}:7777`)
      .replaceAll('/dev/vg0/r0', disk(h, 'vg0'))
      .replaceAll('/dev/vg1/r0', disk(h, 'vg1'))
      .replaceAll('/dev/vg1/small', join(root, `${h.name}-small.img`))
      .replaceAll('/root/cluster.secret', secretFile(host('alpha')));

  const runIt = async (name: string, diagnostic: (m: string) => void, beforeLine?: (line: RunbookLine) => void): Promise<void> => {
    const lines = runbooks.get(name);
    assert.ok(lines !== undefined, `docs/operations.md has no runbook ${name}`);
    await explainFailure(diagnostic, hosts, 'r0', () =>
      runRunbook(lines, {
        hosts: byName,
        map,
        startDaemon: async (h) => {
          await start(h);
        },
        stopDaemon: async (h) => {
          await h.daemon?.stop();
        },
        ...(beforeLine === undefined ? {} : { beforeLine }),
        diagnostic,
      }),
    );
  };

  /** Every running member other than the primary has replayed all of it, and holds the primary's export byte for byte. */
  const assertReplicas = async (primary: TestHost, what: string): Promise<void> => {
    const image = await exportImage(primary, 'r0', sizeBytes);
    for (const h of hosts) {
      if (h === primary || h.daemon === undefined || !inUse.has(h.name)) continue;
      await waitCaughtUp(primary, h, 'r0', 60_000);
      await assertSameAsPrimary(image, h, inUse.get(h.name)!, what);
    }
  };

  before(async () => {
    ({ root, hosts } = await startCluster('mars-runbooks', 3));
    for (const h of hosts) byName.set(h.name, h);
    for (const h of hosts) await randomDevice(disk(h, 'vg0'), sizeBytes, seed + h.name.length);
    await mustAdm(host('alpha'), 'create-resource', 'r0', disk(host('alpha'), 'vg0'));
    inUse.set('alpha', disk(host('alpha'), 'vg0'));
    await writeSome(host('alpha'), 'r0', sizeBytes, 40, random);
    for (const name of ['beta', 'gamma']) {
      await mustAdm(host(name), 'join-resource', 'r0', disk(host(name), 'vg0'));
      inUse.set(name, disk(host(name), 'vg0'));
    }
    await assertReplicas(host('alpha'), 'before the runbooks');
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('planned handover: refused while alpha has a client, a --wait that times out changes nothing, then beta takes over', async (t) => {
    t.diagnostic(`seed ${seed}`);
    const alpha = host('alpha');
    const client = await NbdClient.connect({ host: alpha.ip, port: alpha.daemon!.nbdPort, exportName: 'r0' });
    let closing: Promise<void> | undefined;
    try {
      await runIt('planned-handover', (m) => t.diagnostic(m), (line) => {
        // The operator disconnects alpha's client while `primary r0 --wait` waits for it.
        if (line.command === 'marsadm primary r0 --wait') closing = new Promise((resolve) => setTimeout(resolve, 1_000)).then(() => client.close());
      });
    } finally {
      await (closing ?? client.close().catch(() => undefined));
    }
    await writeSome(host('beta'), 'r0', sizeBytes, 30, random);
    await assertReplicas(host('beta'), 'after the planned handover');
  });

  void test('failover after a disaster: beta dies with writes nobody fetched; alpha is forced and gamma follows it', async (t) => {
    // alpha and gamma stop fetching, beta writes, then beta dies: those writes exist only on beta.
    for (const name of ['alpha', 'gamma']) await setSwitch(host(name), 'r0', 'fetch', false);
    await writeSome(host('beta'), 'r0', sizeBytes, 30, random);
    await kill9(host('beta'));
    for (const name of ['alpha', 'gamma']) await setSwitch(host(name), 'r0', 'fetch', true);
    await runIt('failover', (m) => t.diagnostic(m));
    await writeSome(host('alpha'), 'r0', sizeBytes, 30, random);
    await assertReplicas(host('alpha'), 'after the failover');
  });

  void test('split brain: beta comes back with its own history, is invalidated and follows alpha', async (t) => {
    await runIt('split-brain', (m) => t.diagnostic(m));
    await writeSome(host('alpha'), 'r0', sizeBytes, 20, random);
    await assertReplicas(host('alpha'), 'after the split brain');
  });

  void test('a member dead for good: gamma is removed from r0 by a live member', async (t) => {
    await kill9(host('gamma'));
    inUse.delete('gamma');
    await runIt('member-dead', (m) => t.diagnostic(m));
    const s = await status(host('alpha'), 'r0');
    assert.deepEqual(s.members.map((m) => m.host).sort(), ['alpha', 'beta']);
  });

  void test('adding a host: delta joins the cluster and r0, syncs and is up to date', async (t) => {
    const delta = await newHost(root, 'delta', '127.0.0.4');
    hosts.push(delta);
    byName.set('delta', delta);
    await randomDevice(disk(delta, 'vg0'), sizeBytes, seed + 40);
    inUse.set('delta', disk(delta, 'vg0'));
    await runIt('add-host', (m) => t.diagnostic(m));
    await writeSome(host('alpha'), 'r0', sizeBytes, 20, random);
    await assertReplicas(host('alpha'), 'after adding delta');
  });

  void test('replacing a disk: beta leaves r0, a disk too small is refused, the new disk is synced', async (t) => {
    const beta = host('beta');
    await randomDevice(disk(beta, 'vg1'), sizeBytes, seed + 50);
    await randomDevice(join(root, 'beta-small.img'), sizeBytes - MiB, seed + 51);
    inUse.set('beta', disk(beta, 'vg1'));
    await runIt('replace-disk', (m) => t.diagnostic(m));
    await writeSome(host('alpha'), 'r0', sizeBytes, 20, random);
    await assertReplicas(host('alpha'), 'after replacing beta\'s disk');
  });
});
