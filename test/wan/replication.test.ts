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
import { sparseFile, waitFor } from '../support/processes.js';
import { cleanup, viewHosts } from '../support/cluster-helpers.js';
import { wanSpec } from '../support/link-emulator.js';
import { checkPrefix, readDeviceImage } from '../support/prefix-checker.js';
import { connect, digest, MiB, mustAdm, randomDevice, randomWrites, readExport, status, waitCaughtUp } from '../support/replication-helpers.js';
import { startWanCluster, type WanCluster } from '../support/wan-helpers.js';

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
    cluster = await startWanCluster('mars-wan', 2, wanSpec(100, 50), seed);
    await sparseFile(device('alpha'), sizeBytes);
    await randomDevice(device('beta'), sizeBytes, seed);
    await mustAdm(alpha(), 'create-resource', resource, device('alpha'));
    client = await connect(alpha(), resource);
  });

  after(async () => {
    await client?.close().catch(() => undefined);
    if (cluster !== undefined) {
      await cleanup(cluster.root, cluster.hosts);
      await cluster.emulator.close();
    }
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
});
