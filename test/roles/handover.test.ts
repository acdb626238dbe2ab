/**
 * Planned handover between real daemons on 127.0.0.1–3: refused while the old primary's
 * device is open, done with --wait once it closes, back and forth under writes with every
 * flushed byte on the new primary; `secondary` then `primary`; bad input refused with one
 * line and nothing changed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { Random } from '../../src/core/random.js';
import { adm } from '../support/adm.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import { connect, MiB, mustAdm, randomDevice, randomWrites, readDevice, readExport, startCluster, status, waitCaughtUp, firstDifference } from '../support/replication-helpers.js';

const sizeBytes = 16 * MiB;
const seed = Number(process.env['ROLES_SEED'] ?? 11);

void describe('planned handover', { timeout: 300_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const device = (h: TestHost): string => join(root, `${h.name}.img`);
  const byName = (n: string): TestHost => hosts.find((h) => h.name === n)!;

  before(async () => {
    ({ root, hosts } = await startCluster('mars-roles', 3));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(hosts[0]!, 'create-resource', 'r1', device(hosts[0]!));
    const c = await connect(hosts[0]!, 'r1');
    await randomWrites(c, sizeBytes, 50, random);
    await c.close();
    await mustAdm(hosts[1]!, 'join-resource', 'r1', device(hosts[1]!));
    await mustAdm(hosts[2]!, 'join-resource', 'r1', device(hosts[2]!));
    await waitCaughtUp(hosts[0]!, hosts[1]!, 'r1', 120_000);
    await waitCaughtUp(hosts[0]!, hosts[2]!, 'r1', 120_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('refused while the old primary has an NBD client, naming it; --wait goes on once it closes', async () => {
    const alpha = hosts[0]!;
    const beta = hosts[1]!;
    const client = await connect(alpha, 'r1');
    await randomWrites(client, sizeBytes, 20, random);
    const refused = await adm(beta.dir, 'primary', 'r1');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr.trim(), /^marsadm: alpha still has 1 NBD connection\(s\) open on r1: 127\.0\.0\.1:\d+ \(close them, or use --wait\)$/);
    assert.equal((await status(alpha, 'r1')).primary, 'alpha', 'nothing changed');
    const image = await readExport(client, sizeBytes);
    // What `marsadm primary r1 --wait` sends, straight to the daemon: the request is there at
    // once (a marsadm process may take longer to start than any fixed pause), so the check
    // that it is still waiting while the client is open cannot pass vacuously.
    let answered = false;
    const waiting = callDaemon(join(beta.dir, 'control.sock'), 'primary', { name: 'r1', force: false, wait: true, timeoutMs: 60_000 }, 70_000).finally(() => (answered = true));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(answered, false, 'primary --wait answered while alpha still had its NBD client');
    await client.close();
    await waiting;
    const s = await status(beta, 'r1');
    assert.equal(s.primary, 'beta');
    assert.equal(s.state, 'serving');
    const after = await connect(beta, 'r1');
    const got = await readExport(after, sizeBytes);
    await after.close();
    assert.equal(firstDifference(image, got), undefined, 'every byte alpha had is on beta');
  });

  // Four handovers, every host giving and taking the role (the simulator runs hundreds,
  // each followed by its checkers: src/sim, docs/simulator.md).
  void test('back and forth under writes: nothing flushed is lost, each handover well under the limit', async () => {
    const order = ['gamma', 'alpha', 'beta', 'alpha'];
    let current = (await status(hosts[0]!, 'r1')).primary;
    const times: number[] = [];
    for (const next of order) {
      const from = byName(current);
      const client = await connect(from, 'r1');
      await randomWrites(client, sizeBytes, 10, random);
      const image = await readExport(client, sizeBytes);
      await client.close();
      const started = Date.now();
      await mustAdm(byName(next), 'primary', 'r1');
      times.push(Date.now() - started);
      const to = await connect(byName(next), 'r1');
      const got = await readExport(to, sizeBytes);
      await to.close();
      assert.equal(firstDifference(image, got), undefined, `${current} -> ${next}: the new primary has every byte`);
      current = next;
    }
    for (const h of hosts) if (h.name !== current) await waitCaughtUp(byName(current), h, 'r1');
    const c = await connect(byName(current), 'r1');
    const image = await readExport(c, sizeBytes);
    await c.close();
    for (const h of hosts) {
      if (h.name === current) continue;
      assert.equal(firstDifference(image, await readDevice(device(h), sizeBytes)), undefined, `${h.name} byte-identical`);
    }
    assert.ok(Math.max(...times) < 15_000, `handover times ${times.join(', ')} ms`);
  });

  void test('secondary gives the role up; primary on another host takes it', async () => {
    const current = byName((await status(hosts[0]!, 'r1')).primary);
    await mustAdm(current, 'secondary', 'r1');
    assert.equal((await adm(current.dir, 'view-is-primary', 'r1')).stdout.trim(), '0');
    const next = hosts.find((h) => h !== current)!;
    await mustAdm(next, 'primary', 'r1');
    assert.equal((await adm(next.dir, 'view-is-primary', 'r1')).stdout.trim(), '1');
    assert.equal((await adm(current.dir, 'view-primarynode', 'r1')).stdout.trim(), next.name);
  });

  void test('bad input: not a member, invalidate on the primary; one line, nothing changed', async () => {
    const primary = byName((await status(hosts[0]!, 'r1')).primary);
    const notMember = await adm(primary.dir, 'primary', 'nosuch');
    assert.equal(notMember.code, 1);
    assert.match(notMember.stderr.trim(), /^marsadm: \S+ is not a member of resource nosuch$/);
    const inv = await adm(primary.dir, 'invalidate', 'r1');
    assert.equal(inv.code, 1);
    assert.match(inv.stderr.trim(), /^[^\n]*invalidate runs on a secondary[^\n]*$/);
    assert.equal((await status(primary, 'r1')).state, 'serving');
  });
});
