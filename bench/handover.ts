/**
 * `npm run bench`, handover part: three real daemons on loopback (alpha, beta, gamma on
 * 127.0.0.1-3, as in test/roles/), one resource, and a light background writer (4 KiB
 * write + flush, 25 per s by default) on whichever host is its primary:
 * (1) planned handover, `marsadm primary R` on a caught-up secondary, round the three
 *     hosts: the time the daemon reports (`in N ms`), the time marsadm took, and the time
 *     from issuing it until a fresh NBD client on the new primary completes a write and a
 *     flush (a client tries every 10 ms from the moment the command is issued);
 * (2) forced failover: kill -9 the primary, `marsadm primary R --force` on a caught-up
 *     secondary, the same three times; then the killed daemon restarts, rejoins as a
 *     secondary (invalidated if the members report a split brain) and catches up.
 * After each switch the last flushed writes of the writer are read back from the new
 * primary: a planned handover must have all of them, a forced one says how many it lost.
 * Settings (docs/benchmarks.md): BENCH_DIR, BENCH_HANDOVER_COUNT (20),
 * BENCH_FAILOVER_COUNT (5), BENCH_HANDOVER_WRITES_PER_S (25), BENCH_HANDOVER_RESULTS
 * (default dist/bench-handover.json).
 * Everything started here is stopped by PID; the temporary directory is removed.
 * Wall-clock time is read here on purpose.
 */
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { NbdClient } from '../src/nbd/client.js';
import { cleanup as stopCluster, createCluster, joinCluster, newHost, start, waitHosts, type TestHost } from '../test/support/cluster-helpers.js';
import { marsadm, repoRoot, sparseFile } from '../test/support/processes.js';
import { connect, MiB, mustAdm, status, type ReplStatus } from '../test/support/replication-helpers.js';
import { onCleanup, runMain, say, sleep, table, writeResults } from './support.js';

const resourceName = 'rh';
const sizeBytes = 64 * MiB;
const blockBytes = 4096;
/** The writer's blocks go round the device below this; the probes write above it. */
const probeAreaBytes = MiB;
const ringBlocks = (sizeBytes - probeAreaBytes) / blockBytes;
const probeBlocks = probeAreaBytes / blockBytes;
/** How many of the writer's last flushed writes are read back after each switch. */
const verifyWritesMax = 100;
const handoverCountDefault = 20;
const failoverCountDefault = 5;
const writesPerSDefault = 25;
/** How long the writer runs on each primary before the next switch. */
const loadMs = 1000;
const pollMs = 20;
const probeRetryMs = 10;
/** Bounds: catching up, a switch, a restarted host rejoining (with a resync if invalidated). */
const catchUpMsMax = 60_000;
const switchTimeoutS = 30;
const rejoinMsMax = 120_000;
const stopMsMax = 10_000;
/** Runs of a marsadm command the daemon answers at once, for the cost of starting marsadm. */
const baselineRuns = 5;
/** The aim: a planned handover, until the new primary serves a write + flush. */
const aimHandoverMs = 1000;

interface Config {
  readonly parentDir: string;
  readonly handoverCount: number;
  readonly failoverCount: number;
  readonly writesPerS: number;
  readonly resultsPath: string;
}

/** One switch of the primary role. */
interface SwitchRun {
  readonly from: string;
  readonly to: string;
  /** What the daemon reported: `... in N ms`. */
  readonly daemonMs: number;
  /** marsadm from spawn to exit (includes starting Node). */
  readonly commandMs: number;
  /** From issuing the command until a fresh client's write + flush on the new primary completed. */
  readonly serveMs: number;
  /** Before a planned handover: from the writer's close until the target had replayed everything. */
  readonly catchUpMs: number;
  /** Of the writer's last flushed writes (at most verifyWritesMax, all on the old primary), how many the new primary did not have. */
  readonly lostWrites: number;
  readonly checkedWrites: number;
  /** Attempts refused because the old primary still reported NBD clients (then retried with --wait). */
  readonly refused: number;
  /** Forced only: what marsadm said it knew it was missing. */
  readonly missingBytes?: number;
  /** Forced only: the killed host's restart until every secondary had caught up, and what it took. */
  readonly rejoinMs?: number;
  readonly invalidated?: readonly string[];
  readonly splitBrain?: SplitBrainJson | null;
}

