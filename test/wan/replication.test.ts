/**
 * Replication between real daemons over an emulated long-distance link: 100 ms round trip
 * and 50 Mbit/s each way (test/support/link-emulator.ts). The hosts advertise the
 * emulator's fronts, so every byte between them (join, metadata, sync, fetch) crosses the
 * emulated link. Beta joins under load (sync over the link), copies of its disk taken with
 * replay paused must equal alpha's device as of a prefix of alpha's log, and once caught
 * up its disk equals alpha's export byte for byte.
 *
 * Reproduce with WAN_SEED=N.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { adm } from '../support/adm.js';
import { marsdPath, run, waitFor } from '../support/processes.js';
import { viewHosts } from '../support/cluster-helpers.js';
import { wanSpec } from '../support/link-emulator.js';
import { checkPrefix, readDeviceImage } from '../support/prefix-checker.js';
import { digest, MiB, mustAdm, randomWrites, readExport, status, waitCaughtUp } from '../support/replication-helpers.js';
import { startWanCluster, startWanResource, stopWanCluster, type WanCluster } from '../support/wan-helpers.js';

const seed = Number(process.env['WAN_SEED'] ?? 20_261_206);
const resource = 'r1';
const sizeBytes = 16 * MiB;
const copiesCount = 3;

void describe('replication over an emulated 100 ms, 50 Mbit/s link', { timeout: 180_000 }, () => {
  let cluster: WanCluster | undefined;
  let client: NbdClient | undefined;
  const random = new Random(seed);
  const alpha = () => cluster!.hosts[0]!;
  const beta = () => cluster!.hosts[1]!;
  const device = (name: string): string => join(cluster!.root, `${name}.img`);

  before(async () => {
    cluster = await startWanCluster('mars-wan', 2, wanSpec(100, 50), seed, [], (c) => (cluster = c));
    client = await startWanResource(cluster, resource, sizeBytes, seed);
  });

  after(async () => {
    await stopWanCluster(cluster, client);
  });

  void test('hosts reach each other at their advertised addresses, through the emulator', async () => {
    const lines = await viewHosts(beta());
    assert.deepEqual(
      lines.map((l) => [l.name, l.address]),
      cluster!.hosts.map((h) => [h.name, h.advertise]),
    );
    assert.ok(cluster!.emulator.connections > 0, 'connections passed through the emulator');
  });

  void test('a secondary joins under load, stays a prefix of the primary, and ends byte-exact', async (t) => {
    await randomWrites(client!, sizeBytes, 8, random);
    await mustAdm(beta(), 'join-resource', resource, device('beta'));
    await randomWrites(client!, sizeBytes, 8, random);
    await waitFor('beta to become consistent', async () => (await status(beta(), resource)).replica?.consistent === true, 90_000, 200);
    for (let i = 0; i < copiesCount; i++) {
      await randomWrites(client!, sizeBytes, 4, random);
      await mustAdm(beta(), 'pause-replay', resource);
      try {
        const image = await readDeviceImage(device('beta'), sizeBytes);
        const result = await checkPrefix({ logDir: join(alpha().dir, `resource-${resource}`), host: 'alpha', initial: 'zero', snapshot: image, sizeBytes });
        assert.ok(result.ok, `copy ${i} (WAN_SEED=${seed}): ${result.detail}`);
        t.diagnostic(`copy ${i}: ${result.detail}`);
      } finally {
        await mustAdm(beta(), 'resume-replay', resource);
      }
    }
    await waitCaughtUp(alpha(), beta(), resource, 90_000);
    const primary = await readExport(client!, sizeBytes);
    assert.equal(digest(await readDeviceImage(device('beta'), sizeBytes)), digest(primary), `beta equals alpha's export (WAN_SEED=${seed})`);
    const wire = cluster!.emulator.deliveredBytes('127.0.0.1', '127.0.0.2');
    t.diagnostic(`alpha to beta over the emulated link: ${(wire / MiB).toFixed(1)} MiB`);
    assert.ok(wire > sizeBytes / 2, `the sync and the log crossed the emulated link (${wire} bytes)`);
  });

  void test('a fetch rate set at run time holds the link to it; unlimited lets fetch catch up', async (t) => {
    const rate = 512 * 1024;
    assert.equal((await mustAdm(beta(), 'set-rate', resource, '--fetch', '512K')).trim(), 'host: fetch unlimited, sync unlimited\nresource r1: fetch 512K/s, sync unlimited');
    const fetched = async (): Promise<{ log: string | null; bytes: number }> => {
      const f = (await status(beta(), resource)).replica!.fetch;
      return { log: f.logName, bytes: f.localBytes };
    };
    const before = await fetched();
    const wireBefore = cluster!.emulator.deliveredBytes('127.0.0.1', '127.0.0.2');
    const startedMs = Date.now();
    await randomWrites(client!, sizeBytes, 16, random);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const after = await fetched();
    const wire = cluster!.emulator.deliveredBytes('127.0.0.1', '127.0.0.2') - wireBefore;
    const moved = after.bytes - before.bytes;
    const allowed = (rate * (Date.now() - startedMs)) / 1000 + 2 * 64 * 1024 + 256 * 1024;
    t.diagnostic(`fetch moved ${moved} bytes of log (${wire} bytes crossed alpha to beta) in ${Date.now() - startedMs} ms at a limit of ${rate} B/s`);
    assert.equal(after.log, before.log, 'no rotation in between');
    assert.ok(moved <= allowed, `fetch moved ${moved} bytes (${wire} crossed alpha to beta), at most ${Math.round(allowed)} allowed`);
    // Not vacuous: fetch went on under the limit (a stalled fetch would also stay under it). Over
    // 2 s and more, a quarter second's worth leaves room for a loaded machine and the restarted stream.
    assert.ok(moved >= rate / 4, `fetch moved ${moved} bytes in ${Date.now() - startedMs} ms, at least ${rate / 4} expected`);
    assert.ok(((await status(beta(), resource)).replica!.fetch.restBytes ?? 0) > 0, 'the limit held fetch back');
    assert.equal((await mustAdm(beta(), 'set-rate', resource, '--fetch', 'unlimited')).trim(), 'host: fetch unlimited, sync unlimited');
    await waitCaughtUp(alpha(), beta(), resource, 60_000);
    const json = JSON.parse(await mustAdm(beta(), 'view', resource, '--json')) as { resources: { fetch: { compression: string | null } }[] };
    assert.equal(json.resources[0]?.fetch.compression, 'lz4', 'the daemons agreed on the best compression both have');
  });

  void test('a rate of 0, a negative or a non-numeric rate gets one line and exit 1', async () => {
    for (const args of [['--fetch', '0'], ['--fetch', '-5M'], ['--sync', 'fast'], ['--sync', '0K']]) {
      const r = await adm(beta().dir, 'set-rate', resource, ...args);
      assert.equal(r.code, 1, `set-rate ${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^marsadm: bad (fetch|sync) rate /);
    }
    // The refused starts side by side: each loads all of marsd before it reads its options.
    const bad = ['--fetch-rate', '--sync-rate'].flatMap((flag) => ['0', '-1', 'lots'].map((value) => ({ flag, value })));
    const results = await Promise.all(bad.map(({ flag, value }) => run(process.execPath, [marsdPath, '--dir', beta().dir, `${flag}=${value}`], { timeoutMs: 30_000 })));
    for (const [i, r] of results.entries()) {
      const { flag, value } = bad[i]!;
      assert.equal(r.code, 1, `marsd ${flag}=${value}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^marsd: bad ${flag} '${value}'`));
    }
    assert.equal((await adm(beta().dir, 'set-rate', 'nosuch', '--fetch', '1M')).code, 1, 'a resource this host does not have');
  });
});
