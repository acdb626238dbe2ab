/**
 * Catch-up: how fast a secondary fetches and replays a backlog while its primary is idle
 * (`node dist/bench/catchup.js`). alpha creates a resource, beta joins and syncs, beta
 * pauses fetch, alpha writes BENCH_CATCHUP_MIB MiB of 1 MiB writes (QD8) and flushes,
 * beta resumes fetch; the bench times fetch-rest and replay-rest reaching 0. This is the
 * fetch and replay pipeline alone, without the primary's write load on the same CPUs.
 * Then each stage alone: beta pauses replay and fetch, alpha writes the backlog again, beta
 * resumes fetch and fetches it (timed, replay paused), then resumes replay (timed, fetch idle). Each figure comes with
 * beta's CPU seconds per GiB (all threads, /proc/PID/stat): on a loaded machine the rates
 * swing with what else runs, the CPU per byte much less. With BENCH_GC_COUNT_DIR set and
 * `NODE_OPTIONS=--import dist/bench/gc-count.js`, each stage also reports beta's full
 * collections per GiB (bench/gc-count.ts). BENCH_MARSD_ARGS: more marsd options for both
 * daemons (e.g. `--compression none`).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cleanup, startTestCluster, type TestHost } from '../test/support/cluster-helpers.js';
import { removeDir, waitFor } from '../test/support/processes.js';
import { connect, mustAdm, randomDevice, status } from '../test/support/replication-helpers.js';
import { Random } from '../src/core/random.js';
import { runMain, say } from './support.js';

const MiB = 1024 * 1024;
/** USER_HZ of /proc/PID/stat. */
const clockTicksPerS = 100;
/** Poll interval while timing a stage alone (the figures are read from `view`). */
const pollMs = 20;

/** CPU seconds (user + system, all threads) a process has used so far. */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / clockTicksPerS;
}

/** Full collections of a process so far, from bench/gc-count.ts (NaN without it). */
async function majorGcs(pid: number | undefined): Promise<number> {
  const dir = process.env['BENCH_GC_COUNT_DIR'];
  if (pid === undefined || dir === undefined || dir === '') return Number.NaN;
  try {
    return (JSON.parse(await readFile(join(dir, `${pid}.json`), 'utf8')) as { major: number }).major;
  } catch {
    return 0; // no collection yet
  }
}

/** "N MiB/s, C s CPU/GiB[, G full GCs/GiB]" of one stage. */
function figure(backlogMiB: number, ms: number, cpuS: number, gcs = Number.NaN): string {
  const gc = Number.isNaN(gcs) ? '' : `, ${((gcs * 1024) / backlogMiB).toFixed(1)} full GCs/GiB`;
  return `${(backlogMiB / (ms / 1000)).toFixed(0)} MiB/s in ${(ms / 1000).toFixed(2)} s, ${((cpuS * 1024) / backlogMiB).toFixed(2)} s CPU/GiB${gc}`;
}

async function rests(host: TestHost, name: string): Promise<{ fetch: number; replay: number }> {
  const r = (await status(host, name)).replica as { fetch: { restBytes: number } | null; replay: { restBytes: number } | null } | null;
  return { fetch: r?.fetch?.restBytes ?? -1, replay: r?.replay?.restBytes ?? -1 };
}

async function main(): Promise<void> {
  const backlogMiB = Number(process.env['BENCH_CATCHUP_MIB'] ?? 512);
  const sizeBytes = 1024 * MiB;
  const marsdArgs = (process.env['BENCH_MARSD_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const { root, hosts } = await startTestCluster('mars-catchup', 2, { marsdArgs: () => marsdArgs });
  const [alpha, beta] = hosts as [TestHost, TestHost];
  try {
    await randomDevice(join(root, 'alpha.img'), sizeBytes, 1);
    await randomDevice(join(root, 'beta.img'), sizeBytes, 1);
    await mustAdm(alpha, 'create-resource', 'rc', join(root, 'alpha.img'));
    await mustAdm(beta, 'join-resource', 'rc', join(root, 'beta.img'));
    await waitFor('beta consistent', async () => ((await status(beta, 'rc')).replica as { consistent: boolean } | null)?.consistent === true, 60_000, 100);
    await mustAdm(beta, 'pause-fetch', 'rc');
    const random = new Random(5);
    const writeBacklog = async (): Promise<void> => {
      const client = await connect(alpha, 'rc');
      const data = random.bytes(MiB);
      const inflight: Promise<void>[] = [];
      for (let i = 0; i < backlogMiB; i++) {
        inflight.push(client.write((i % 1024) * MiB, data));
        if (inflight.length >= 8) await inflight.shift();
      }
      await Promise.all(inflight);
      await client.flush();
      await client.close();
    };
    await writeBacklog();
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

    // Each stage alone.
    const pid = beta.daemon?.child.pid;
    const alphaPid = alpha.daemon?.child.pid;
    await mustAdm(beta, 'pause-replay', 'rc');
    await mustAdm(beta, 'pause-fetch', 'rc'); // the whole backlog is fetched in the timed stage
    await writeBacklog();
    let cpuStart = await cpuSeconds(pid);
    let gcStart = await majorGcs(pid);
    const alphaCpuStart = await cpuSeconds(alphaPid);
    const alphaGcStart = await majorGcs(alphaPid);
    let stageStartMs = performance.now();
    await mustAdm(beta, 'resume-fetch', 'rc');
    await waitFor('beta to fetch', async () => (await rests(beta, 'rc')).fetch === 0, 300_000, pollMs);
    const fetchMs = performance.now() - stageStartMs;
    say(`fetch alone (replay paused): ${figure(backlogMiB, fetchMs, (await cpuSeconds(pid)) - cpuStart, (await majorGcs(pid)) - gcStart)}`);
    say(`  the source (alpha) meanwhile: ${figure(backlogMiB, fetchMs, (await cpuSeconds(alphaPid)) - alphaCpuStart, (await majorGcs(alphaPid)) - alphaGcStart)}`);
    cpuStart = await cpuSeconds(pid);
    gcStart = await majorGcs(pid);
    stageStartMs = performance.now();
    await mustAdm(beta, 'resume-replay', 'rc');
    await waitFor('beta to replay', async () => (await rests(beta, 'rc')).replay === 0, 300_000, pollMs);
    say(`replay alone (fetch idle): ${figure(backlogMiB, performance.now() - stageStartMs, (await cpuSeconds(pid)) - cpuStart, (await majorGcs(pid)) - gcStart)}`);
  } finally {
    await cleanup(root, hosts);
    await removeDir(root);
  }
}

runMain(main);