interface SplitBrainJson {
  readonly atLog: number;
  readonly sides: readonly { readonly origin: string; readonly hosts: readonly string[] }[];
  readonly reports: readonly { readonly host: string; readonly reason: string }[];
}

type ViewStatus = ReplStatus & { readonly splitBrain?: SplitBrainJson | null };





function positiveInt(name: string, fallback: number, min: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`bad ${name} ${text}: a whole number, at least ${min}`);
  return n;
}

function readConfig(): Config {
  const dir = process.env['BENCH_DIR'];
  return {
    parentDir: resolve(dir === undefined || dir === '' ? tmpdir() : dir),
    handoverCount: positiveInt('BENCH_HANDOVER_COUNT', handoverCountDefault, 1),
    failoverCount: positiveInt('BENCH_FAILOVER_COUNT', failoverCountDefault, 0),
    writesPerS: positiveInt('BENCH_HANDOVER_WRITES_PER_S', writesPerSDefault, 1),
    resultsPath: resolve(process.env['BENCH_HANDOVER_RESULTS'] ?? join(repoRoot, 'dist', 'bench-handover.json')),
  };
}


function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function maxOf(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : Math.max(...values);
}


// ---- the background writer ----

/** The content of the writer's write number `counter`: the run's tag and the counter, repeated. */
function blockFor(tag: number, counter: number): Buffer {
  const block = Buffer.allocUnsafe(blockBytes);
  for (let at = 0; at < blockBytes; at += 8) {
    block.writeUInt32LE(tag, at);
    block.writeUInt32LE(counter, at + 4);
  }
  return block;
}

function offsetOf(counter: number): number {
  return (counter % ringBlocks) * blockBytes;
}

/**
 * One NBD connection to the current primary, one 4 KiB write + flush every 1/writesPerS
 * seconds, writes numbered and placed round the device so that the last ones can be read
 * back. A failed request (the primary was killed) ends the session.
 */
class BackgroundWriter {
  /** Every write up to this number has been flushed (-1: none yet). */
  flushedCounter = -1;
  /** The first write of the current session: only those were written on the current primary. */
  sessionFirstCounter = 0;
  failedRequests = 0;
  private nextCounter = 0;
  private client: NbdClient | undefined;
  private loop: Promise<void> | undefined;
  private running = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly tag: number,
    private readonly intervalMs: number,
  ) {}

  async start(host: TestHost): Promise<void> {
    if (this.loop !== undefined) throw new Error('the writer is already running');
    const client = await connect(host, resourceName);
    this.client = client;
    this.running = true;
    this.sessionFirstCounter = this.nextCounter;
    this.loop = this.run(client);
  }

  /** Lets the write in flight finish and closes the connection; `abandon` drops it instead (its server is gone). */
  async stop(abandon = false): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    const client = this.client;
    this.loop = undefined;
    this.client = undefined;
    if (client === undefined) return;
    if (abandon) client.destroy();
    else await client.close();
  }

  private async run(client: NbdClient): Promise<void> {
    let dueMs = performance.now();
    while (this.running) {
      const counter = this.nextCounter++;
      try {
        await client.write(offsetOf(counter), blockFor(this.tag, counter));
        await client.flush();
        this.flushedCounter = counter;
      } catch {
        this.failedRequests++;
        this.running = false;
        return;
      }
      dueMs += this.intervalMs;
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, Math.max(0, dueMs - performance.now()));
      });
      this.wake = undefined;
    }
  }
}

