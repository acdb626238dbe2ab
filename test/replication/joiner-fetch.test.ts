/**
 * A joining secondary fetches the primary's log only from its sync's start, with two real
 * daemons: alpha's log holds tens of MiB when beta joins; beta's copy of that log holds
 * (allocated on disk) no more than what the log gained after the sync began, although it
 * is as long as alpha's; beta replicates byte for byte, and restarted while alpha is
 * stopped, it says its fetch-rest is unknown (not 0) until it has heard from alpha, takes
 * its copy as it is (verified from its replay position, nothing cut) and goes on. Seeded
 * (JOINER_SEED).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { formatLogName } from '../../src/log/index.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { assertSameAsPrimary, MiB, mustAdm, randomDevice, startCluster, status, waitCaughtUp } from '../support/replication-helpers.js';
import { exportImage, view, writeSome } from '../support/roles-helpers.js';
import { waitFor } from '../support/processes.js';

const sizeBytes = 16 * MiB;
const seed = Number(process.env['JOINER_SEED'] ?? 57);
/**
 * How often the daemons save their written-back position (MARS_INTERVALS
 * positionPersistIntervalMs; production 5 s): beta's sync starts at alpha's saved position,
 * which the test waits for before the join.
 */
const positionPersistIntervalMs = 200;

void describe('a joining secondary fetches from its sync start', { timeout: 240_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (h: TestHost): string => join(root, `${h.name}-r1.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-joiner', 2, undefined, `positionPersistIntervalMs=${positionPersistIntervalMs}`));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()));
    await writeSome(alpha(), 'r1', sizeBytes, 60, random);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('the copy of the current log holds only what came after the sync start, and beta replicates byte for byte', async (t) => {
    t.diagnostic(`seed ${seed}`);
    const log = formatLogName(1, 'alpha');
    const before = (await stat(join(alpha().dir, 'resource-r1', log))).size;
    assert.ok(before > 8 * MiB, `alpha's log holds ${before} bytes before beta joins`);
    // The sync starts at alpha's written-back position: wait until writeback has caught up.
    await waitFor('alpha to write back its log', async () => (await view(alpha(), 'replay-rest', 'r1')) === '0', 60_000, 100);
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    await writeSome(alpha(), 'r1', sizeBytes, 10, random);
    await waitCaughtUp(alpha(), beta(), 'r1', 120_000);
    const startLine = /sync of r1 started at 1:(\d+) of alpha/.exec(beta().daemon!.stderr());
    assert.ok(startLine !== null, 'beta says where its sync started');
    const startBytes = Number(startLine[1]);
    assert.ok(startBytes >= before, `the sync started at ${startBytes}, after the ${before} bytes written before the join`);
    const source = await stat(join(alpha().dir, 'resource-r1', log));
    const copy = await stat(join(beta().dir, 'resource-r1', log));
    assert.equal(copy.size, source.size, 'the copy is as long as the source');
    const allocatedBytes = copy.blocks * 512;
    const afterStart = source.size - startBytes;
    t.diagnostic(`log ${source.size} bytes, sync start ${startBytes}, copy allocates ${allocatedBytes} bytes`);
    assert.ok(allocatedBytes <= afterStart + MiB, `beta's copy allocates ${allocatedBytes} bytes; only ${afterStart} bytes came after the sync start`);
    await assertSameAsPrimary(await exportImage(alpha(), 'r1', sizeBytes), beta(), device(beta()), 'beta after the join');
  });

  void test('restarted while alpha is stopped, beta says its fetch-rest is unknown, not 0, then takes its copy as it is and goes on', async () => {
    await beta().daemon!.stop();
    // alpha writes on while beta is down, then stops answering (SIGSTOP, this file's own daemon, by PID).
    await writeSome(alpha(), 'r1', sizeBytes, 10, random);
    const alphaChild = alpha().daemon!.child;
    alphaChild.kill('SIGSTOP');
    try {
      await start(beta());
      await waitFor("beta's fetch to try alpha", async () => (await status(beta(), 'r1')).replica?.fetch.state === 'source-unreachable', 20_000, 50);
      assert.equal((await status(beta(), 'r1')).replica?.fetch.restBytes, null, 'the daemon reports the rest as unknown');
      assert.equal(await view(beta(), 'fetch-rest', 'r1'), 'unknown', 'beta has not heard from alpha: not 0');
      assert.equal(await view(beta(), 'disk-state', 'r1'), 'OutDated');
    } finally {
      alphaChild.kill('SIGCONT');
    }
    await waitFor("beta's fetch-rest to be a number once alpha answers", async () => /^\d+$/.test(await view(beta(), 'fetch-rest', 'r1')), 30_000, 50);
    await writeSome(alpha(), 'r1', sizeBytes, 10, random);
    await waitCaughtUp(alpha(), beta(), 'r1', 60_000);
    await waitFor('beta to say it is ready', () => beta().daemon!.stderr().includes('marsd is ready'), 10_000, 50);
    assert.doesNotMatch(beta().daemon!.stderr(), /cut by \d+ bytes/, 'nothing was cut from the copy');
    await assertSameAsPrimary(await exportImage(alpha(), 'r1', sizeBytes), beta(), device(beta()), 'beta after its restart');
  });
});
