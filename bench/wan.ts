/**
 * `npm run bench`, long-distance part: two real daemons (alpha primary, beta secondary on
 * 127.0.0.1-2) whose peer traffic crosses the link emulator (test/support/link-emulator.ts)
 * at 100 ms round trip and 100 Mbit/s each way. In one run:
 * (a) the primary's write latency (4 KiB writes, QD1, paced) with no secondary and with
 *     beta attached and fetching: p50, p99 and the ratio of the p99s;
 * (b) fetch throughput against the link's capacity: beta pauses fetch, alpha writes a
 *     backlog, beta resumes; log bytes per second until fetch-rest is 0, for compressible
 *     (half of each 4 KiB block zeroes, like fio's buffer_compress_percentage=50) and for
 *     random data; also bytes on the wire per byte of log (the daemons pick lz4); the
 *     daemons fetch over BENCH_WAN_CONNECTIONS (default 4) parallel connections, and a
 *     third run caps each connection at a quarter of the link (as one TCP window over a
 *     long round trip would): one connection could reach at most 0.25 of the capacity;
 * (c) each compression on the compressible log's real bytes, in 1 MiB chunks as the fetch
 *     server sends them: bytes out per byte in, and CPU ms per MiB (process CPU, thread
 *     pool included);
 * (d) catch-up after an outage: alpha writes random data at 50 % of the link's capacity;
 *     the link is blackholed for BENCH_WAN_OUTAGE_S (default 60) s; the time from the end
 *     of the outage until beta has fetched everything written until then;
 * (e) near-sync FLUSH latency against the round trip: 4 KiB write + FLUSH at QD1, in
 *     asynchronous and in near-sync mode (K = 1), with the link's delay set to several
 *     round trips in turn (100 Mbit/s each).
 * Settings: BENCH_WAN_OUTAGE_S, BENCH_WAN_BACKLOG_MIB (default 64), BENCH_WAN_RESULTS
 * (JSON, default dist/bench-wan.json). Everything started is stopped by PID; the
 * temporary directory is removed. Wall-clock time is read here on purpose.
 */
import { join, resolve } from 'node:path';
import { Random } from '../src/core/random.js';
import { availableCompressions, Compressor, type CompressionName } from '../src/compress/index.js';
import type { NbdClient } from '../src/nbd/client.js';
import { cleanup as stopCluster } from '../test/support/cluster-helpers.js';
import { wanSpec } from '../test/support/link-emulator.js';
import { repoRoot, sparseFile, waitFor } from '../test/support/processes.js';
import { connect, mustAdm, status, waitCaughtUp } from '../test/support/replication-helpers.js';
import { startWanCluster, type WanCluster } from '../test/support/wan-helpers.js';
import { onCleanup, runMain, say, sleep, table, writeResults } from './support.js';
import { readFile } from 'node:fs/promises';
import { parseLogName } from '../src/log/index.js';

const MiB = 1024 * 1024;
const rttMs = 100;
const linkMbit = 100;
const linkBytesPerS = (linkMbit * 1_000_000) / 8;
const sizeBytes = 512 * MiB;
const resource = 'rw';
const latencyWrites = 400;
const latencyGapMs = 10;
const writeBytes = 256 * 1024;
/** (e): the round trips near-sync is measured at, and the flushes per mode and round trip. */
const nearSyncRttsMs = [10, 50, 100, 200];
const flushSamples = 40;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Half random, half zeroes per 4 KiB block. */
function halfCompressible(random: Random, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += 4096) random.bytes(Math.min(2048, bytes - at)).copy(out, at);
  return out;
}