/** Reads the writer's last flushed writes of its last session back from `host`: how many are not there. */
async function lostWrites(host: TestHost, writer: BackgroundWriter): Promise<{ lost: number; checked: number }> {
  const first = Math.max(writer.sessionFirstCounter, writer.flushedCounter - verifyWritesMax + 1);
  const counters: number[] = [];
  for (let c = first; c <= writer.flushedCounter; c++) counters.push(c);
  const client = await connect(host, resourceName);
  try {
    const blocks = await Promise.all(counters.map((c) => client.read(offsetOf(c), blockBytes)));
    const lost = blocks.filter((b, i) => !b.equals(blockFor(writer.tag, counters[i]!))).length;
    return { lost, checked: counters.length };
  } finally {
    await client.close();
  }
}

// ---- switching the primary ----

/** Has `secondary` replayed everything `primary` logged (as waitCaughtUp in test/support, polled faster)? */
async function caughtUp(primary: TestHost, secondary: TestHost): Promise<boolean> {
  const want = (await status(primary, resourceName)).logger?.logPosition.nextSeq;
  const r = (await status(secondary, resourceName)).replica;
  return want !== undefined && r !== null && r !== undefined && r.consistent && r.fetch.state === 'caught-up' && r.replay.position?.nextSeq === want && r.replay.restBytes === 0;
}

async function waitCaughtUp(primary: TestHost, secondary: TestHost): Promise<number> {
  const startMs = performance.now();
  const deadline = startMs + catchUpMsMax;
  while (!(await caughtUp(primary, secondary))) {
    if (performance.now() > deadline) throw new Error(`${secondary.name} did not catch up with ${primary.name} within ${catchUpMsMax} ms`);
    await sleep(pollMs);
  }
  return performance.now() - startMs;
}

/** Tries a fresh client's write + flush on `host` every 10 ms; resolves with the time from `startMs` of the first that completes. */
async function firstWrite(host: TestHost, startMs: number, probe: number, stopped: () => boolean): Promise<number> {
  const deadline = startMs + switchTimeoutS * 1000;
  const offset = sizeBytes - probeAreaBytes + (probe % probeBlocks) * blockBytes;
  const data = Buffer.alloc(blockBytes, probe & 0xff);
  while (performance.now() < deadline && !stopped()) {
    let client: NbdClient | undefined;
    try {
      client = await connect(host, resourceName);
      await client.write(offset, data);
      await client.flush();
      const ms = performance.now() - startMs;
      await client.close();
      return ms;
    } catch {
      client?.destroy();
      await sleep(probeRetryMs);
    }
  }
  return Number.NaN;
}

interface PrimaryResult {
  readonly daemonMs: number;
  readonly commandMs: number;
  readonly serveMs: number;
  readonly refused: number;
  readonly missingBytes?: number;
}

/** `marsadm primary R [--force]` on `host`, timed three ways; a refusal for open NBD clients is retried with --wait. */
async function makePrimary(host: TestHost, force: boolean, probe: number): Promise<PrimaryResult> {
  const args = ['primary', resourceName, '--timeout', String(switchTimeoutS), ...(force ? ['--force'] : [])];
  const startMs = performance.now();
  let failed = false;
  const serving = firstWrite(host, startMs, probe, () => failed);
  let refused = 0;
  let r = await marsadm(host.dir, ...args);
  if (r.code !== 0 && /NBD connection/.test(r.stderr)) {
    refused++;
    r = await marsadm(host.dir, ...args, '--wait');
  }
  const commandMs = performance.now() - startMs;
  failed = r.code !== 0;
  const serveMs = await serving;
  if (failed) throw new Error(`${args.join(' ')} on ${host.name} exited ${r.code}: ${r.stderr.trim()}`);
  const tookMs = /, in (\d+) ms/.exec(r.stdout)?.[1];
  if (tookMs === undefined) throw new Error(`unexpected output of ${args.join(' ')} on ${host.name}: ${r.stdout.trim()}`);
  if (Number.isNaN(serveMs)) throw new Error(`${host.name} did not take a write + flush within ${switchTimeoutS} s of ${args.join(' ')}`);
  const missing = /missing at least (\d+) bytes/.exec(r.stdout)?.[1];
  return { daemonMs: Number(tookMs), commandMs, serveMs, refused, ...(missing === undefined ? {} : { missingBytes: Number(missing) }) };
}

