/**
 * A forced failover in the middle of things, with four real daemons: gamma and delta are
 * in the middle of their full syncs (paused with pause-sync; delta's fetch paused too,
 * early), then beta's fetch is paused while alpha writes on; gamma's fetch keeps copying
 * alpha's log. Then alpha dies by kill -9 and beta takes over with `primary --force`:
 * - the loss beta reports is at least the bytes alpha logged after beta's fetch paused
 *   (the cluster knew them: alpha's indicator, gamma's copy), never "at least 0";
 * - gamma, whose copy of alpha's log is longer than beta's, has no consistent data to
 *   protect: it restarts its full sync from beta by itself (no split brain, no invalidate);
 * - delta, whose copy is shorter than beta's, carries on: its sync dials beta;
 * - both end byte-identical with beta (`cmp`).
 * Seeded (FORCED_MIDWAY_SEED).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { run, waitFor } from '../support/processes.js';
import { cleanup, metaValue, startTestCluster, type TestHost } from '../support/cluster-helpers.js';
import { MiB, mustAdm, randomDevice, status, waitCaughtUp } from '../support/replication-helpers.js';
import { exportImage, kill9, logSizes, setSwitch, view, writeSome } from '../support/roles-helpers.js';

const sizeBytes = 32 * MiB;
const seed = Number(process.env['FORCED_MIDWAY_SEED'] ?? 53);

function total(sizes: Map<string, number>): number {
  return [...sizes.values()].reduce((a, b) => a + b, 0);
}

void describe('forced failover while a secondary pauses fetch and two others are mid-sync', { timeout: 240_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const gamma = (): TestHost => hosts[2]!;
  const delta = (): TestHost => hosts[3]!;
  const device = (h: TestHost): string => join(root, `${h.name}-r1.img`);

  before(async () => {
    // gamma and delta receive syncs slowly, so that their syncs are still running when paused.
    ({ root, hosts } = await startTestCluster('mars-forced-midway', 4, { marsdArgs: (h) => (h.name === 'gamma' || h.name === 'delta' ? ['--sync-rate', '2M'] : []) }));
    for (const [i, h] of hosts.entries()) await randomDevice(device(h), sizeBytes, seed + 7 * i);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()));
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    await waitCaughtUp(alpha(), beta(), 'r1', 120_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  let lostSaid = -1;

  void test('the loss primary --force reports is at least what the old primary logged after fetch paused here', async (t) => {
    t.diagnostic(`seed ${seed}`);
    for (const h of [gamma(), delta()]) {
      await mustAdm(h, 'join-resource', 'r1', device(h));
      await waitFor(`${h.name}'s sync to start`, async () => ((await status(h, 'r1')).replica?.sync?.doneBytes ?? 0) > 0, 30_000, 50);
      await setSwitch(h, 'r1', 'sync', false);
    }
    // delta's copy stays shorter than what beta will hold: its fetch is paused now.
    await setSwitch(delta(), 'r1', 'fetch', false);
    await waitCaughtUp(alpha(), beta(), 'r1', 60_000);
    await setSwitch(beta(), 'r1', 'fetch', false);
    const atPause = total(await logSizes(alpha(), 'r1'));
    await writeSome(alpha(), 'r1', sizeBytes, 60, random);
    const onAlpha = await logSizes(alpha(), 'r1');
    const writtenAfterPause = total(onAlpha) - atPause;
    assert.ok(writtenAfterPause > MiB, `alpha logged ${writtenAfterPause} bytes after beta's fetch paused`);
    for (const h of [gamma(), delta()]) {
      const sync = (await status(h, 'r1')).replica?.sync;
      assert.ok(sync !== null && sync !== undefined && sync.doneBytes < sync.sizeBytes, `${h.name}'s sync is unfinished: ${JSON.stringify(sync)}`);
    }
    // The cluster learns how far alpha's log reaches (alpha's own indicator, gamma's copy);
    // the check below fails if beta never learns it, so this wait only bounds the time.
    const live = [...onAlpha.keys()].at(-1)!;
    await waitFor('beta to see alpha\'s log end in an indicator', async () => {
      const a = (await metaValue(beta(), 'resource/r1/actual/alpha')) as { durableEnd?: { offsetBytes: number } } | undefined;
      const g = (await metaValue(beta(), 'resource/r1/actual/gamma')) as { copyEnd?: [number, string, number] } | undefined;
      return a?.durableEnd?.offsetBytes === onAlpha.get(live) || g?.copyEnd?.[2] === onAlpha.get(live);
    }, 20_000, 100).catch((err: unknown) => t.diagnostic((err as Error).message));
    await kill9(alpha());
    const onBeta = await logSizes(beta(), 'r1');
    const beyond = [...onAlpha].reduce((sum, [name, bytes]) => sum + Math.max(0, bytes - (onBeta.get(name) ?? 0)), 0);
    const out = await mustAdm(beta(), 'primary', 'r1', '--force');
    t.diagnostic(out.trim());
    const m = /; forced: at least (\d+) bytes of the old primary's log are lost \(known durable there from ([^,]+(?:, [^,]+)*), not fetched here; it may have made more durable since the cluster last heard from it, which no member can know\)\n$/.exec(out);
    assert.ok(m !== null, out);
    lostSaid = Number(m[1]);
    assert.ok(lostSaid >= writtenAfterPause, `said ${lostSaid} bytes lost; alpha logged ${writtenAfterPause} after beta's fetch paused`);
    assert.ok(lostSaid <= beyond, `said ${lostSaid} bytes lost; alpha held only ${beyond} beyond beta's copy`);
    assert.match(m[2]!, /alpha's indicator|gamma's copy/);
  });

  void test('the members that were mid-sync finish syncing from the new primary by themselves and end byte-identical; no split brain', async () => {
    assert.ok(lostSaid >= 0, 'needs the forced failover above');
    await writeSome(beta(), 'r1', sizeBytes, 20, random);
    // The slow syncs served the first test (still running when paused); from here on they run unlimited.
    for (const h of [gamma(), delta()]) await mustAdm(h, 'set-rate', '--sync', 'unlimited');
    for (const h of [gamma(), delta()]) await setSwitch(h, 'r1', 'sync', true);
    await setSwitch(delta(), 'r1', 'fetch', true);
    let splitSeen = '';
    for (const h of [gamma(), delta()]) {
      await waitFor(`${h.name} to sync from beta and become consistent`, async () => {
        for (const x of [beta(), gamma(), delta()]) if ((await view(x, 'is-split-brain', 'r1')) === '1') splitSeen = x.name;
        const r = (await status(h, 'r1')).replica;
        return r?.consistent === true && r.fetch.source === 'beta';
      }, 90_000, 200).catch(async (err: unknown) => {
        const said = (x: TestHost): string => `${x.name}:\n${(x.daemon?.stderr() ?? '').split('\n').filter((l) => /fetch|sync|invalidat|diverg/.test(l)).slice(-12).join('\n')}`;
        throw new Error(`${(err as Error).message}; split brain shown on ${splitSeen || 'none'}; ${JSON.stringify((await status(h, 'r1')).replica)}\n${said(gamma())}\n${said(delta())}`);
      });
      await waitCaughtUp(beta(), h, 'r1', 60_000);
    }
    assert.equal(splitSeen, '', 'no split brain is shown while gamma and delta sync again');
    for (const h of [beta(), gamma(), delta()]) assert.equal(await view(h, 'is-split-brain', 'r1'), '0');
    const image = join(root, 'beta-export.img');
    await writeFile(image, await exportImage(beta(), 'r1', sizeBytes));
    for (const h of [gamma(), delta()]) {
      const cmp = await run('cmp', [image, device(h)]);
      assert.equal(cmp.code, 0, `cmp with ${h.name}: ${cmp.stdout}${cmp.stderr}`);
    }
  });
});
