/**
 * Parallel fetch connections (`marsd --parallel-connections 4`) between real daemons over
 * an emulated link whose every connection is capped at 8 Mbit/s (as one TCP window over
 * a long round trip caps it), the link itself at 200 Mbit/s. The secondary fetches over 4
 * connections (view says so), a backlog arrives faster than one connection could carry
 * it, a reset in the middle of it loses nothing, and the secondary ends byte-exact.
 *
 * Reproduce with WAN_SEED=N.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { formatLogName } from '../../src/log/index.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { marsdPath, run, waitFor } from '../support/processes.js';
import { wanSpec } from '../support/link-emulator.js';
import { readDeviceImage } from '../support/prefix-checker.js';
import { digest, MiB, mustAdm, readExport, seededBytes, status, waitCaughtUp } from '../support/replication-helpers.js';
import { startWanCluster, startWanResource, stopWanCluster, wanDevice, type WanCluster } from '../support/wan-helpers.js';

const seed = Number(process.env['WAN_SEED'] ?? 20_261_209);
const resource = 'r1';
const sizeBytes = 4 * MiB;
const connections = 4;
const connectionBitsPerS = 8_000_000;
const backlogBytes = 16 * MiB;

void describe('parallel fetch connections over an emulated link with a per-connection cap', { timeout: 180_000 }, () => {
  let cluster: WanCluster | undefined;
  let client: NbdClient | undefined;
  const random = new Random(seed);
  const alpha = () => cluster!.hosts[0]!;
  const beta = () => cluster!.hosts[1]!;

  before(async () => {
    const spec = { ...wanSpec(40, 200), connectionRateBitsPerS: connectionBitsPerS };
    cluster = await startWanCluster('mars-wan-parallel', 2, spec, seed, ['--parallel-connections', String(connections)], (c) => (cluster = c));
    client = await startWanResource(cluster, resource, sizeBytes, seed);
    await mustAdm(beta(), 'join-resource', resource, wanDevice(cluster, 'beta'));
    await waitCaughtUp(alpha(), beta(), resource, 90_000);
  });

  after(async () => {
    await stopWanCluster(cluster, client);
  });

  async function backlog(bytes: number): Promise<void> {
    const inflight: Promise<void>[] = [];
    for (let at = 0; at < bytes; at += 256 * 1024) {
      inflight.push(client!.write(at % sizeBytes, seededBytes(random, 256 * 1024)));
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
    await client!.flush();
  }

  void test('the secondary fetches over N connections, faster than one connection can carry, and ends byte-exact', async (t) => {
    await waitFor('beta to fetch over all its connections', async () => (await status(beta(), resource)).replica?.fetch.connections === connections, 30_000, 100);
    assert.match(await mustAdm(beta(), 'view', resource), new RegExp(`over ${connections} connections`));
    await mustAdm(beta(), 'pause-fetch', resource);
    await backlog(backlogBytes);
    const logEnd = (await status(alpha(), resource)).logger!.logPosition;
    const startedMs = Date.now();
    await mustAdm(beta(), 'resume-fetch', resource);
    await waitFor('beta to fetch the backlog', async () => {
      const f = (await status(beta(), resource)).replica!.fetch;
      return f.logName === formatLogName(logEnd.logNumber, logEnd.logHost) && f.localBytes >= logEnd.offsetBytes;
    }, 90_000, 20);
    const seconds = (Date.now() - startedMs) / 1000;
    await waitCaughtUp(alpha(), beta(), resource, 90_000);
    const oneConnectionS = (backlogBytes * 8) / connectionBitsPerS;
    t.diagnostic(`${backlogBytes / MiB} MiB of log in ${seconds.toFixed(1)} s; one connection needs at least ${oneConnectionS.toFixed(1)} s`);
    // The emulator serialises each connection at its cap: only several connections can beat it.
    assert.ok(seconds < oneConnectionS * 0.75, `fetched in ${seconds.toFixed(1)} s, one connection needs ${oneConnectionS.toFixed(1)} s`);
    const primary = await readExport(client!, sizeBytes);
    assert.equal(digest(await readDeviceImage(wanDevice(cluster!, 'beta'), sizeBytes)), digest(primary), `beta equals alpha's export (WAN_SEED=${seed})`);
  });

  void test('a reset in the middle of a parallel fetch loses nothing and applies nothing twice', async () => {
    await mustAdm(beta(), 'pause-fetch', resource);
    await backlog(backlogBytes / 2);
    await mustAdm(beta(), 'resume-fetch', resource);
    const link = cluster!.emulator.link('127.0.0.1', '127.0.0.2');
    await waitFor('fetch to be under way', async () => ((await status(beta(), resource)).replica?.fetch.restBytes ?? 0) < (backlogBytes / 2) * 0.8, 60_000, 20);
    link.reset();
    await waitCaughtUp(alpha(), beta(), resource, 90_000);
    const primary = await readExport(client!, sizeBytes);
    assert.equal(digest(await readDeviceImage(wanDevice(cluster!, 'beta'), sizeBytes)), digest(primary), `beta equals alpha's export after the reset (WAN_SEED=${seed})`);
    await waitFor('all connections back', async () => (await status(beta(), resource)).replica?.fetch.connections === connections, 30_000, 100);
  });

  void test('a bad --parallel-connections gets one line and exit 1', async () => {
    // The refused starts side by side: each loads all of marsd before it reads its options.
    const values = ['0', '9', 'many', '-1'];
    const results = await Promise.all(values.map((value) => run(process.execPath, [marsdPath, '--dir', beta().dir, `--parallel-connections=${value}`], { timeoutMs: 30_000 })));
    for (const [i, r] of results.entries()) {
      const value = values[i]!;
      assert.equal(r.code, 1, `--parallel-connections=${value}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^marsd: bad --parallel-connections '${value}'`));
    }
  });
});