// ---- the two parts ----

async function currentPrimary(hosts: readonly TestHost[]): Promise<TestHost> {
  const name = (await status(hosts.find((h) => h.daemon !== undefined)!, resourceName)).primary;
  const host = hosts.find((h) => h.name === name);
  if (host === undefined) throw new Error(`no primary designated for ${resourceName}`);
  return host;
}

function nextHost(hosts: readonly TestHost[], from: TestHost): TestHost {
  return hosts[(hosts.indexOf(from) + 1) % hosts.length]!;
}

/** N planned handovers round the hosts: load, writer closed, target caught up, `primary R`. */
async function handoverPart(config: Config, hosts: readonly TestHost[], writer: BackgroundWriter): Promise<SwitchRun[]> {
  const runs: SwitchRun[] = [];
  let from = await currentPrimary(hosts);
  for (let i = 0; i < config.handoverCount; i++) {
    const to = nextHost(hosts, from);
    await writer.start(from);
    await sleep(loadMs);
    await writer.stop();
    const catchUpMs = await waitCaughtUp(from, to);
    const result = await makePrimary(to, false, i);
    const check = await lostWrites(to, writer);
    if (check.lost > 0) throw new Error(`planned handover ${from.name} -> ${to.name}: ${check.lost} of the last ${check.checked} flushed writes are missing on ${to.name}`);
    runs.push({ from: from.name, to: to.name, catchUpMs, lostWrites: check.lost, checkedWrites: check.checked, ...result });
    say(`  ${String(i + 1).padStart(2)}. ${from.name} -> ${to.name}: daemon ${result.daemonMs} ms, marsadm ${result.commandMs.toFixed(0)} ms, write+flush after ${result.serveMs.toFixed(0)} ms${result.refused > 0 ? ' (refused once: NBD clients still reported; retried with --wait)' : ''}`);
    from = to;
  }
  return runs;
}

function describeSplit(s: SplitBrainJson): string {
  const sides = s.sides.map((side) => `${side.hosts.join('+')} on ${side.origin}'s log`).join(' vs ');
  const reports = s.reports.map((r) => `${r.host}: ${r.reason}`).join('; ');
  return `split brain at log ${s.atLog}${sides === '' ? '' : `: ${sides}`}${reports === '' ? '' : ` (${reports})`}`;
}

/** The hosts a split brain puts on a side without `primary`, and those whose fetch reported it. */
function losingHosts(split: SplitBrainJson, primary: TestHost): string[] {
  const losing = new Set<string>();
  for (const side of split.sides) if (!side.hosts.includes(primary.name)) side.hosts.forEach((h) => losing.add(h));
  for (const report of split.reports) losing.add(report.host);
  losing.delete(primary.name);
  return [...losing];
}

async function statusIfKnown(host: TestHost): Promise<ViewStatus | undefined> {
  try {
    return await status(host, resourceName);
  } catch {
    return undefined;
  }
}

/** After a failover: until every secondary has caught up with `primary`, invalidating (once each) the hosts on the losing side of a split brain. */
async function rejoin(hosts: readonly TestHost[], primary: TestHost): Promise<{ invalidated: string[]; splitBrain: SplitBrainJson | null }> {
  const invalidated: string[] = [];
  let seen: SplitBrainJson | null = null;
  const deadline = performance.now() + rejoinMsMax;
  const secondaries = hosts.filter((h) => h !== primary);
  for (;;) {
    const split = (await statusIfKnown(primary))?.splitBrain ?? null;
    seen ??= split;
    for (const name of split === null ? [] : losingHosts(split, primary)) {
      if (invalidated.includes(name)) continue;
      await mustAdm(hosts.find((h) => h.name === name)!, 'invalidate', resourceName);
      invalidated.push(name);
    }
    const done = await Promise.all(secondaries.map((s) => caughtUp(primary, s).catch(() => false)));
    if (done.every(Boolean)) return { invalidated, splitBrain: seen };
    if (performance.now() > deadline) throw new Error(`the secondaries did not catch up with ${primary.name} within ${rejoinMsMax} ms after a failover (split brain: ${JSON.stringify(split)})`);
    await sleep(pollMs * 5);
  }
}

