/**
 * Split brain with three real daemons: two histories after a forced failover, reported by
 * every member, named in `view` with its sides, refused by `primary` without --force, and
 * resolved on the losing side by `invalidate`, and a second time by `leave-resource` +
 * `join-resource`; afterwards no host reports it and every device equals the primary's
 * export.
 *
 * The first split brain comes from a real partition when network namespaces can be used
 * (root and `ip netns`): alpha is cut from beta and gamma, beta is forced primary, both
 * write, alpha rotates its log (as cron would), the link heals. Otherwise (and with
 * ROLES_NO_NETNS=1) it is made portably: beta and gamma pause fetch, alpha writes and
 * rotates, beta is forced primary (alpha learns it at once and stops serving). The second
 * split brain is always made the portable way, without a rotation: one log ends at two
 * lengths, which the indicators show and the loser's fetch reports. Seeded (SPLIT_SEED).
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { adm } from '../support/adm.js';
import { removeDir, tempDir, waitFor } from '../support/processes.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import { settleWithin } from '../support/daemon-helpers.js';
import { assertSameAsPrimary, MiB, mustAdm, randomDevice, startCluster, status, waitCaughtUp } from '../support/replication-helpers.js';
import {
  createSplitNet,
  explainFailure,
  exportImage,
  nsHost,
  rolesNetnsSkipReason,
  setSwitch,
  splitBrainSeenBy,
  startNsCluster,
  view,
  waitSplitBrain,
  writeSome,
  type SplitBrainJson,
  type SplitNet,
} from '../support/roles-helpers.js';

const sizeBytes = 16 * MiB;
const seed = Number(process.env['SPLIT_SEED'] ?? 31);
const netnsReason = await rolesNetnsSkipReason();

/** The log number `log-rotate` says it now logs to. */
function rotatedTo(out: string): number {
  const m = /now logging to log (\d{9})/.exec(out);
  assert.ok(m !== null, `log-rotate said: ${out}`);
  return Number(m[1]);
}

