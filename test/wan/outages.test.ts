/**
 * Outages of an emulated 100 ms, 50 Mbit/s link between real daemons: the link resets
 * while sync runs and while fetch runs, and stalls (goes silent, nothing lost) during
 * fetch. A stall is noticed within seconds (keepalives; `view` says PrimaryUnreachable
 * with the time since the last contact), fetch resumes where its verified copy ends, and
 * through all of it beta stays a prefix of alpha's log and ends byte-exact.
 *
 * Reproduce with WAN_SEED=N.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { fetchWindowBytes } from '../../src/fetch/limits.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { waitFor } from '../support/processes.js';
import { wanSpec, type Link } from '../support/link-emulator.js';
import { checkPrefix, readDeviceImage } from '../support/prefix-checker.js';
import { digest, MiB, mustAdm, randomWrites, readExport, status, waitCaughtUp } from '../support/replication-helpers.js';
import { startWanCluster, startWanResource, stopWanCluster, type WanCluster } from '../support/wan-helpers.js';

const seed = Number(process.env['WAN_SEED'] ?? 20_261_207);
const resource = 'r1';
const sizeBytes = 24 * MiB;
/**
 * The daemons close a link that has received nothing for this long (MARS_INTERVALS
 * peerIdleMs; production 6 s, src/net/limits.ts): the stall is noticed after it, not after
 * the production limit.
 */
const peerIdleMs = 3_000;
/** "Within seconds": the stall is noticed within this (TCP alone would take minutes, the old keepalive 30 s). */
const stallNoticedMsMax = 12_000;
/** The stall lasts until the checks made during it are done (ended then by endStall), at most this long. */
const stallMsMax = 120_000;

void describe('outages of an emulated long-distance link', { timeout: 240_000 }, () => {
  let cluster: WanCluster | undefined;
  let client: NbdClient | undefined;
  const random = new Random(seed);
  const alpha = () => cluster!.hosts[0]!;
  const beta = () => cluster!.hosts[1]!;
  const link = (): Link => cluster!.emulator.link('127.0.0.1', '127.0.0.2');
  const device = (name: string): string => join(cluster!.root, `${name}.img`);
  const withSeed = (what: string): string => `${what} (WAN_SEED=${seed})`;

  async function assertPrefix(what: string): Promise<void> {
    await mustAdm(beta(), 'pause-replay', resource);
    try {
      const image = await readDeviceImage(device('beta'), sizeBytes);
      const result = await checkPrefix({ logDir: join(alpha().dir, `resource-${resource}`), host: 'alpha', initial: 'zero', snapshot: image, sizeBytes });
      assert.ok(result.ok, withSeed(`${what}: ${result.detail}`));
    } finally {
      await mustAdm(beta(), 'resume-replay', resource);
    }
  }

  async function assertSame(what: string): Promise<void> {
    await waitCaughtUp(alpha(), beta(), resource, 90_000);
    const primary = await readExport(client!, sizeBytes);
    assert.equal(digest(await readDeviceImage(device('beta'), sizeBytes)), digest(primary), withSeed(`${what}: beta equals alpha's export`));
  }

  before(async () => {
    cluster = await startWanCluster('mars-wan-outage', 2, wanSpec(100, 50), seed, [], (c) => (cluster = c), `peerIdleMs=${peerIdleMs}`);
    client = await startWanResource(cluster, resource, sizeBytes, seed);
  });

  after(async () => {
    await stopWanCluster(cluster, client);
  });

  void test('resets during sync: the sync resumes and the copy becomes consistent and byte-exact', async (t) => {
    await randomWrites(client!, sizeBytes, 8, random);
    await mustAdm(beta(), 'join-resource', resource, device('beta'));
    let resets = 0;
    // Reset whenever the sync has moved on by a few MiB since the last one, three times.
    let resetAt = 0;
    await waitFor(
      'three resets during the sync',
      async () => {
        const sync = (await status(beta(), resource)).replica?.sync;
        if (sync === null || sync === undefined || sync.state === 'done') return true;
        if (sync.state === 'syncing' && sync.doneBytes >= resetAt + 4 * MiB) {
          link().reset();
          resets++;
          resetAt = sync.doneBytes;
        }
        return resets >= 3;
      },
      90_000,
      100,
    );
    t.diagnostic(`${resets} resets during the sync`);
    assert.ok(resets >= 1, 'at least one reset fell into the sync');
    await randomWrites(client!, sizeBytes, 4, random);
    await waitFor('beta to become consistent', async () => (await status(beta(), resource)).replica?.consistent === true, 90_000, 200);
    await assertSame('after resets during sync');
  });

  void test('resets during fetch under load: byte-exact, always a prefix', async () => {
    for (let i = 0; i < 3; i++) {
      await randomWrites(client!, sizeBytes, 6, random);
      link().reset();
      await randomWrites(client!, sizeBytes, 2, random);
      await assertPrefix(`after reset ${i}`);
    }
    await assertSame('after resets during fetch');
  });

  void test('a stall is noticed within seconds, shown with the last contact, and fetch resumes where it stopped', async (t) => {
    await assertSame('before the stall');
    const logBefore = (await status(alpha(), resource)).logFiles.reduce((sum, f) => sum + f.sizeBytes, 0);
    const wireBefore = cluster!.emulator.deliveredBytes('127.0.0.1', '127.0.0.2');
    link().stall(stallMsMax);
    const stalledAtMs = Date.now();
    await randomWrites(client!, sizeBytes, 8, random); // the primary goes on writing: asynchronous replication does not wait for the link
    await waitFor('beta to see its primary unreachable', async () => (await status(beta(), resource)).replica?.fetch.state === 'source-unreachable', stallNoticedMsMax, 100);
    const noticedMs = Date.now() - stalledAtMs;
    t.diagnostic(`the stall was noticed after ${noticedMs} ms (idle limit ${peerIdleMs} ms)`);
    assert.equal((await mustAdm(beta(), 'view-repl-state', resource)).trim(), 'PrimaryUnreachable');
    const text = await mustAdm(beta(), 'view', resource);
    const contact = /last contact (\d+) s ago/.exec(text);
    assert.ok(contact !== null, `view names the last contact:\n${text}`);
    assert.ok(Number(contact[1]) >= Math.floor(peerIdleMs / 1000) - 1, `the last contact lies before the idle limit: ${contact[0]}`);
    const json = JSON.parse(await mustAdm(beta(), 'view', resource, '--json')) as { resources: { fetch: { lastContactS: number | null } }[] };
    const fetch = json.resources[0]?.fetch;
    assert.ok((fetch?.lastContactS ?? 0) >= Math.floor(peerIdleMs / 1000) - 1, `--json has lastContactS: ${JSON.stringify(fetch)}`);
    await assertPrefix('during the stall');
    assert.equal((await status(beta(), resource)).replica?.fetch.state, 'source-unreachable', 'the checks above ran during the stall');
    link().endStall();
    await assertSame('after the stall');
    const logAfter = (await status(alpha(), resource)).logFiles.reduce((sum, f) => sum + f.sizeBytes, 0);
    const wire = cluster!.emulator.deliveredBytes('127.0.0.1', '127.0.0.2') - wireBefore;
    t.diagnostic(`log grew by ${((logAfter - logBefore) / MiB).toFixed(1)} MiB; ${(wire / MiB).toFixed(1)} MiB crossed the link`);
    // Resuming from the verified end: at most what was in flight when the link was dropped travels twice.
    assert.ok(wire <= logAfter - logBefore + fetchWindowBytes + MiB, withSeed(`${wire} bytes on the wire for ${logAfter - logBefore} bytes of log`));
  });
});