/** N forced failovers: load, target caught up, kill -9 the primary, `primary R --force`, restart, rejoin. */
async function failoverPart(config: Config, hosts: readonly TestHost[], writer: BackgroundWriter): Promise<SwitchRun[]> {
  const runs: SwitchRun[] = [];
  let from = await currentPrimary(hosts);
  for (let i = 0; i < config.failoverCount; i++) {
    const to = nextHost(hosts, from);
    await writer.start(from);
    await sleep(loadMs);
    const catchUpMs = await waitCaughtUp(from, to);
    await from.daemon!.kill9();
    from.daemon = undefined;
    await writer.stop(true);
    const result = await makePrimary(to, true, config.handoverCount + i);
    const check = await lostWrites(to, writer);
    const restartMs = performance.now();
    await start(from);
    const { invalidated, splitBrain } = await rejoin(hosts, to);
    const rejoinMs = performance.now() - restartMs;
    runs.push({ from: from.name, to: to.name, catchUpMs, lostWrites: check.lost, checkedWrites: check.checked, rejoinMs, invalidated, splitBrain, ...result });
    const lost = `${check.lost} of the last ${check.checked} flushed writes lost`;
    const split = splitBrain === null ? 'no split brain' : `${describeSplit(splitBrain)}; invalidated ${invalidated.join(' ')}`;
    say(`  ${String(i + 1).padStart(2)}. kill -9 ${from.name}, --force on ${to.name}: daemon ${result.daemonMs} ms, marsadm ${result.commandMs.toFixed(0)} ms, write+flush after ${result.serveMs.toFixed(0)} ms; ${lost}; ${from.name} back and all caught up after ${(rejoinMs / 1000).toFixed(1)} s (${split})`);
    from = to;
  }
  return runs;
}

// ---- setup, report, main ----

async function startHosts(root: string, hosts: TestHost[]): Promise<void> {
  for (const [i, name] of ['alpha', 'beta', 'gamma'].entries()) hosts.push(await newHost(root, name, `127.0.0.${i + 1}`));
  const [first, ...rest] = hosts;
  await createCluster(first!);
  await start(first!);
  for (const h of rest) {
    const joined = await joinCluster(h, first!);
    if (joined.code !== 0) throw new Error(`join-cluster ${h.name}: ${joined.stderr.trim()}`);
    await start(h);
  }
  const all = Object.fromEntries(hosts.map((h) => [h.name, 'alive']));
  for (const h of hosts) await waitHosts(h, all);
  await mustAdm(first!, 'create-resource', resourceName, await sparseFile(join(root, `${first!.name}.img`), sizeBytes));
  for (const h of rest) await mustAdm(h, 'join-resource', resourceName, await sparseFile(join(root, `${h.name}.img`), sizeBytes));
  for (const h of rest) await waitCaughtUp(first!, h);
}

function figureRows(runs: readonly SwitchRun[], catchUpLabel: string): string[][] {
  const row = (label: string, values: number[]): string[] => [label, median(values).toFixed(0), maxOf(values).toFixed(0)];
  return [
    ['', 'median ms', 'max ms'],
    row('(a) the daemon reports ("in N ms")', runs.map((r) => r.daemonMs)),
    row('(b) issued until a fresh client wrote + flushed on the new primary', runs.map((r) => r.serveMs)),
    row('    marsadm primary, spawn to exit (includes starting Node)', runs.map((r) => r.commandMs)),
    row(`    before it: the target caught up (${catchUpLabel})`, runs.map((r) => r.catchUpMs)),
  ];
}