void describe('split brain', { timeout: 300_000 }, () => {
  let root = '';
  let net: SplitNet | undefined;
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const gamma = (): TestHost => hosts[2]!;
  const device = (h: TestHost): string => join(root, `${h.name}.img`);
  /** The log both histories wrote (the first split brain). */
  let splitLog = 0;

  before(async () => {
    if (netnsReason === undefined) {
      root = await tempDir('mars-split');
      net = await createSplitNet('sb');
      const inNs = [nsHost(root, net, 'alpha', 0, 7777, 10809), nsHost(root, net, 'beta', 1, 7777, 10809), nsHost(root, net, 'gamma', 1, 7778, 10810)];
      hosts = inNs;
      await startNsCluster(net, inNs);
    } else {
      ({ root, hosts } = await startCluster('mars-split', 3));
    }
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()));
    await writeSome(alpha(), 'r1', sizeBytes, 50, random);
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    await mustAdm(gamma(), 'join-resource', 'r1', device(gamma()));
    await waitCaughtUp(alpha(), beta(), 'r1', 120_000);
    await waitCaughtUp(alpha(), gamma(), 'r1', 120_000);
  });

  after(async () => {
    if (net === undefined) {
      await cleanup(root, hosts);
      return;
    }
    for (const h of hosts) {
      const d = h.daemon;
      h.daemon = undefined;
      if (d !== undefined && (await settleWithin(d.stop(), 10_000)) === undefined) await d.kill9();
    }
    await net.tearDown();
    if (root !== '') await removeDir(root);
  });

  /** Two histories from a partition: alpha keeps serving in its namespace while beta is forced primary in the other. */
  async function splitByPartition(t: TestContext): Promise<void> {
    const n = net!;
    await n.cut();
    try {
      await writeSome(alpha(), 'r1', sizeBytes, 20, random);
      // beta may not have noticed the cut yet (its link to alpha idles out later): --yes.
      const forced = await mustAdm(beta(), 'primary', 'r1', '--force', '--yes');
      t.diagnostic(forced.trim());
      await writeSome(beta(), 'r1', sizeBytes, 20, random);
      splitLog = rotatedTo(await mustAdm(alpha(), 'log-rotate', 'r1'));
      await writeSome(alpha(), 'r1', sizeBytes, 10, random);
      assert.equal(await view(alpha(), 'is-primary', 'r1'), '1', 'alpha, cut off, still serves');
    } finally {
      await n.heal();
    }
  }

  /** Two histories without a partition: beta and gamma stop fetching, alpha writes and rotates, beta is forced. */
  async function splitByPausedFetch(t: TestContext): Promise<void> {
    for (const h of [beta(), gamma()]) await setSwitch(h, 'r1', 'fetch', false);
    await writeSome(alpha(), 'r1', sizeBytes, 20, random);
    splitLog = rotatedTo(await mustAdm(alpha(), 'log-rotate', 'r1'));
    await writeSome(alpha(), 'r1', sizeBytes, 10, random);
    // alpha is alive and reachable: forcing beta anyway is a deliberate second history (--yes).
    const forced = await mustAdm(beta(), 'primary', 'r1', '--force', '--yes');
    t.diagnostic(forced.trim());
    // beta's switch stays as it was for when it is a secondary again; gamma follows beta.
    for (const h of [beta(), gamma()]) await setSwitch(h, 'r1', 'fetch', true);
    await writeSome(beta(), 'r1', sizeBytes, 20, random);
  }

  void test('two histories after a forced failover: every host reports the split brain and view names its sides', async (t) => {
    t.diagnostic(netnsReason === undefined ? 'split by a network partition (namespaces)' : `split without namespaces (${netnsReason})`);
    t.diagnostic(`seed ${seed}`);
    if (net !== undefined) await splitByPartition(t);
    else await splitByPausedFetch(t);
    await waitSplitBrain(hosts, 'r1', '1');
    const want = [
      { origin: 'alpha', hosts: ['alpha'] },
      { origin: 'beta', hosts: ['beta', 'gamma'] },
    ];
    let verdicts: (SplitBrainJson | null)[] = [];
    await waitFor('every host to see both sides (gamma on beta\'s)', async () => {
      verdicts = await Promise.all(hosts.map((h) => splitBrainSeenBy(h, 'r1')));
      // The histories part inside the log before: alpha wrote on in it after beta's copy ended.
      return verdicts.every((v) => v !== null && v.atLog === splitLog - 1 && (v.atOffsetBytes ?? 0) > 0 && JSON.stringify(v.sides.map((s) => ({ origin: s.origin, hosts: s.hosts }))) === JSON.stringify(want));
    }, 45_000, 250).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; split at log ${splitLog}; last: ${JSON.stringify(verdicts)}`);
    });
    for (const v of verdicts) for (const side of v!.sides) assert.ok(Number.isSafeInteger(side.lossBytes) && side.lossBytes >= 0);
    for (const h of hosts) {
      const text = await mustAdm(h, 'view', 'r1');
      assert.match(text, new RegExp(`\\n {4}SPLIT BRAIN in log ${splitLog - 1} at byte \\d+: resolve with marsadm invalidate r1 on each host of the losing side\\n`), `${h.name}: ${text}`);
      assert.match(text, /\n {8}history of alpha: alpha \(would lose [^\n]+ of log if the other side wins\)/);
      assert.match(text, /\n {8}history of beta: beta gamma \(would lose [^\n]+ of log if the other side wins\)/);
      assert.match(text, /\n {8}to keep the history of alpha \(the other side loses [^)]+\): on alpha: marsadm primary r1 --force --yes; then on beta: marsadm invalidate r1; then on gamma: marsadm invalidate r1\n/);
      assert.match(text, /\n {8}to keep the history of beta \(the other side loses [^)]+\): on alpha: marsadm invalidate r1(\n|$)/);
      const json = JSON.parse(await mustAdm(h, 'view', 'r1', '--json')) as { resources: { splitBrain: SplitBrainJson | null; isSplitBrain: boolean }[] };
      const r = json.resources[0];
      assert.ok(r !== undefined && r.splitBrain !== null, `${h.name}: view --json has the split brain`);
      assert.equal(r.isSplitBrain, true);
      assert.equal(r.splitBrain.atLog, splitLog - 1);
      assert.deepEqual(r.splitBrain.sides.map((s) => s.origin), ['alpha', 'beta']);
    }
    t.diagnostic(`split at log ${splitLog}; beta's verdict: ${JSON.stringify(verdicts[1])}`);
    assert.equal(await view(beta(), 'is-primary', 'r1'), '1');
    assert.equal(await view(alpha(), 'is-primary', 'r1'), '0', 'alpha stopped serving once it learned');
  });

  void test('view counts what the old primary\'s side would lose: at least its own log at the split, which no longer grows', async () => {
    assert.ok(splitLog > 0, 'needs the split brain of the first test');
    const own = (await status(alpha(), 'r1')).logFiles.find((f) => f.name === `log-${String(splitLog).padStart(9, '0')}-alpha`);
    assert.ok(own !== undefined && own.sizeBytes > 0, 'alpha holds its own log at the split');
    assert.equal(await view(alpha(), 'is-primary', 'r1'), '0', 'alpha no longer serves: its log is final');
    for (const h of hosts) {
      const side = (await splitBrainSeenBy(h, 'r1'))?.sides.find((s) => s.origin === 'alpha');
      assert.ok(side !== undefined, h.name);
      assert.ok(side.lossBytes >= own.sizeBytes, `${h.name}: alpha's side would lose ${side.lossBytes} bytes, yet only alpha holds the ${own.sizeBytes} bytes of ${own.name}`);
    }
  });

  void test('primary without --force on a split-brain host is refused with one line; nothing changed', async () => {
    assert.ok(splitLog > 0, 'needs the split brain of the first test');
    for (const h of [gamma(), alpha()]) {
      const refused = await adm(h.dir, 'primary', 'r1');
      assert.equal(refused.code, 1, `${h.name}: ${refused.stdout}`);
      assert.equal(refused.stdout, '');
      assert.match(
        refused.stderr,
        new RegExp(
          `^marsadm: split brain of r1 in log ${splitLog - 1} at byte \\d+: alpha on alpha's history \\(\\d+ bytes lost if the other side wins\\) vs beta\\+gamma on beta's history \\(\\d+ bytes lost if the other side wins\\)(?: \\([^)]*\\))?; ` +
            "to keep alpha's history: on alpha: marsadm primary r1 --force --yes, then on beta: marsadm invalidate r1, then on gamma: marsadm invalidate r1; " +
            "to keep beta's history: on alpha: marsadm invalidate r1; or take over with this host's history: primary r1 --force\\n$",
        ),
        h.name,
      );
    }
    for (const h of hosts) assert.equal(await view(h, 'primarynode', 'r1'), 'beta');
    assert.equal((await status(beta(), 'r1')).state, 'serving');
    assert.equal(await view(gamma(), 'is-primary', 'r1'), '0');
  });

  void test('invalidate on the losing side resolves it: UpToDate, no split brain on any host, byte-identical to the primary', async () => {
    assert.ok(splitLog > 0, 'needs the split brain of the first test');
    const out = await mustAdm(alpha(), 'invalidate', 'r1');
    assert.equal(out, 'resource r1 invalidated here; a fast full sync from beta follows\n');
    await writeSome(beta(), 'r1', sizeBytes, 10, random);
    await waitCaughtUp(beta(), alpha(), 'r1', 90_000);
    await waitCaughtUp(beta(), gamma(), 'r1', 60_000);
    await waitFor('alpha to be UpToDate', async () => (await view(alpha(), 'disk-state', 'r1')) === 'UpToDate', 30_000, 200);
    await waitSplitBrain(hosts, 'r1', '0');
    const image = await exportImage(beta(), 'r1', sizeBytes);
    await assertSameAsPrimary(image, alpha(), device(alpha()), 'alpha after invalidate');
    await assertSameAsPrimary(image, gamma(), device(gamma()), 'gamma after invalidate');
    assert.equal(await view(alpha(), 'is-consistent', 'r1'), '1');
  });

  void test('a second split brain, the old primary\'s log longer than the copy the new one took over with, is resolved by leave-resource and join-resource', async (t) => {
    // beta is primary; alpha and gamma stop fetching, beta writes, alpha is forced primary.
    await waitCaughtUp(beta(), alpha(), 'r1');
    await waitCaughtUp(beta(), gamma(), 'r1');
    for (const h of [alpha(), gamma()]) await setSwitch(h, 'r1', 'fetch', false);
    await writeSome(beta(), 'r1', sizeBytes, 20, random);
    const forced = await mustAdm(alpha(), 'primary', 'r1', '--force', '--yes');
    t.diagnostic(forced.trim());
    for (const h of [alpha(), gamma()]) await setSwitch(h, 'r1', 'fetch', true);
    await writeSome(alpha(), 'r1', sizeBytes, 20, random);
    const verdicts = await waitSplitBrain(hosts, 'r1', '1');
    for (const [host, v] of verdicts) {
      assert.ok(v !== null, host);
      assert.ok(v.reports.some((r) => r.host === 'beta'), `${host}: beta reports the divergence: ${JSON.stringify(v)}`);
      assert.ok(v.reports.every((r) => r.host === 'beta'), `${host}: only beta diverged: ${JSON.stringify(v)}`);
    }
    t.diagnostic(`verdict: ${JSON.stringify(verdicts.get('alpha'))}`);
    const text = await mustAdm(gamma(), 'view', 'r1');
    assert.match(text, /\n {4}SPLIT BRAIN[^\n]*: resolve with marsadm invalidate r1 on each host of the losing side\n/);
    assert.match(text, /\n {8}beta: [^\n]+/);
    const refused = await adm(gamma().dir, 'primary', 'r1');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^marsadm: split brain of r1[^\n]*; or take over with this host's history: primary r1 --force\n$/);
    assert.equal(await view(gamma(), 'primarynode', 'r1'), 'alpha');

    await mustAdm(beta(), 'leave-resource', 'r1');
    assert.equal(existsSync(join(beta().dir, 'resource-r1')), false, 'beta removed its resource directory');
    assert.equal(existsSync(device(beta())), true, 'beta kept its device');
    await waitSplitBrain([alpha(), gamma()], 'r1', '0');
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    await writeSome(alpha(), 'r1', sizeBytes, 10, random);
    await explainFailure((m) => t.diagnostic(m), hosts, 'r1', () => waitCaughtUp(alpha(), beta(), 'r1', 90_000));
    await waitCaughtUp(alpha(), gamma(), 'r1', 60_000);
    await waitFor('beta to be UpToDate', async () => (await view(beta(), 'disk-state', 'r1')) === 'UpToDate', 30_000, 200);
    await waitSplitBrain(hosts, 'r1', '0');
    const image = await exportImage(alpha(), 'r1', sizeBytes);
    await assertSameAsPrimary(image, beta(), device(beta()), 'beta after leave and join');
    await assertSameAsPrimary(image, gamma(), device(gamma()), 'gamma after the second split brain');
  });
});
