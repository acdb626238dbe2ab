/**
 * `primary --force` says truly what is lost, with two real daemons: beta's fetch is
 * paused, alpha writes, rotates its log and writes on, then dies by kill -9. beta knows
 * alpha's complete logs from alpha's indicator; the forced takeover counts at least those
 * bytes beyond beta's copy (and no more than alpha really had durable), and says that alpha
 * may have made more durable, which no member can know. Seeded (FORCED_LOSS_SEED).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { waitFor } from '../support/processes.js';
import { cleanup, metaValue, type TestHost } from '../support/cluster-helpers.js';
import { MiB, mustAdm, randomDevice, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { kill9, logSizes, setSwitch, writeSome } from '../support/roles-helpers.js';

const sizeBytes = 8 * MiB;
const seed = Number(process.env['FORCED_LOSS_SEED'] ?? 47);

void describe('primary --force counts what is lost', { timeout: 180_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (h: TestHost): string => join(root, `${h.name}-r1.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-forced-loss', 2));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', device(alpha()));
    await mustAdm(beta(), 'join-resource', 'r1', device(beta()));
    await waitCaughtUp(alpha(), beta(), 'r1', 120_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('a forced takeover after the old primary wrote and rotated unfetched counts those bytes as lost, at least, and says it cannot know more', async (t) => {
    t.diagnostic(`seed ${seed}`);
    await setSwitch(beta(), 'r1', 'fetch', false);
    await writeSome(alpha(), 'r1', sizeBytes, 30, random);
    await mustAdm(alpha(), 'log-rotate', 'r1');
    await writeSome(alpha(), 'r1', sizeBytes, 10, random);
    const onAlpha = await logSizes(alpha(), 'r1');
    const onBeta = await logSizes(beta(), 'r1');
    const names = [...onAlpha.keys()];
    const beyond = (name: string): number => Math.max(0, onAlpha.get(name)! - (onBeta.get(name) ?? 0));
    // The complete logs (all but alpha's live one) are in alpha's indicator: beta must count them.
    const knownBytes = names.slice(0, -1).reduce((sum, name) => sum + beyond(name), 0);
    const allBytes = names.reduce((sum, name) => sum + beyond(name), 0);
    assert.ok(knownBytes > 0, `alpha's complete logs hold bytes beta lacks: ${JSON.stringify([...onAlpha])} vs ${JSON.stringify([...onBeta])}`);
    const rotated = names.at(-2)!;
    await waitFor('beta to see alpha\'s rotated log complete in its indicator', async () => {
      const logs = (await metaValue(beta(), 'resource/r1/actual/alpha') as { logs?: [number, string, number | null][] } | undefined)?.logs ?? [];
      return logs.some(([n, origin, bytes]) => `log-${String(n).padStart(9, '0')}-${origin}` === rotated && bytes === onAlpha.get(rotated));
    }, 30_000, 100);
    await kill9(alpha());
    const out = await mustAdm(beta(), 'primary', 'r1', '--force');
    t.diagnostic(out.trim());
    const m = /; forced: at least (\d+) bytes of the old primary's log are lost \(known durable there from alpha's indicator, not fetched here; it may have made more durable since the cluster last heard from it, which no member can know\)\n$/.exec(out);
    assert.ok(m !== null, out);
    const said = Number(m[1]);
    assert.ok(said >= knownBytes && said <= allBytes, `said ${said} bytes; known complete ${knownBytes}, all durable ${allBytes}`);
  });
});