async function latencies(client: NbdClient, random: Random): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 0; i < latencyWrites; i++) {
    const data = random.bytes(4096);
    const at = random.int(sizeBytes / 4096) * 4096;
    const t0 = performance.now();
    await client.write(at, data);
    samples.push(performance.now() - t0);
    await sleep(latencyGapMs);
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/** (e): the latency of a 4 KiB write followed by a FLUSH, at QD1. */
async function flushLatencies(client: NbdClient, random: Random, count: number): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const data = random.bytes(4096);
    const at = random.int(sizeBytes / 4096) * 4096;
    const t0 = performance.now();
    await client.write(at, data);
    await client.flush();
    samples.push(performance.now() - t0);
    await sleep(latencyGapMs);
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

async function writeBacklog(client: NbdClient, bytes: number, make: () => Buffer): Promise<void> {
  const inflight: Promise<void>[] = [];
  for (let at = 0; at < bytes; at += writeBytes) {
    inflight.push(client.write(at % sizeBytes, make()));
    if (inflight.length >= 8) await inflight.shift();
  }
  await Promise.all(inflight);
  await client.flush();
}

async function logBytes(cluster: WanCluster): Promise<number> {
  return (await status(cluster.hosts[0]!, resource)).logFiles.reduce((sum, f) => sum + f.sizeBytes, 0);
}

/** (b): a backlog written while fetch is paused, then fetched: log bytes/s and wire bytes per log byte. */
async function backlogRun(cluster: WanCluster, client: NbdClient, bytes: number, make: () => Buffer): Promise<{ logBytes: number; seconds: number; steadySeconds: number; wireBytes: number; logName: string }> {
  const [alpha, beta] = cluster.hosts as [WanCluster['hosts'][0], WanCluster['hosts'][0]];
  await waitCaughtUp(alpha, beta, resource, 120_000);
  await mustAdm(beta, 'pause-fetch', resource);
  await mustAdm(alpha, 'log-rotate', resource);
  const logName = (await status(alpha, resource)).logFiles.at(-1)!.name;
  const before = await logBytes(cluster);
  await writeBacklog(client, bytes, make);
  const added = (await logBytes(cluster)) - before;
  const wireBefore = cluster.emulator.deliveredBytes('127.0.0.1', '127.0.0.2');
  const t0 = performance.now();
  await mustAdm(beta, 'resume-fetch', resource);
  // The first byte of the backlog's log file marks the end of reconnect, LIST and FETCH.
  let firstMs = 0;
  await waitFor('the backlog to be fetched', async () => {
    const f = (await status(beta, resource)).replica?.fetch;
    if (firstMs === 0 && f?.logName === logName && f.localBytes > 0) firstMs = performance.now();
    return f !== undefined && f.restBytes === 0 && f.state === 'caught-up';
  }, 600_000, 20);
  const endMs = performance.now();
  const seconds = (endMs - t0) / 1000;
  return { logBytes: added, seconds, steadySeconds: (endMs - (firstMs || t0)) / 1000, wireBytes: cluster.emulator.deliveredBytes('127.0.0.1', '127.0.0.2') - wireBefore, logName };
}

/** (c): every compression over the same log bytes, chunk by chunk. */
async function codecTable(sample: Buffer): Promise<{ name: CompressionName; ratio: number; cpuMsPerMiB: number; wallMsPerMiB: number }[]> {
  const rows = [];
  for (const name of ['none', ...availableCompressions()] as CompressionName[]) {
    const c = new Compressor(name);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let out = 0;
    for (let at = 0; at < sample.length; at += MiB) {
      const chunk = sample.subarray(at, Math.min(sample.length, at + MiB));
      out += (await c.compress(chunk))?.length ?? chunk.length;
    }
    const cpu = process.cpuUsage(cpu0);
    const mib = sample.length / MiB;
    rows.push({ name, ratio: out / sample.length, cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / mib, wallMsPerMiB: (performance.now() - t0) / mib });
  }
  return rows;
}

async function main(): Promise<void> {
  const outageS = Number(process.env['BENCH_WAN_OUTAGE_S'] ?? 60);
  const backlogMiB = Number(process.env['BENCH_WAN_BACKLOG_MIB'] ?? 64);
  const resultsPath = resolve(repoRoot, process.env['BENCH_WAN_RESULTS'] ?? 'dist/bench-wan.json');
  say(`WAN: emulated link ${rttMs} ms round trip, ${linkMbit} Mbit/s each way (link emulator, loopback)`);
  let started: WanCluster | undefined;
  const stop = onCleanup(async () => {
    if (started === undefined) return;
    await stopCluster(started.root, started.hosts);
    await started.emulator.close();
  });
  const connections = Number(process.env['BENCH_WAN_CONNECTIONS'] ?? 4);
  const cluster = await startWanCluster('mars-bench-wan', 2, wanSpec(rttMs, linkMbit), 20_261_206, ['--parallel-connections', String(connections)], (c) => (started = c));
  const [alpha, beta] = cluster.hosts as [WanCluster['hosts'][0], WanCluster['hosts'][0]];
  let client: NbdClient | undefined;
  try {
    await sparseFile(join(cluster.root, 'alpha.img'), sizeBytes);
    await sparseFile(join(cluster.root, 'beta.img'), sizeBytes);
    await mustAdm(alpha, 'create-resource', resource, join(cluster.root, 'alpha.img'));
    client = await connect(alpha, resource);
    const random = new Random(7);

    // (a)
    const alone = await latencies(client, random);
    await mustAdm(beta, 'join-resource', resource, join(cluster.root, 'beta.img'));
    await waitFor('beta consistent', async () => (await status(beta, resource)).replica?.consistent === true, 300_000, 200);
    await waitCaughtUp(alpha, beta, resource, 120_000);
    const attached = await latencies(client, random);
    say('');
    say('(a) primary write latency, 4 KiB writes at QD1 (ms)');
    say(table([
      ['', 'p50', 'p99'],
      ['no secondary', alone.p50.toFixed(2), alone.p99.toFixed(2)],
      ['secondary attached over the link', attached.p50.toFixed(2), attached.p99.toFixed(2)],
      ['ratio attached / none', (attached.p50 / alone.p50).toFixed(2), (attached.p99 / alone.p99).toFixed(2)],
    ]));

    // (e), while the link is quiet and beta caught up.
    const link = cluster.emulator.link('127.0.0.1', '127.0.0.2');
    const nearSyncRows: { rttMs: number; async: { p50: number; p99: number }; nearSync: { p50: number; p99: number } }[] = [];
    for (const rtt of nearSyncRttsMs) {
      link.forward.spec = wanSpec(rtt, linkMbit);
      link.backward.spec = wanSpec(rtt, linkMbit);
      await mustAdm(alpha, 'set-sync-mode', resource, 'async');
      const asyncFlush = await flushLatencies(client, random, flushSamples);
      await mustAdm(alpha, 'set-sync-mode', resource, 'near-sync', '--members', '1', '--timeout-ms', '10000');
      await waitFor('beta to know near-sync', async () => (await status(beta, resource)).syncMode?.mode === 'near-sync', 30_000, 50);
      await flushLatencies(client, random, 3); // beta's first acknowledgements
      const nearSync = await flushLatencies(client, random, flushSamples);
      const fellBack = (await status(alpha, resource)).syncMode?.fallbacks ?? 0;
      if (fellBack > 0) throw new Error(`near-sync fell back during the measurement at ${rtt} ms`);
      nearSyncRows.push({ rttMs: rtt, async: asyncFlush, nearSync });
    }
    await mustAdm(alpha, 'set-sync-mode', resource, 'async');
    link.forward.spec = wanSpec(rttMs, linkMbit);
    link.backward.spec = wanSpec(rttMs, linkMbit);
    say('');
    say(`(e) 4 KiB write + FLUSH at QD1 (ms), asynchronous and near-sync (1 member), ${flushSamples} each`);
    say(table([
      ['RTT', 'async p50', 'async p99', 'near-sync p50', 'near-sync p99', 'near-sync p50 / RTT'],
      ...nearSyncRows.map((r) => [String(r.rttMs), r.async.p50.toFixed(2), r.async.p99.toFixed(2), r.nearSync.p50.toFixed(2), r.nearSync.p99.toFixed(2), (r.nearSync.p50 / r.rttMs).toFixed(2)]),
    ]));

    // (b)
    const compressible = await backlogRun(cluster, client, backlogMiB * MiB, () => halfCompressible(random, writeBytes));
    const randomRun = await backlogRun(cluster, client, backlogMiB * MiB, () => random.bytes(writeBytes));
    const capped = { ...wanSpec(rttMs, linkMbit), connectionRateBitsPerS: (linkMbit * 1_000_000) / 4 };
    link.forward.spec = capped;
    link.backward.spec = capped;
    const cappedRun = await backlogRun(cluster, client, backlogMiB * MiB, () => random.bytes(writeBytes));
    link.forward.spec = wanSpec(rttMs, linkMbit);
    link.backward.spec = wanSpec(rttMs, linkMbit);
    const rowB = (label: string, r: { logBytes: number; seconds: number; steadySeconds: number; wireBytes: number }): string[] => [
      label,
      (r.logBytes / MiB).toFixed(0),
      r.seconds.toFixed(2),
      r.steadySeconds.toFixed(2),
      (r.logBytes / r.steadySeconds / MiB).toFixed(2),
      (r.logBytes / r.steadySeconds / linkBytesPerS).toFixed(2),
      (r.wireBytes / r.steadySeconds / linkBytesPerS).toFixed(2),
      (r.wireBytes / r.logBytes).toFixed(3),
    ];
    say('');
    say(`(b) fetch of a backlog over the link (capacity ${(linkBytesPerS / MiB).toFixed(2)} MiB/s) over ${connections} connection(s); the daemons chose ${(await status(beta, resource)).replica?.fetch.compression ?? '?'}`);
    say(table([
      ['data', 'log MiB', 's from resume', 's from 1st byte', 'log MiB/s', 'log / capacity', 'wire / capacity', 'wire / log'],
      rowB('compressible (50 %)', compressible),
      rowB('random', randomRun),
      rowB('random, each connection capped at 1/4 of the link', cappedRun),
    ]));

    // (c): the compressible backlog's log bytes, as the server reads them.
    const whole = await readFile(join(alpha.dir, `resource-${resource}`, compressible.logName));
    const codecs = await codecTable(whole.subarray(0, Math.min(whole.length, 32 * MiB)));
    say('');
    say('(c) compression of the compressible log, 1 MiB chunks (bytes out per byte in; CPU ms per MiB, thread pool included)');
    say(table([['algorithm', 'out / in', 'CPU ms/MiB', 'wall ms/MiB'], ...codecs.map((c) => [c.name, c.ratio.toFixed(3), c.cpuMsPerMiB.toFixed(2), c.wallMsPerMiB.toFixed(2)])]));

    // (d)
    await waitCaughtUp(alpha, beta, resource, 120_000);
    const loadBytesPerS = linkBytesPerS / 2;
    const gapMs = (writeBytes / loadBytesPerS) * 1000;
    let loading = true;
    const load = (async () => {
      const startMs = performance.now();
      let n = 0;
      while (loading) {
        await client.write((n * writeBytes) % sizeBytes, random.bytes(writeBytes));
        n++;
        const due = startMs + n * gapMs - performance.now();
        if (due > 0) await sleep(due);
      }
      await client.flush();
    })();
    await sleep(5_000);
    link.setBlackhole(true);
    await sleep(outageS * 1000);
    const atHeal = (await status(alpha, resource)).logger!.logPosition;
    link.setBlackhole(false);
    const healedMs = performance.now();
    await waitFor('beta to fetch what was written until the heal', async () => {
      const f = (await status(beta, resource)).replica?.fetch;
      const n = f?.logName === null || f === undefined ? 0 : (parseLogName(f.logName)?.logNumber ?? 0);
      return n > atHeal.logNumber || (n === atHeal.logNumber && f!.localBytes >= atHeal.offsetBytes);
    }, 900_000, 200);
    const catchUpS = (performance.now() - healedMs) / 1000;
    // Then caught up with the load still running: the new writes' backlog shrinks at the spare half of the link.
    await waitFor('beta to be caught up under load', async () => (await status(beta, resource)).replica?.fetch.state === 'caught-up', 900_000, 100);
    const caughtUpS = (performance.now() - healedMs) / 1000;
    loading = false;
    await load;
    const outageBacklogMiB = (outageS * loadBytesPerS) / MiB;
    say('');
    say(`(d) outage of ${outageS} s at 50 % load (${(loadBytesPerS / MiB).toFixed(2)} MiB/s of random writes, about ${outageBacklogMiB.toFixed(0)} MiB of backlog):`);
    say(`    ${catchUpS.toFixed(1)} s from the end of the outage until beta held everything written until then (ideal ${(outageS * 0.5).toFixed(0)} s: the backlog at the link's rate)`);
    say(`    ${caughtUpS.toFixed(1)} s until fetch was caught up with the load still running (ideal ${outageS} s: the backlog at the spare half of the link)`);
    await writeResults(resultsPath, { rttMs, linkMbit, latency: { alone, attached, p99Ratio: attached.p99 / alone.p99 }, fetch: { connections, compressible, random: randomRun, cappedRandom: cappedRun, linkBytesPerS }, codecs, outage: { outageS, catchUpS, caughtUpS }, nearSync: nearSyncRows });
    say(`results: ${resultsPath}`);
  } finally {
    await client?.close().catch(() => undefined);
    await stop();
  }
}

runMain(main);
