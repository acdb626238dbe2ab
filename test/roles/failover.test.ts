/**
 * Forced failover between real daemons on 127.0.0.1–3: `primary` refused on a secondary
 * that is still syncing and on a host that is not a member (one line, nothing changed);
 * the primary killed with kill -9, `primary --force` on a caught-up secondary, which then
 * serves writes while the third host follows it; the old primary restarted afterwards
 * comes back as a secondary (never serves, its export is not offered) and, having written
 * nothing after the split, follows the new primary to a byte-identical device.
 * Seeded (FAILOVER_SEED).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { adm } from '../support/adm.js';
import { waitFor } from '../support/processes.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { assertSameAsPrimary, connect, firstDifference, MiB, mustAdm, randomDevice, randomWrites, startCluster, status, waitCaughtUp } from '../support/replication-helpers.js';
import { exportImage, kill9, offersExport, setSwitch, view, writeSome } from '../support/roles-helpers.js';

const sizeBytes = 32 * MiB;
const syncingSizeBytes = 64 * MiB;
const seed = Number(process.env['FAILOVER_SEED'] ?? 21);

void describe('forced failover', { timeout: 240_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const gamma = (): TestHost => hosts[2]!;
  const device = (h: TestHost, name = 'r1'): string => join(root, `${h.name}-${name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-failover', 3));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()));
    const c = await connect(alpha(), 'r1');
    await randomWrites(c, sizeBytes, 50, random);
    await c.close();
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    await mustAdm(gamma(), 'join-resource', 'r1', device(gamma()));
    await waitCaughtUp(alpha(), beta(), 'r1', 120_000);
    await waitCaughtUp(alpha(), gamma(), 'r1', 120_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('primary is refused on a secondary whose sync is unfinished, even with --force; one line, nothing changed', async (t) => {
    t.diagnostic(`seed ${seed}`);
    // gamma receives syncs slowly (1 MiB/s, set at run time: no restart) and pauses this one: it stays inconsistent.
    await mustAdm(gamma(), 'set-rate', '--sync', '1M');
    await randomDevice(device(alpha(), 'rs'), syncingSizeBytes, seed + 100);
    await randomDevice(device(gamma(), 'rs'), syncingSizeBytes, seed + 101);
    await mustAdm(alpha(), 'create-resource', 'rs', device(alpha(), 'rs'));
    await mustAdm(gamma(), 'join-resource', 'rs', device(gamma(), 'rs'));
    await setSwitch(gamma(), 'rs', 'sync', false);
    await waitFor('gamma to run rs as a secondary with its sync paused', async () => {
      const r = (await status(gamma(), 'rs')).replica;
      return r !== null && r !== undefined && r.sync !== null && !r.switches.sync;
    }, 30_000, 100);
    assert.equal((await status(gamma(), 'rs')).replica?.consistent, false);
    for (const args of [['primary', 'rs'], ['primary', 'rs', '--force']]) {
      const refused = await adm(gamma().dir, ...args);
      assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stdout}${refused.stderr}`);
      assert.equal(refused.stdout, '');
      assert.match(refused.stderr, /^marsadm: gamma is not consistent for rs \(its sync or the replay after it is unfinished\): refusing to make it primary\n$/);
    }
    const a = await status(alpha(), 'rs');
    assert.equal(a.primary, 'alpha');
    assert.equal(a.state, 'serving');
    assert.equal(await view(alpha(), 'is-primary', 'rs'), '1');
    assert.equal(await view(gamma(), 'primarynode', 'rs'), 'alpha');
    assert.equal(await view(gamma(), 'is-primary', 'rs'), '0');
    assert.equal(await view(gamma(), 'disk-state', 'rs'), 'InConsistent');
    // gamma leaves rs again and runs at full speed for the rest.
    await mustAdm(gamma(), 'leave-resource', 'rs');
    await mustAdm(gamma(), 'set-rate', '--sync', 'unlimited');
    await waitCaughtUp(alpha(), gamma(), 'r1', 60_000);
  });

  void test('primary on a host that is not a member of the resource is refused with one line; nothing changed', async () => {
    const refused = await adm(beta().dir, 'primary', 'rs');
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /^marsadm: beta is not a member of resource rs\n$/);
    const a = await status(alpha(), 'rs');
    assert.equal(a.primary, 'alpha');
    assert.equal(a.state, 'serving');
    assert.equal((await status(alpha(), 'r1')).primary, 'alpha');
  });

  let afterFailover: Buffer | undefined;

  void test('kill -9 of the primary, primary --force on a caught-up secondary: it serves every flushed byte and new writes; the third host follows it', async (t) => {
    t.diagnostic(`seed ${seed}`);
    await writeSome(alpha(), 'r1', sizeBytes, 40, random);
    await waitCaughtUp(alpha(), beta(), 'r1');
    await waitCaughtUp(alpha(), gamma(), 'r1');
    const before = await exportImage(alpha(), 'r1', sizeBytes);
    await kill9(alpha());
    const out = await mustAdm(beta(), 'primary', 'r1', '--force');
    // beta was caught up: nothing known is lost, but alpha died serving, so no member can know whether it made more durable.
    assert.match(out, /^this host is now the primary of r1 \(was alpha\), in \d+ ms; forced: at least 0 bytes of the old primary's log are lost \(known durable there from [^)]+, not fetched here; it may have made more durable since the cluster last heard from it, which no member can know\)\n$/);
    t.diagnostic(out.trim());
    assert.equal(await view(beta(), 'is-primary', 'r1'), '1');
    assert.equal(await view(beta(), 'role', 'r1'), 'Primary');
    const s = await status(beta(), 'r1');
    assert.equal(s.primary, 'beta');
    assert.equal(s.state, 'serving');
    assert.equal(firstDifference(before, await exportImage(beta(), 'r1', sizeBytes)), undefined, 'beta serves every byte alpha had flushed (it was caught up)');
    await writeSome(beta(), 'r1', sizeBytes, 40, random);
    afterFailover = await exportImage(beta(), 'r1', sizeBytes);
    await waitFor('gamma to learn that beta is primary', async () => (await view(gamma(), 'primarynode', 'r1')) === 'beta', 20_000, 200);
    await waitCaughtUp(beta(), gamma(), 'r1', 60_000);
    await assertSameAsPrimary(afterFailover, gamma(), device(gamma()), 'gamma after the failover');
    assert.equal(await view(gamma(), 'is-primary', 'r1'), '0');
    assert.equal(await view(gamma(), 'is-split-brain', 'r1'), '0');
  });

  void test('the old primary restarted after the failover does not serve; it follows the new primary and ends byte-identical', async (t) => {
    assert.ok(afterFailover !== undefined, 'needs the failover test');
    await start(alpha());
    // Sample from the start until alpha follows beta (a secondary of r1 fetching from beta):
    // until then alpha must never serve r1 nor offer its export.
    const deadline = Date.now() + 30_000;
    let samples = 0;
    for (;;) {
      const following = await status(alpha(), 'r1').then(
        (s) => s.role === 'secondary' && s.replica?.fetch.source === 'beta',
        () => false,
      );
      assert.equal(await view(alpha(), 'is-primary', 'r1'), '0', `alpha says it is primary after ${samples} samples`);
      const offered = await offersExport(alpha(), 'r1');
      assert.deepEqual(offered, { listed: false, connects: false }, 'alpha does not offer the export of r1');
      samples++;
      if (following) break;
      assert.ok(Date.now() < deadline, `alpha does not follow beta within 30 s (${samples} samples)`);
    }
    t.diagnostic(`${samples} samples until alpha followed beta: alpha never served r1`);
    // The checks can see an export: beta offers r1, and alpha its own resource rs.
    assert.deepEqual(await offersExport(beta(), 'r1'), { listed: true, connects: true });
    await waitFor('alpha to serve rs again', async () => (await view(alpha(), 'is-primary', 'rs')) === '1', 20_000, 200);
    assert.deepEqual(await offersExport(alpha(), 'rs'), { listed: true, connects: true });
    await waitFor('alpha to learn that beta is primary', async () => (await view(alpha(), 'primarynode', 'r1')) === 'beta', 20_000, 200);
    await waitCaughtUp(beta(), alpha(), 'r1', 60_000);
    await assertSameAsPrimary(afterFailover, alpha(), device(alpha()), 'alpha after its restart');
    for (const h of hosts) assert.equal(await view(h, 'is-split-brain', 'r1'), '0', `${h.name}: no split brain`);
    // It keeps following: more writes on beta reach both.
    await writeSome(beta(), 'r1', sizeBytes, 20, random);
    const image = await exportImage(beta(), 'r1', sizeBytes);
    for (const h of [alpha(), gamma()]) {
      await waitCaughtUp(beta(), h, 'r1', 60_000);
      await assertSameAsPrimary(image, h, device(h), `${h.name} after more writes`);
    }
    assert.equal(await view(alpha(), 'role', 'r1'), 'Secondary');
  });
});
