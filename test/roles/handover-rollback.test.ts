/**
 * A handover is a transaction: checked before anything changes, and rolled back when it
 * does not finish in time, so that a command that failed never leaves the resource served
 * by nobody. Two real daemons on 127.0.0.1–2: a paused replay on the target is refused up
 * front (the old primary serves on); a handover that times out gives the role back to the
 * old primary, which serves again; a forced takeover while the old primary is alive needs
 * --yes; a dead old primary is named unreachable, with the host to force. And the guards
 * around it: pauses that could do nothing are refused, and so are down and secondary
 * while the export has clients (--force disconnects them).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { adm } from '../support/adm.js';
import { cleanup, metaValue, type TestHost } from '../support/cluster-helpers.js';
import { connect, MiB, mustAdm, randomDevice, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { kill9, primaries, view, waitOnePrimary } from '../support/roles-helpers.js';

const sizeBytes = 4 * MiB;

void describe('handover as a transaction, and the guards around it', { timeout: 180_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;

  before(async () => {
    ({ root, hosts } = await startCluster('mars-hrb', 2));
    for (const h of hosts) await randomDevice(join(root, `${h.name}.img`), sizeBytes, h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', join(root, 'alpha.img'));
    await mustAdm(beta(), 'join-resource', 'r1', join(root, 'beta.img'));
    await waitCaughtUp(alpha(), beta(), 'r1', 60_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('with pause-replay on the target, primary --timeout fails up front and the old primary serves on', async () => {
    await mustAdm(beta(), 'pause-replay', 'r1');
    const refused = await adm(beta().dir, 'primary', 'r1', '--timeout', '5');
    assert.equal(refused.code, 1, refused.stdout);
    assert.equal(refused.stderr, 'marsadm: the replay of r1 is paused on beta (pause-replay): it could not catch up with the log of alpha; resume-replay r1 first\n');
    assert.deepEqual(await primaries(hosts, 'r1'), ['alpha'], 'alpha serves, beta does not');
    assert.equal(await view(beta(), 'primarynode', 'r1'), 'alpha');
    await mustAdm(beta(), 'resume-replay', 'r1');
  });

  void test('a handover that does not finish in time is rolled back: the old primary serves again', async () => {
    // What `primary r1 --timeout` sends, with a timeout no handover between two processes can meet.
    const failed = await callDaemon(join(beta().dir, 'control.sock'), 'primary', { name: 'r1', timeoutMs: 1 }, 60_000).then(
      () => 'succeeded',
      (err: unknown) => (err as Error).message,
    );
    assert.match(failed, /^beta to serve r1: not within 0 s.*; handover rolled back: alpha serves r1 again$/);
    assert.equal((await waitOnePrimary(hosts, 'r1', 30_000)).name, 'alpha');
    assert.equal(await view(beta(), 'primarynode', 'r1'), 'alpha');
    assert.equal(await view(alpha(), 'primarynode', 'r1'), 'alpha');
  });

  void test('primary --force while the old primary is alive and reachable needs --yes; nothing changed', async () => {
    const refused = await adm(beta().dir, 'primary', 'r1', '--force');
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /^marsadm: alpha, the primary of r1, is alive and reachable and serves it: primary --force would make a second history \(a split brain\); .* add --yes to force anyway\n$/);
    assert.deepEqual(await primaries(hosts, 'r1'), ['alpha']);
    const usage = await adm(beta().dir, 'primary', 'r1', '--yes');
    assert.equal(usage.code, 2);
  });

  void test('pauses that could do nothing are refused with the reason: fetch and replay on the primary, sync without one', async () => {
    for (const [word, which] of [['pause-replay', 'replay'], ['pause-fetch', 'fetch']] as const) {
      const refused = await adm(alpha().dir, word, 'r1');
      assert.equal(refused.code, 1, refused.stdout);
      assert.equal(refused.stderr, `marsadm: alpha is the primary of r1: it does not ${which} (${word} is for a secondary; run it there, or after a handover)\n`);
    }
    const sync = await adm(beta().dir, 'pause-sync', 'r1');
    assert.equal(sync.code, 1, sync.stdout);
    assert.equal(sync.stderr, 'marsadm: no sync of r1 runs or is due on beta (it is consistent): nothing to pause\n');
    const desired = (await metaValue(alpha(), 'resource/r1/desired/alpha')) as Record<string, unknown>;
    assert.equal(desired['replay'], undefined, 'the switch was not stored');
    assert.equal(desired['fetch'], undefined, 'the switch was not stored');
  });

  void test('down and secondary refuse while the export has NBD clients, naming them; --force disconnects them', async () => {
    const client = await connect(alpha(), 'r1');
    try {
      for (const args of [['down', 'r1'], ['secondary', 'r1']]) {
        const refused = await adm(alpha().dir, ...args);
        assert.equal(refused.code, 1, refused.stdout);
        assert.match(refused.stderr, new RegExp(`^marsadm: ${args[0]} refused: r1 has 1 NBD connection\\(s\\) open: alpha 127\\.0\\.0\\.1:\\d+ \\(close them, .*--force to disconnect them\\)\n$`));
      }
      assert.deepEqual(await primaries(hosts, 'r1'), ['alpha'], 'nothing changed');
      await mustAdm(alpha(), 'down', 'r1', '--force');
      assert.equal(await view(alpha(), 'is-primary', 'r1'), '0');
    } finally {
      await client.close().catch(() => undefined);
    }
    await mustAdm(alpha(), 'up', 'r1');
    assert.equal((await waitOnePrimary(hosts, 'r1', 30_000)).name, 'alpha');
  });

  void test('a dead old primary: a planned handover names it unreachable and the host to force', async () => {
    await waitCaughtUp(alpha(), beta(), 'r1', 60_000);
    await kill9(alpha());
    const refused = await adm(beta().dir, 'primary', 'r1');
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /^marsadm: alpha, the primary of r1, is unreachable since \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ s\): a planned handover needs it; use primary r1 --force on the best secondary \(beta is most up to date\)\n$/);
    await mustAdm(beta(), 'primary', 'r1', '--force');
    assert.equal(await view(beta(), 'is-primary', 'r1'), '1');
  });
});
