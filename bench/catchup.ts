/**
 * Catch-up: how fast a secondary fetches and replays a backlog while its primary is idle
 * (`node dist/bench/catchup.js`). alpha creates a resource, beta joins and syncs, beta
 * pauses fetch, alpha writes BENCH_CATCHUP_MIB MiB of 1 MiB writes (QD8) and flushes,
 * beta resumes fetch; the bench times fetch-rest and replay-rest reaching 0. This is the
 * fetch and replay pipeline alone, without the primary's write load on the same CPUs.
 */
import { join } from 'node:path';
import { cleanup, type TestHost } from '../test/support/cluster-helpers.js';
import { removeDir, waitFor } from '../test/support/processes.js';
import { connect, mustAdm, randomDevice, startCluster, status } from '../test/support/replication-helpers.js';
import { Random } from '../src/core/random.js';
import { runMain, say } from './support.js';

const MiB = 1024 * 1024;

async function rests(host: TestHost, name: string): Promise<{ fetch: number; replay: number }> {
  const r = (await status(host, name)).replica as { fetch: { restBytes: number } | null; replay: { restBytes: number } | null } | null;
  return { fetch: r?.fetch?.restBytes ?? -1, replay: r?.replay?.restBytes ?? -1 };
}

async function main(): Promise<void> {
  const backlogMiB = Number(process.env['BENCH_CATCHUP_MIB'] ?? 512);
  const sizeBytes = 1024 * MiB;
  const { root, hosts } = await startCluster('mars-catchup', 2);
  const [alpha, beta] = hosts as [TestHost, TestHost];
  try {
    await randomDevice(join(root, 'alpha.img'), sizeBytes, 1);
    await randomDevice(join(root, 'beta.img'), sizeBytes, 1);
    await mustAdm(alpha, 'create-resource', 'rc', join(root, 'alpha.img'));
    await mustAdm(beta, 'join-resource', 'rc', join(root, 'beta.img'));
    await waitFor('beta consistent', async () => ((await status(beta, 'rc')).replica as { consistent: boolean } | null)?.consistent === true, 60_000, 100);
    await mustAdm(beta, 'pause-fetch', 'rc');
    const client = await connect(alpha, 'rc');
    const random = new Random(5);
    const data = random.bytes(MiB);
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < backlogMiB; i++) {
      inflight.push(client.write((i % 1024) * MiB, data));
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
    await client.flush();
    await client.close();
    const startMs = performance.now();
    await mustAdm(beta, 'resume-fetch', 'rc');
    let fetchedMs = 0;
    await waitFor('beta to catch up', async () => {
      const r = await rests(beta, 'rc');
      if (r.fetch === 0 && fetchedMs === 0) fetchedMs = performance.now() - startMs;
      return r.fetch === 0 && r.replay === 0;
    }, 300_000, 250);
    const doneMs = performance.now() - startMs;
    say(`catch-up of ${backlogMiB} MiB: fetched in ${(fetchedMs / 1000).toFixed(2)} s (${(backlogMiB / (fetchedMs / 1000)).toFixed(0)} MiB/s), replayed in ${(doneMs / 1000).toFixed(2)} s (${(backlogMiB / (doneMs / 1000)).toFixed(0)} MiB/s)`);
  } finally {
    await cleanup(root, hosts);
    await removeDir(root);
  }
}

runMain(main);