/** How long marsadm takes for a command the daemon answers at once (`view-primarynode`): starting Node and marsadm, one control call. */
async function commandBaselineMs(host: TestHost): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < baselineRuns; i++) {
    const startMs = performance.now();
    await mustAdm(host, 'view-primarynode', resourceName);
    times.push(performance.now() - startMs);
  }
  return times;
}

function report(config: Config, handovers: readonly SwitchRun[], failovers: readonly SwitchRun[], baselineMs: readonly number[]): void {
  say();
  say(`planned handover (primary ${resourceName}), ${handovers.length} times round the three hosts, ${config.writesPerS} writes/s between:`);
  say(table(figureRows(handovers, 'polled every 20 ms from the writer\'s close')));
  const refused = handovers.reduce((n, r) => n + r.refused, 0);
  say(`flushed writes read back on the new primary: ${handovers.reduce((n, r) => n + r.checkedWrites, 0)}, all present; refused for NBD clients still reported: ${refused}`);
  if (failovers.length > 0) {
    say();
    say(`forced failover (kill -9 the primary, primary ${resourceName} --force on a caught-up secondary), ${failovers.length} times:`);
    say(table(figureRows(failovers, 'polled every 20 ms, the writer still writing')));
    const lost = failovers.map((r) => `${r.lostWrites}/${r.checkedWrites}`).join(', ');
    const rejoin = failovers.map((r) => ((r.rejoinMs ?? 0) / 1000).toFixed(1)).join(', ');
    say(`flushed writes lost (of the last ones read back): ${lost}; --force said missing bytes: ${failovers.map((r) => r.missingBytes ?? 0).join(', ')}`);
    say(`split brains: ${failovers.filter((r) => (r.splitBrain ?? null) !== null).length} of ${failovers.length}; restart until all caught up: ${rejoin} s`);
  }
  say();
  say(`for comparison, marsadm view-primarynode (answered at once by the daemon), ${baselineMs.length} times: median ${median(baselineMs).toFixed(0)} ms, max ${maxOf(baselineMs).toFixed(0)} ms`);
  const serve = handovers.map((r) => r.serveMs);
  const met = maxOf(serve) < aimHandoverMs;
  say(`aim: planned handover until the new primary serves well under ${aimHandoverMs} ms: median ${median(serve).toFixed(0)} ms, max ${maxOf(serve).toFixed(0)} ms: ${met ? 'met' : 'missed'}`);
}

async function main(): Promise<void> {
  const config = readConfig();
  const startedMs = performance.now();
  const root = await mkdtemp(join(config.parentDir, 'mars-bench-handover-'));
  const hosts: TestHost[] = [];
  const writer = new BackgroundWriter(Date.now() >>> 0, 1000 / config.writesPerS);
  const cleanup = onCleanup(async () => {
    await Promise.race([writer.stop(true), sleep(stopMsMax)]);
    await stopCluster(root, hosts);
  });
  try {
    say(`handover bench: ${root}; device ${sizeBytes / MiB} MiB; background writer ${config.writesPerS} x 4 KiB write + flush per s; node ${process.version}, ${cpus().length} CPUs`);
    await startHosts(root, hosts);
    say(`planned handovers (the writer runs ${loadMs} ms on each primary, closes, the target catches up, then primary ${resourceName}):`);
    const handovers = await handoverPart(config, hosts, writer);
    if (config.failoverCount > 0) say('forced failovers:');
    const failovers = await failoverPart(config, hosts, writer);
    const baselineMs = await commandBaselineMs(await currentPrimary(hosts));
    report(config, handovers, failovers, baselineMs);
    const totalS = (performance.now() - startedMs) / 1000;
    say(`total ${totalS.toFixed(0)} s`);
    const results = { date: new Date().toISOString(), cpus: cpus().length, node: process.version, config, totalS, handovers, failovers, commandBaselineMs: baselineMs };
    await writeResults(config.resultsPath, results);
    say(`results written to ${config.resultsPath}`);
  } finally {
    await cleanup();
  }
}

runMain(main);
