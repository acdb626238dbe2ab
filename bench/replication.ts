/**
 * `npm run bench`, replication part: real daemons on loopback (hosts alpha, beta, gamma on
 * 127.0.0.1-3, as in test/replication/), in one run:
 * (a) keeping up: the primary's maximum write rate alone (fio, 1 MiB sequential writes at
 *     QD8), then fio paced at 50 % and 100 % of it with a consistent secondary attached,
 *     sampling the primary's log end and the secondary's replay position every 100 ms:
 *     the secondary's apply rate against the primary's write rate, lag in bytes and seconds;
 * (b) full sync: join-resource with a device of other random bytes, MiB/s until the sync is
 *     done, against nbdcopy between two `nbdkit file` exports of the same size;
 * (c) fast full sync of identical disks: the primary's device, written back, copied to the
 *     secondary's before join-resource; bytes the target received as % of the device;
 * (d) only with BENCH_REPL_PARTS=d: the primary's maximum alone, with a secondary fetching
 *     whose state and device share the primary's disk, and with one on tmpfs
 *     (BENCH_REPL_TMPFS_DIR), in BENCH_REPL_ROUNDS interleaved rounds, with both daemons'
 *     CPU per thread, the disk's reads, writes and busy time, and (with
 *     BENCH_MARSD_CPU_PROF) the primary's main-thread share spent serving fetch.
 * Settings (docs/benchmarks.md): BENCH_DIR (parent of the temporary directory, default
 * os.tmpdir()), BENCH_REPL_SECONDARY_DIR (where the secondaries' state and devices go,
 * default with the primary's), BENCH_REPL_SIZE (device size, default 1G),
 * BENCH_REPL_RUNTIME_S (seconds per fio run, default 15), BENCH_REPL_RESULTS (JSON,
 * default dist/bench-replication.json), BENCH_REPL_PARTS (`b` runs the full sync alone,
 * `d` the attached/alone split; default (a), (b) and (c)), BENCH_MARSD_CPU_PROF (a directory: every marsd writes a
 * .cpuprofile there when it stops, bench/cpu-profile.ts), BENCH_MARSD_MEM_LOG (a
 * directory: every marsd logs its memory split there every 0.5 s, bench/mem-probe.ts),
 * BENCH_MARSD_V8_FLAGS (flags for node on every marsd's command line, e.g. --trace-gc),
 * BENCH_MARSD_STDOUT (a directory: each marsd's standard output goes to DIR/HOST.log, what
 * --trace-gc prints), BENCH_MARSD_ARGS (more marsd options, e.g. `--compression none`).
 * After each part it prints every marsd's RSS and peak RSS (VmHWM), and at the end each
 * daemon's peak against the budget (300 MiB + the shadow index limit).
 * Everything started here is stopped by PID; the temporary directory is removed.
 * Wall-clock time is read here on purpose.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, stat, statfs, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseLogName } from '../src/log/index.js';
import { loggerLimitsDefault } from '../src/logger/limits.js';
import { cleanup as stopCluster, createCluster, stopAll, joinCluster, newHost, waitHosts, type TestHost } from '../test/support/cluster-helpers.js';
import { freePort, removeDir, repoRoot, run, startMarsd, waitFor } from '../test/support/processes.js';
import { connect, mustAdm, status, waitCaughtUp, type RawPos, type ReplStatus } from '../test/support/replication-helpers.js';
import { runFio, type FioFigures, type FioJob } from './fio.js';
import { onCleanup, randomFile, runMain, sameFiles, say, sleep, table, writeResults } from './support.js';
import { monotonicUs, readProfile, windowShares, type Window, type WindowShares } from './profile-windows.js';
import { groupPercents, threadTimes, type ThreadGroup } from './thread-cpu.js';

const bytesPerMiB = 1024 * 1024;
const sizeDefaultBytes = 1024 * bytesPerMiB;
const runtimeDefaultS = 15;
/** fio ramp of the unpaced run (not measured); the paced runs have none. */
const maxRampS = 2;
/** Start of a paced run left out of the rate figures (the pipeline fills). */
const steadyAfterMs = 2000;
const sampleIntervalMs = 100;
/** Poll interval while a sync runs: fast, since the sync figures vanish once the copy is consistent. */
const syncPollMs = 20;
/** Read by bench/cpu-profile.ts in marsd. */
const cpuProfDirVariable = 'BENCH_CPU_PROF_DIR';
/** Read by bench/mem-probe.ts in marsd. */
const memLogDirVariable = 'BENCH_MEM_LOG_DIR';
const loopback = '127.0.0.1';
const keepUpResource = 'ra';
const fullSyncResource = 'rb';
const paceShares = [0.5, 1] as const;
/** (d): rounds of alone / secondary on the disk / secondary on tmpfs, interleaved; and the most allowed. */
const attachRoundsDefault = 2;
const attachRoundsMax = 10;
/** Bounds: a secondary catching up after a run, a sync, writeback, helper processes. */
const catchUpMsMax = 300_000;
const syncMsMax = 600_000;
const writtenBackMsMax = 300_000;
const startMsMax = 10_000;
const stopMsMax = 10_000;
const copyMsMax = 600_000;
/** How long a secondary may take to call itself consistent after its sync is done before the primary gets one write (see consistentAfterSync). */
const idleConsistentMsMax = 3000;
const blockBytes = 4096;
/** USER_HZ of /proc/PID/stat. */
const clockTicksPerS = 100;
/** statfs f_type of tmpfs: a bench there measures memory, not a disk. */
const tmpfsMagic = 0x01021994;
/** Each marsd's peak RSS must stay under this plus its shadow index limit (the daemons here run with the default). */
const rssBaseBudgetMiB = 300;
const rssBudgetMiB = rssBaseBudgetMiB + loggerLimitsDefault.shadowBytesMax / bytesPerMiB;
/** The aims the figures are read against (docs/benchmarks.md). */
const aims = { applyRatioMin: 0.95, lagSAtHalfMax: 1, fullSyncRatioMin: 0.8, fastSyncPercentMax: 2, attachedShareMin: 0.8 };

interface Config {
  readonly parentDir: string;
  /** Where the secondaries' state directories and devices go (default: with the primary's). */
  readonly secondaryParentDir: string;
  readonly sizeBytes: number;
  readonly runtimeS: number;
  readonly resultsPath: string;
  /** 'b': only the full sync (b); 'd': only the attached/alone split (d); 'all': (a), (b), (c). */
  readonly parts: 'all' | 'b' | 'd';
  /** (d): where the tmpfs secondary's state and device go (BENCH_REPL_TMPFS_DIR). */
  readonly tmpfsDir: string;
  /** (d): rounds of the three runs (BENCH_REPL_ROUNDS). */
  readonly rounds: number;
  readonly cpuProfDir: string | undefined;
  /** Every marsd logs its memory split there every 0.5 s (bench/mem-probe.ts). */
  readonly memLogDir: string | undefined;
  /** Flags for node on marsd's command line (BENCH_MARSD_V8_FLAGS). */
  readonly v8Flags: string | undefined;
  /** Each marsd's standard output goes to DIR/HOST.log (BENCH_MARSD_STDOUT). */
  readonly stdoutDir: string | undefined;
  /** More marsd options (BENCH_MARSD_ARGS, split at spaces). */
  readonly marsdArgs: readonly string[];
}

interface Tools {
  readonly fio: boolean;
  readonly nbdkit: boolean;
  readonly nbdcopy: boolean;
}

/** The sync figures of a secondary's raw status (receivedBytes and sentBytes may be missing in older daemons). */
interface SyncJson {
  readonly state: string;
  readonly sizeBytes: number;
  readonly doneBytes: number;
  readonly error: string | null;
  readonly receivedBytes?: number;
  readonly sentBytes?: number;
}

/** One 100 ms sample of the primary and the secondary, each stamped at the middle of its control call. */
interface Tick {
  readonly primaryMs: number;
  readonly end: RawPos;
  readonly logFiles: readonly { readonly name: string; readonly sizeBytes: number }[];
  readonly secondaryMs: number;
  readonly applied: RawPos | null;
  /** The end of the secondary's verified local copy (fetch), in the primary's log coordinates. */
  readonly fetched: RawPos | null;
  readonly replayRestBytes: number;
  readonly fetchRestBytes: number;
}

interface Spread {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface KeepUpFigures {
  readonly label: string;
  readonly targetMiBPerS: number;
  readonly fioMiBPerS: number;
  readonly primaryLogMiBPerS: number;
  readonly fetchMiBPerS: number;
  readonly applyMiBPerS: number;
  readonly applyRatio: number;
  readonly lagMiBReported: Spread;
  readonly lagMiBMeasured: Spread;
  readonly fetchLagMiBMeasured: Spread;
  readonly lagS: Spread;
  /** The same, until the secondary's verified copy (fetch) passed the log end: the fetch stage's share of lagS. */
  readonly fetchLagS: Spread;
  readonly catchUpS: number;
  readonly samples: number;
  /** CPU of each marsd during the fio run, in % of one core. */
  readonly primaryCpuPercent: number;
  readonly secondaryCpuPercent: number;
  /** The primary's disk during the fio run (all hosts' disk unless BENCH_REPL_SECONDARY_DIR is elsewhere). */
  readonly disk: { readonly writeMiBPerS: number; readonly busyPercent: number } | undefined;
}

interface SyncRun {
  /** From the start of join-resource to the first status with the sync done (or the copy consistent). */
  readonly doneMs: number;
  /** How long join-resource itself took. */
  readonly joinCommandMs: number;
  /** From the start of join-resource to the first status with copied bytes (doneBytes > 0); undefined if none was seen before the end. */
  readonly firstBytesMs: number | undefined;
  /** The last sync figures seen, and whether they were seen in state 'done' (final) or earlier (a lower bound). */
  readonly last: SyncJson | undefined;
  readonly lastIsFinal: boolean;
}



const helpers = new Set<ChildProcess>();


function parseSize(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return sizeDefaultBytes;
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (m === null) throw new Error(`bad BENCH_REPL_SIZE ${text}: bytes, or with K, M or G`);
  const unit = { '': 1, K: 1024, M: bytesPerMiB, G: 1024 * bytesPerMiB }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  const n = Number(m[1]) * unit;
  if (n < 16 * bytesPerMiB || n % bytesPerMiB !== 0) throw new Error('BENCH_REPL_SIZE must be whole MiB, at least 16 MiB');
  return n;
}

function readParts(text: string | undefined): Config['parts'] {
  if (text === undefined || text.trim() === '' || text.trim() === 'all') return 'all';
  if (text.trim() === 'b' || text.trim() === 'd') return text.trim() as 'b' | 'd';
  throw new Error(`bad BENCH_REPL_PARTS ${text}: 'b' (the full sync alone), 'd' (attached/alone, split) or 'all'`);
}

function readRounds(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return attachRoundsDefault;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > attachRoundsMax) throw new Error(`bad BENCH_REPL_ROUNDS ${text}: a whole number from 1 to ${attachRoundsMax}`);
  return n;
}

function optionalDir(text: string | undefined): string | undefined {
  return text === undefined || text === '' ? undefined : resolve(text);
}

function readConfig(): Config {
  const runtimeText = process.env['BENCH_REPL_RUNTIME_S'];
  const runtimeS = runtimeText === undefined || runtimeText === '' ? runtimeDefaultS : Number(runtimeText);
  if (!Number.isInteger(runtimeS) || runtimeS < 4) throw new Error(`bad BENCH_REPL_RUNTIME_S ${runtimeText}: whole seconds, at least 4`);
  const dir = process.env['BENCH_DIR'];
  const parentDir = resolve(dir === undefined || dir === '' ? tmpdir() : dir);
  const secondaryDir = process.env['BENCH_REPL_SECONDARY_DIR'];
  return {
    parentDir,
    secondaryParentDir: secondaryDir === undefined || secondaryDir === '' ? parentDir : resolve(secondaryDir),
    sizeBytes: parseSize(process.env['BENCH_REPL_SIZE']),
    runtimeS,
    resultsPath: resolve(process.env['BENCH_REPL_RESULTS'] ?? join(repoRoot, 'dist', 'bench-replication.json')),
    parts: readParts(process.env['BENCH_REPL_PARTS']),
    tmpfsDir: resolve(optionalDir(process.env['BENCH_REPL_TMPFS_DIR']) ?? '/dev/shm'),
    rounds: readRounds(process.env['BENCH_REPL_ROUNDS']),
    cpuProfDir: optionalDir(process.env['BENCH_MARSD_CPU_PROF']),
    memLogDir: optionalDir(process.env['BENCH_MARSD_MEM_LOG']),
    v8Flags: process.env['BENCH_MARSD_V8_FLAGS'] === '' ? undefined : process.env['BENCH_MARSD_V8_FLAGS'],
    stdoutDir: optionalDir(process.env['BENCH_MARSD_STDOUT']),
    marsdArgs: (process.env['BENCH_MARSD_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
  };
}

async function installed(tool: string): Promise<boolean> {
  try {
    await run(tool, ['--version'], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function mib(bytes: number): number {
  return bytes / bytesPerMiB;
}


function spread(values: readonly number[]): Spread {
  if (values.length === 0) return { p50: Number.NaN, p99: Number.NaN, max: Number.NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (q: number): number => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
  return { p50: rank(0.5), p99: rank(0.99), max: sorted.at(-1)! };
}


// ---- files ----



async function syncFilesystems(): Promise<void> {
  const r = await run('sync', [], { timeoutMs: copyMsMax });
  if (r.code !== 0) throw new Error(`sync failed: ${r.stderr.trim()}`);
}

// ---- nbdkit and nbdcopy (the reference for (b)) ----

interface Helper {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  stderr(): string;
}

function spawnHelper(command: string, args: string[]): Helper {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  helpers.add(child);
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  void exited.then(() => helpers.delete(child));
  return { child, exited, stderr: () => err };
}

async function stopHelper(h: Helper): Promise<void> {
  if (h.child.exitCode !== null || h.child.signalCode !== null) return;
  h.child.kill('SIGTERM');
  const timer = setTimeout(() => h.child.kill('SIGKILL'), stopMsMax);
  await h.exited;
  clearTimeout(timer);
}

async function nbdkitFile(path: string, readOnly: boolean): Promise<{ nbdkit: Helper; port: number }> {
  const port = await freePort(loopback);
  const nbdkit = spawnHelper('nbdkit', ['-f', '--exit-with-parent', ...(readOnly ? ['-r'] : []), '-i', loopback, '-p', String(port), 'file', `file=${path}`]);
  const answers = (): Promise<boolean> =>
    new Promise((r) => {
      const s = tcpConnect(port, loopback);
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
  await waitFor('nbdkit to listen', answers, startMsMax);
  return { nbdkit, port };
}

/** ms of nbdcopy from one `nbdkit file` export to another; `flush` ends with a flush of the target, like our sync's fdatasync. */
async function nbdcopy(sourcePath: string, targetPath: string, flush: boolean): Promise<number> {
  const a = await nbdkitFile(sourcePath, true);
  const b = await nbdkitFile(targetPath, false);
  try {
    const startMs = performance.now();
    const args = [...(flush ? ['--flush'] : []), `nbd://${loopback}:${a.port}`, `nbd://${loopback}:${b.port}`];
    const r = await run('nbdcopy', args, { timeoutMs: copyMsMax });
    if (r.code !== 0) throw new Error(`nbdcopy failed: ${r.stderr}\nnbdkit: ${a.nbdkit.stderr()}${b.nbdkit.stderr()}`);
    return performance.now() - startMs;
  } finally {
    await stopHelper(a.nbdkit);
    await stopHelper(b.nbdkit);
  }
}

// ---- daemons ----

/** A device file next to the host's state directory (so on the filesystem chosen for that host). */
function devicePath(host: TestHost, name: string): string {
  return join(dirname(host.dir), `${host.name}-${name}.img`);
}

function nbdUri(host: TestHost, name: string): string {
  if (host.daemon === undefined) throw new Error(`${host.name} is not running`);
  return `nbd://${host.ip}:${host.daemon.nbdPort}/${name}`;
}

/** The raw status, or undefined while the resource is not loaded on `host` yet. */
async function statusIfKnown(host: TestHost, name: string): Promise<ReplStatus | undefined> {
  try {
    return await status(host, name);
  } catch {
    return undefined;
  }
}

/** Waits until the primary has written back everything it logged (shadow empty, written-back position persisted at the log end). */
async function waitWrittenBack(primary: TestHost, name: string): Promise<void> {
  let last: ReplStatus['logger'];
  await waitFor(
    `${primary.name} to write back ${name}`,
    async () => {
      const l = (last = (await status(primary, name)).logger);
      // By sequence number: after a rotation with nothing new, written-back stays at the old log's end, which is the new log's start.
      return l !== null && l !== undefined && l.shadowBytes === 0 && l.writtenBack.nextSeq === l.logPosition.nextSeq;
    },
    writtenBackMsMax,
    sampleIntervalMs,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last logger status: ${JSON.stringify(last)}`);
  });
}

/** Rewrites the primary's first block with its own content: one log record, the data unchanged. */
async function rewriteOneBlock(primary: TestHost, name: string): Promise<void> {
  const client = await connect(primary, name);
  try {
    await client.write(0, await client.read(0, blockBytes));
    await client.flush();
  } finally {
    await client.close();
  }
}

/**
 * Waits until the secondary calls itself consistent after its sync; returns whether the
 * primary needed one write for that. On older trees a secondary whose primary logged
 * nothing after the sync's start stayed inconsistent (docs/benchmarks.md, "Problems this
 * bench found"), so after a short wait the primary gets one write that changes no data.
 */
async function consistentAfterSync(primary: TestHost, secondary: TestHost, name: string): Promise<boolean> {
  const consistent = async (): Promise<boolean> => (await status(secondary, name)).replica?.consistent === true;
  let nudged = false;
  try {
    await waitFor(`${secondary.name} to be consistent on ${name}`, consistent, idleConsistentMsMax, sampleIntervalMs);
  } catch {
    say(`    ${secondary.name} is not consistent ${idleConsistentMsMax / 1000} s after its sync; ${primary.name} rewrites one block (same data) so that replay moves on`);
    await rewriteOneBlock(primary, name);
    nudged = true;
  }
  await waitCaughtUp(primary, secondary, name, catchUpMsMax);
  return nudged;
}

/** CPU seconds (user + system, all threads) a process has used so far. */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / clockTicksPerS;
}

/** Minor page faults (all threads) a process has taken so far: fresh memory touched for the first time. */
async function minorFaults(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[10 - 3]);
}

/** Bytes written to a block device and the time it was busy, from /proc/diskstats. */
interface DiskCounters {
  readonly readBytes: number;
  readonly writtenBytes: number;
  readonly busyMs: number;
}

const sectorBytes = 512;

/** The /proc/diskstats name of the block device holding `path`, or undefined (tmpfs, or not found). */
async function diskOf(path: string): Promise<string | undefined> {
  const dev = (await stat(path)).dev;
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const lines = (await readFile('/proc/diskstats', 'utf8')).split('\n');
  const fields = lines.map((l) => l.trim().split(/\s+/)).find((f) => Number(f[0]) === major && Number(f[1]) === minor);
  return fields?.[2];
}

async function diskCounters(disk: string | undefined): Promise<DiskCounters | undefined> {
  if (disk === undefined) return undefined;
  const fields = (await readFile('/proc/diskstats', 'utf8'))
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[2] === disk);
  if (fields === undefined) return undefined;
  return { readBytes: Number(fields[5]) * sectorBytes, writtenBytes: Number(fields[9]) * sectorBytes, busyMs: Number(fields[12]) };
}

/** The disk's write rate and busy share over `ms`, or undefined. */
function diskLoad(before: DiskCounters | undefined, after: DiskCounters | undefined, ms: number): { writeMiBPerS: number; busyPercent: number } | undefined {
  if (before === undefined || after === undefined) return undefined;
  return { writeMiBPerS: mib(after.writtenBytes - before.writtenBytes) / (ms / 1000), busyPercent: (100 * (after.busyMs - before.busyMs)) / ms };
}

/** Between runs: secondaries caught up, primary written back, old logs and copies deleted, page cache on disk. */
async function settle(primary: TestHost, secondaries: readonly TestHost[], name: string): Promise<void> {
  for (const s of secondaries) await waitCaughtUp(primary, s, name, catchUpMsMax);
  await waitWrittenBack(primary, name);
  for (const h of [primary, ...secondaries]) await mustAdm(h, 'cron');
  await syncFilesystems();
}

/** join-resource, then polls until the sync is done or the copy consistent, keeping the last sync figures. */
async function joinAndSync(host: TestHost, name: string, devicePath: string): Promise<SyncRun> {
  const startMs = performance.now();
  await mustAdm(host, 'join-resource', name, devicePath);
  const joinCommandMs = performance.now() - startMs;
  let last: SyncJson | undefined;
  let lastIsFinal = false;
  let firstBytesMs: number | undefined;
  await waitFor(
    `the sync of ${name} on ${host.name}`,
    async () => {
      const replica = (await statusIfKnown(host, name))?.replica;
      if (replica === null || replica === undefined) return false;
      const sync = replica.sync as SyncJson | null;
      if (sync !== null) {
        if (sync.error !== null) throw new Error(`sync of ${name} on ${host.name}: ${sync.error}`);
        last = sync;
        lastIsFinal = sync.state === 'done';
        if (firstBytesMs === undefined && sync.doneBytes > 0) firstBytesMs = performance.now() - startMs;
      }
      return lastIsFinal || replica.consistent;
    },
    syncMsMax,
    syncPollMs,
  );
  return { doneMs: performance.now() - startMs, joinCommandMs, firstBytesMs, last, lastIsFinal };
}

// ---- (a) sampling and its figures ----

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const startMs = performance.now();
  const value = await fn();
  return { ms: (startMs + performance.now()) / 2, value };
}

function fetchedPosition(logName: string | null, localBytes: number): RawPos | null {
  const parsed = logName === null ? undefined : parseLogName(logName);
  return parsed === undefined ? null : { logNumber: parsed.logNumber, logHost: parsed.host, offsetBytes: localBytes, nextSeq: '?' };
}

/** Samples both hosts every 100 ms into `ticks` while `running()` holds. */
async function sampleLoop(primary: TestHost, secondary: TestHost, name: string, ticks: Tick[], running: () => boolean): Promise<void> {
  while (running()) {
    const startMs = performance.now();
    const [p, s] = await Promise.all([timed(() => status(primary, name)), timed(() => status(secondary, name))]);
    const logger = p.value.logger;
    const replica = s.value.replica;
    if (logger === null || logger === undefined || replica === null || replica === undefined) throw new Error(`${name}: no logger on ${primary.name} or no replica on ${secondary.name}`);
    ticks.push({
      primaryMs: p.ms,
      end: logger.logPosition,
      logFiles: p.value.logFiles,
      secondaryMs: s.ms,
      applied: replica.replay.position,
      fetched: fetchedPosition(replica.fetch.logName, replica.fetch.localBytes),
      replayRestBytes: replica.replay.restBytes,
      fetchRestBytes: replica.fetch.restBytes ?? 0,
    });
    await sleep(Math.max(0, sampleIntervalMs - (performance.now() - startMs)));
  }
}

/**
 * Positions in the primary's logs (log number, offset) as bytes on one line: the sizes of
 * all earlier logs plus the offset. Log sizes are learned from the primary's samples; a
 * log never shrinks and none is deleted during a run.
 */
class LogLine {
  private readonly sizes = new Map<number, number>();

  learn(files: Tick['logFiles']): void {
    for (const f of files) {
      const n = parseLogName(f.name)?.logNumber;
      if (n !== undefined) this.sizes.set(n, Math.max(this.sizes.get(n) ?? 0, f.sizeBytes));
    }
  }

  bytes(p: RawPos): number {
    let total = p.offsetBytes;
    for (const [n, size] of this.sizes) if (n < p.logNumber) total += size;
    return total;
  }
}

/** Rate over [fromMs, toMs] between the first and the last sample inside it. */
function rateBytesPerS(points: readonly { ms: number; bytes: number }[], fromMs: number, toMs: number): number {
  const inside = points.filter((p) => p.ms >= fromMs && p.ms <= toMs);
  const first = inside[0];
  const last = inside.at(-1);
  if (first === undefined || last === undefined || last.ms <= first.ms) throw new Error('too few samples for a rate');
  return ((last.bytes - first.bytes) * 1000) / (last.ms - first.ms);
}

/**
 * The figures of one paced run: ticks in [startMs, stopMs] are the load; later ticks only
 * serve to find when the secondary passed the last log ends.
 */
function keepUpFigures(label: string, targetBytesPerS: number, fio: FioFigures, ticks: readonly Tick[], startMs: number, stopMs: number): Omit<KeepUpFigures, 'primaryCpuPercent' | 'secondaryCpuPercent' | 'disk'> {
  const line = new LogLine();
  for (const t of ticks) line.learn(t.logFiles);
  const applied = (t: Tick): number => (t.applied === null ? Number.NEGATIVE_INFINITY : line.bytes(t.applied));
  const fetched = (t: Tick): number => (t.fetched === null ? Number.NEGATIVE_INFINITY : line.bytes(t.fetched));
  const ends = ticks.map((t) => ({ ms: t.primaryMs, bytes: line.bytes(t.end) }));
  const applies = ticks.map((t) => ({ ms: t.secondaryMs, bytes: applied(t) }));
  const load = ticks.filter((t) => t.primaryMs >= startMs && t.primaryMs <= stopMs);
  const secondsUntil = (reached: (t: Tick) => number): number[] =>
    load.map((t) => {
      const end = line.bytes(t.end);
      const passed = ticks.find((u) => u.secondaryMs >= t.primaryMs && reached(u) >= end);
      return passed === undefined ? Number.POSITIVE_INFINITY : (passed.secondaryMs - t.primaryMs) / 1000;
    });
  const lagS = secondsUntil(applied);
  const fetchLagS = secondsUntil(fetched);
  const finalEnd = ends.filter((e) => e.ms <= stopMs).at(-1)?.bytes ?? 0;
  const caughtUp = applies.find((a) => a.ms >= stopMs && a.bytes >= finalEnd);
  const primaryRate = rateBytesPerS(ends, startMs + steadyAfterMs, stopMs);
  const applyRate = rateBytesPerS(applies, startMs + steadyAfterMs, stopMs);
  const fetchRate = rateBytesPerS(ticks.map((t) => ({ ms: t.secondaryMs, bytes: fetched(t) })), startMs + steadyAfterMs, stopMs);
  return {
    label,
    targetMiBPerS: mib(targetBytesPerS),
    fioMiBPerS: fio.mibPerS,
    primaryLogMiBPerS: mib(primaryRate),
    fetchMiBPerS: mib(fetchRate),
    applyMiBPerS: mib(applyRate),
    applyRatio: applyRate / primaryRate,
    lagMiBReported: spread(load.map((t) => mib(t.replayRestBytes + t.fetchRestBytes))),
    lagMiBMeasured: spread(load.map((t) => mib(Math.max(0, line.bytes(t.end) - applied(t))))),
    fetchLagMiBMeasured: spread(load.map((t) => mib(Math.max(0, line.bytes(t.end) - fetched(t))))),
    lagS: spread(lagS),
    fetchLagS: spread(fetchLagS),
    catchUpS: caughtUp === undefined ? Number.POSITIVE_INFINITY : (caughtUp.ms - stopMs) / 1000,
    samples: load.length,
  };
}

function seqWriteJob(rateBytesPerS: number | undefined): FioJob {
  const rate = rateBytesPerS === undefined ? [] : [`--rate=${Math.round(rateBytesPerS)}`];
  return { name: 'repl-seqwrite-1m', label: '1 MiB seq write, QD8', direction: 'write', args: ['--rw=write', '--bs=1M', '--iodepth=8', ...rate], timeBased: true };
}

/** One paced fio run with the secondary attached, sampled from before its start until the secondary has applied everything. */
async function pacedRun(config: Config, primary: TestHost, secondary: TestHost, share: number, maxBytesPerS: number, disk: string | undefined): Promise<KeepUpFigures> {
  const targetBytesPerS = share * maxBytesPerS;
  const label = `${Math.round(share * 100)} % of the primary's maximum`;
  say(`(a) ${label}: fio paced at ${mib(targetBytesPerS).toFixed(1)} MiB/s for ${config.runtimeS} s`);
  const ticks: Tick[] = [];
  let sampling = true;
  let samplerError: Error | undefined;
  const sampler = sampleLoop(primary, secondary, keepUpResource, ticks, () => sampling).catch((err: unknown) => {
    samplerError = err instanceof Error ? err : new Error(String(err));
  });
  try {
    await sleep(3 * sampleIntervalMs);
    const pids = [primary.daemon?.child.pid, secondary.daemon?.child.pid];
    const cpuBefore = await Promise.all(pids.map(cpuSeconds));
    const diskBefore = await diskCounters(disk);
    const startMs = performance.now();
    const fio = await runFio(seqWriteJob(targetBytesPerS), { uri: nbdUri(primary, keepUpResource), sizeBytes: config.sizeBytes, runtimeS: config.runtimeS, rampS: 0, passTimeoutMs: copyMsMax });
    const stopMs = performance.now();
    const load = diskLoad(diskBefore, await diskCounters(disk), stopMs - startMs);
    const cpuPercent = (await Promise.all(pids.map(cpuSeconds))).map((after, i) => (100 * (after - cpuBefore[i]!) * 1000) / (stopMs - startMs));
    const end = (await status(primary, keepUpResource)).logger!.logPosition;
    await waitFor(
      `${secondary.name} to apply ${keepUpResource} up to ${end.logNumber}:${end.offsetBytes}`,
      () => {
        if (samplerError !== undefined) throw samplerError;
        const a = ticks.at(-1)?.applied;
        return a !== null && a !== undefined && (a.logNumber > end.logNumber || (a.logNumber === end.logNumber && a.offsetBytes >= end.offsetBytes));
      },
      catchUpMsMax,
      sampleIntervalMs,
    );
    sampling = false;
    await sampler;
    if (samplerError !== undefined) throw samplerError;
    return { ...keepUpFigures(label, targetBytesPerS, fio, ticks, startMs, stopMs), primaryCpuPercent: cpuPercent[0]!, secondaryCpuPercent: cpuPercent[1]!, disk: load };
  } finally {
    sampling = false;
    await sampler;
  }
}

function keepUpTables(maxAlone: MaxAlone, runs: readonly KeepUpFigures[]): void {
  const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : 'never');
  const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : 'never');
  say();
  const diskText = maxAlone.disk === undefined ? '' : `; disk ${maxAlone.disk.writeMiBPerS.toFixed(0)} MiB/s written, busy ${maxAlone.disk.busyPercent.toFixed(0)} %`;
  say(`(a) primary alone (no secondary), 1 MiB seq write QD8: ${maxAlone.fio.mibPerS.toFixed(1)} MiB/s (fio), p99 ${maxAlone.fio.p99Ms.toFixed(1)} ms; marsd CPU ${maxAlone.primaryCpuPercent.toFixed(0)} %${diskText}`);
  const rates: string[][] = [['run', 'target MiB/s', 'fio MiB/s', 'primary log MiB/s', 'fetch MiB/s', 'apply MiB/s', 'apply/write', 'CPU % primary', 'CPU % secondary', 'disk write MiB/s', 'disk busy %']];
  for (const r of runs) {
    rates.push([r.label, f1(r.targetMiBPerS), f1(r.fioMiBPerS), f1(r.primaryLogMiBPerS), f1(r.fetchMiBPerS), f1(r.applyMiBPerS), f2(r.applyRatio), r.primaryCpuPercent.toFixed(0), r.secondaryCpuPercent.toFixed(0), r.disk?.writeMiBPerS.toFixed(0) ?? '-', r.disk?.busyPercent.toFixed(0) ?? '-']);
  }
  say(table(rates));
  say();
  const lags: string[][] = [['run', 'lag MiB p50/p99/max: fetch-rest + replay-rest', 'log end - fetched', 'log end - applied', 'fetch lag s p50/p99/max', 'lag s p50/p99/max', 'catch-up s']];
  const three = (s: Spread, f: (n: number) => string): string => `${f(s.p50)} / ${f(s.p99)} / ${f(s.max)}`;
  for (const r of runs) lags.push([r.label, three(r.lagMiBReported, f1), three(r.fetchLagMiBMeasured, f1), three(r.lagMiBMeasured, f1), three(r.fetchLagS, f2), three(r.lagS, f2), f2(r.catchUpS)]);
  say(table(lags));
  say(`apply/write: rates over each run after its first ${steadyAfterMs / 1000} s, from the sampled log end and replay position (aim >= ${aims.applyRatioMin} at 100 %)`);
  say('lag MiB: fetch-rest + replay-rest as the secondary reports them; log end - fetched/applied from the samples (the primary and the secondary sampled together)');
  say('catch-up s: from the end of the fio run until the secondary had replayed everything');
  say(`lag s: for each sample of the primary's log end, until the first sample of the secondary replayed past it (resolution ~${sampleIntervalMs} ms; aim < ${aims.lagSAtHalfMax} s at 50 %)`);
  say("fetch lag s: the same until the secondary's verified copy reached it (the fetch stage's part of the lag; the rest is replay's)");
}

// ---- (c) fast full sync of identical disks ----

interface FastSyncFigures {
  readonly sizeBytes: number;
  readonly receivedBytes: number | undefined;
  readonly sentBytes: number | undefined;
  readonly receivedPercent: number | undefined;
  readonly final: boolean;
  readonly doneS: number;
  readonly joinCommandS: number;
  /** Whether the primary needed one write before the secondary called itself consistent. */
  readonly nudged?: boolean;
}

/** Copies the written-back primary device to the secondary's, joins, and reads what the sync moved. */
async function fastSyncPart(config: Config, primary: TestHost, secondary: TestHost, primaryDevice: string, secondaryDevice: string): Promise<FastSyncFigures> {
  await waitWrittenBack(primary, keepUpResource);
  await copyFile(primaryDevice, secondaryDevice);
  await syncFilesystems();
  say(`(c) ${secondary.name} joins ${keepUpResource} with a copy of ${primary.name}'s written-back device`);
  const r = await joinAndSync(secondary, keepUpResource, secondaryDevice);
  const received = r.last?.receivedBytes;
  const figures: FastSyncFigures = {
    sizeBytes: config.sizeBytes,
    receivedBytes: received,
    sentBytes: r.last?.sentBytes,
    receivedPercent: received === undefined ? undefined : (100 * received) / config.sizeBytes,
    final: r.lastIsFinal,
    doneS: r.doneMs / 1000,
    joinCommandS: r.joinCommandMs / 1000,
  };
  say();
  if (r.last === undefined) say('(c) the sync figures were never seen in the status (the copy was consistent before the first poll)');
  else if (received === undefined) say('(c) the status has no sync.receivedBytes: cannot report the bytes the target received');
  else {
    const bound = r.lastIsFinal ? '' : ' (last figures seen before the sync was done: a lower bound)';
    say(`(c) fast full sync of identical ${mib(config.sizeBytes)} MiB disks: the target received ${received} bytes = ${figures.receivedPercent!.toFixed(3)} % of the device${bound}; it sent ${r.last.sentBytes ?? '?'} bytes (digests)`);
  }
  say(`(c) join-resource to sync done: ${figures.doneS.toFixed(2)} s (${(mib(config.sizeBytes) / figures.doneS).toFixed(0)} MiB/s of device compared; join-resource itself ${figures.joinCommandS.toFixed(2)} s)`);
  const nudged = await consistentAfterSync(primary, secondary, keepUpResource);
  return { ...figures, nudged };
}

// ---- (b) full sync against nbdcopy ----

interface FullSyncFigures {
  readonly sizeBytes: number;
  readonly oursS: number;
  readonly oursMiBPerS: number;
  /** MiB/s from the return of join-resource to the sync's end. */
  readonly afterJoinMiBPerS: number;
  readonly joinCommandS: number;
  /** From the start of join-resource until the target's status first showed copied bytes (polled every 20 ms). */
  readonly firstBytesS: number | undefined;
  readonly receivedBytes: number | undefined;
  readonly nbdcopyMiBPerS: number | undefined;
  readonly nbdcopyFlushMiBPerS: number | undefined;
  readonly identical: boolean;
  readonly nudged: boolean;
  /** CPU seconds (user + system) of the source's and the target's marsd from join-resource until the sync was done, per GiB synced. */
  readonly sourceCpuSPerGiB: number;
  readonly targetCpuSPerGiB: number;
  /** Minor page faults of the source's and the target's marsd over the same interval, per MiB synced (256 = every page of the data fresh memory). */
  readonly sourceFaultsPerMiB: number;
  readonly targetFaultsPerMiB: number;
  /** Peak RSS (VmHWM) of the source's and the target's marsd after the sync, MiB. */
  readonly sourcePeakRssMiB: number;
  readonly targetPeakRssMiB: number;
}

async function peakRssMiB(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}

/** Peak (VmHWM) and current (VmRSS) resident set of each daemon after one part of the bench, MiB. */
interface RssPoint {
  readonly after: string;
  readonly hosts: Record<string, { readonly peakMiB: number; readonly currentMiB: number }>;
}

async function rssOf(pid: number | undefined): Promise<{ peakMiB: number; currentMiB: number }> {
  if (pid === undefined) return { peakMiB: Number.NaN, currentMiB: Number.NaN };
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const mibOf = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN) / 1024;
  return { peakMiB: mibOf('VmHWM'), currentMiB: mibOf('VmRSS') };
}

const rssPoints: RssPoint[] = [];

/** Notes every running daemon's peak and current RSS after `after`, and prints them. */
async function noteRss(after: string, hosts: readonly TestHost[]): Promise<void> {
  const entries = await Promise.all(hosts.filter((h) => h.daemon !== undefined).map(async (h) => [h.name, await rssOf(h.daemon?.child.pid)] as const));
  rssPoints.push({ after, hosts: Object.fromEntries(entries) });
  say(`    RSS after ${after}: ${entries.map(([name, r]) => `${name} ${r.currentMiB.toFixed(0)} MiB (peak ${r.peakMiB.toFixed(0)})`).join(', ')}`);
}

/** The peak RSS of each daemon over the whole bench, against the budget. */
function rssTable(): { host: string; peakMiB: number; withinBudget: boolean }[] {
  const last = rssPoints.at(-1);
  if (last === undefined) return [];
  const rows = Object.entries(last.hosts).map(([host, r]) => ({ host, peakMiB: r.peakMiB, withinBudget: r.peakMiB < rssBudgetMiB }));
  say();
  say(`peak RSS (VmHWM) of each marsd over the whole bench; budget ${rssBaseBudgetMiB} MiB + the shadow index limit = ${rssBudgetMiB} MiB:`);
  say(
    table([
      ['marsd', ...rssPoints.map((p) => `after ${p.after}`), 'peak', 'budget'],
      ...rows.map((row) => [row.host, ...rssPoints.map((p) => p.hosts[row.host]?.peakMiB.toFixed(0) ?? '-'), row.peakMiB.toFixed(0), row.withinBudget ? 'within' : 'EXCEEDED']),
    ]),
  );
  return rows;
}

async function fullSyncPart(config: Config, tools: Tools, root: string, primary: TestHost, secondary: TestHost): Promise<FullSyncFigures> {
  const size = config.sizeBytes;
  say(`(b) writing random devices (${mib(size)} MiB each)`);
  const source = await randomFile(devicePath(primary, fullSyncResource), size);
  const target = await randomFile(devicePath(secondary, fullSyncResource), size);
  let plainMs: number | undefined;
  let flushMs: number | undefined;
  if (tools.nbdkit && tools.nbdcopy) {
    const reference = await randomFile(join(root, 'nbdcopy-target.img'), size);
    await syncFilesystems();
    plainMs = await nbdcopy(source, reference, false);
    await syncFilesystems();
    flushMs = await nbdcopy(source, reference, true);
    await syncFilesystems();
    say(`(b) nbdcopy: ${Math.round(plainMs)} ms, nbdcopy --flush: ${Math.round(flushMs)} ms`);
  } else {
    say('(b) nbdkit or nbdcopy is not installed: no reference figure (apt-get install nbdkit libnbd-bin)');
  }
  await mustAdm(primary, 'create-resource', fullSyncResource, source);
  say(`(b) ${secondary.name} joins ${fullSyncResource} with a device of other random bytes`);
  const pids = [primary.daemon?.child.pid, secondary.daemon?.child.pid];
  const cpuBefore = await Promise.all(pids.map(cpuSeconds));
  const faultsBefore = await Promise.all(pids.map(minorFaults));
  const r = await joinAndSync(secondary, fullSyncResource, target);
  const cpuPerGiB = (await Promise.all(pids.map(cpuSeconds))).map((after, i) => (after - cpuBefore[i]!) / (size / (1024 * bytesPerMiB)));
  const faultsPerMiB = (await Promise.all(pids.map(minorFaults))).map((after, i) => (after - faultsBefore[i]!) / mib(size));
  const [sourcePeakRssMiB, targetPeakRssMiB] = await Promise.all(pids.map(peakRssMiB));
  const nudged = await consistentAfterSync(primary, secondary, fullSyncResource);
  await waitWrittenBack(primary, fullSyncResource);
  const identical = await sameFiles(source, target, size);
  const perS = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : mib(size) / (ms / 1000));
  return {
    sizeBytes: size,
    oursS: r.doneMs / 1000,
    oursMiBPerS: perS(r.doneMs)!,
    afterJoinMiBPerS: perS(r.doneMs - r.joinCommandMs)!,
    joinCommandS: r.joinCommandMs / 1000,
    firstBytesS: r.firstBytesMs === undefined ? undefined : r.firstBytesMs / 1000,
    receivedBytes: r.last?.receivedBytes,
    nbdcopyMiBPerS: perS(plainMs),
    nbdcopyFlushMiBPerS: perS(flushMs),
    identical,
    nudged,
    sourceCpuSPerGiB: cpuPerGiB[0]!,
    targetCpuSPerGiB: cpuPerGiB[1]!,
    sourceFaultsPerMiB: faultsPerMiB[0]!,
    targetFaultsPerMiB: faultsPerMiB[1]!,
    sourcePeakRssMiB: sourcePeakRssMiB!,
    targetPeakRssMiB: targetPeakRssMiB!,
  };
}

function fullSyncTable(f: FullSyncFigures): void {
  const ratio = (other: number | undefined): string => (other === undefined ? '-' : (f.oursMiBPerS / other).toFixed(2));
  const cell = (v: number | undefined): string => (v === undefined ? 'not run' : v.toFixed(0));
  say();
  say(`(b) full sync of ${mib(f.sizeBytes)} MiB, random bytes onto other random bytes:`);
  say(
    table([
      ['copy', 'MiB/s', 'ours / it'],
      ['ours: join-resource until the sync is done (marsd to marsd, loopback)', f.oursMiBPerS.toFixed(0), '-'],
      ['ours, counted from the return of join-resource', f.afterJoinMiBPerS.toFixed(0), '-'],
      ['nbdcopy between two nbdkit file exports', cell(f.nbdcopyMiBPerS), ratio(f.nbdcopyMiBPerS)],
      ['nbdcopy --flush (ends with a flush, like ours)', cell(f.nbdcopyFlushMiBPerS), ratio(f.nbdcopyFlushMiBPerS)],
    ]),
  );
  say(`ours took ${f.oursS.toFixed(2)} s (join-resource itself ${f.joinCommandS.toFixed(2)} s; first copied bytes seen after ${f.firstBytesS === undefined ? '?' : f.firstBytesS.toFixed(2)} s); the target received ${f.receivedBytes ?? '?'} bytes; devices identical afterwards: ${f.identical ? 'yes' : 'NO'}`);
  say(`CPU per GiB synced (join-resource until done): source marsd ${f.sourceCpuSPerGiB.toFixed(2)} s, target marsd ${f.targetCpuSPerGiB.toFixed(2)} s; minor page faults per MiB: source ${f.sourceFaultsPerMiB.toFixed(0)}, target ${f.targetFaultsPerMiB.toFixed(0)}; peak RSS source ${f.sourcePeakRssMiB.toFixed(0)} MiB, target ${f.targetPeakRssMiB.toFixed(0)} MiB`);
}

// ---- main ----

/**
 * Starts marsd on `host`; with a profile or memory-log directory, the preloads reach that
 * marsd only (the environment is set while it is spawned). With V8 flags or a stdout
 * directory a shell in front becomes marsd (exec: the same PID), runs bin/marsd's script
 * with node and the flags, and appends its stdout to DIR/HOST.log; bin/marsd's own
 * environment settings are repeated, since its shebang line is bypassed then.
 */
async function startProfiled(host: TestHost, config: Pick<Config, 'cpuProfDir' | 'memLogDir' | 'v8Flags' | 'stdoutDir' | 'marsdArgs'>): Promise<void> {
  const preloads: [string, string, string][] = [];
  if (config.cpuProfDir !== undefined) preloads.push(['cpu-profile.js', cpuProfDirVariable, join(config.cpuProfDir, host.name)]);
  if (config.memLogDir !== undefined) preloads.push(['mem-probe.js', memLogDirVariable, join(config.memLogDir, host.name)]);
  const vars = new Map<string, string>();
  if (preloads.length > 0) vars.set('NODE_OPTIONS', [process.env['NODE_OPTIONS'] ?? '', ...preloads.map((p) => `--import ${join(repoRoot, 'dist', 'bench', p[0])}`)].join(' ').trim());
  for (const [, variable, dir] of preloads) vars.set(variable, dir);
  let prefix: string[] = [];
  if (config.stdoutDir !== undefined) await mkdir(config.stdoutDir, { recursive: true });
  if (config.v8Flags !== undefined || config.stdoutDir !== undefined) {
    vars.set('BENCH_MARSD_STDOUT', config.stdoutDir === undefined ? '/dev/null' : join(config.stdoutDir, `${host.name}.log`));
    vars.set('BENCH_MARSD_V8_FLAGS', config.v8Flags ?? '');
    vars.set('MALLOC_MMAP_THRESHOLD_', '4194304');
    vars.set('UV_THREADPOOL_SIZE', '16');
    prefix = ['sh', '-c', `exec ${JSON.stringify(process.execPath)} $BENCH_MARSD_V8_FLAGS "$@" >>"$BENCH_MARSD_STDOUT"`, 'sh'];
  }
  const saved = new Map([...vars.keys()].map((n) => [n, process.env[n]]));
  for (const [n, v] of vars) process.env[n] = v;
  try {
    host.daemon = await startMarsd(host.dir, { nbdHost: host.ip, extraArgs: [...config.marsdArgs], prefix });
  } finally {
    for (const [n, v] of saved) {
      if (v === undefined) Reflect.deleteProperty(process.env, n);
      else process.env[n] = v;
    }
  }
}

/** alpha (the primary), beta and gamma (the secondaries), each under its directory of `roots`. */
async function startHosts(roots: readonly [string, string, string], hosts: TestHost[], config: Config): Promise<void> {
  for (const [i, name] of ['alpha', 'beta', 'gamma'].entries()) hosts.push(await newHost(roots[i as 0 | 1 | 2], name, `127.0.0.${i + 1}`));
  const [first, ...rest] = hosts;
  await createCluster(first!);
  await startProfiled(first!, config);
  for (const h of rest) {
    const joined = await joinCluster(h, first!);
    if (joined.code !== 0) throw new Error(`join-cluster ${h.name}: ${joined.stderr.trim()}`);
    await startProfiled(h, config);
  }
  const all = Object.fromEntries(hosts.map((h) => [h.name, 'alive']));
  for (const h of hosts) await waitHosts(h, all);
}

interface MaxAlone {
  readonly fio: FioFigures;
  readonly primaryCpuPercent: number;
  readonly disk: KeepUpFigures['disk'];
}

interface KeepUpPart {
  readonly maxAlone: MaxAlone;
  readonly runs: KeepUpFigures[];
}

/** The primary's maximum write rate with no secondary: fio unpaced, with a ramp. */
async function maxAloneRun(config: Config, primary: TestHost, disk: string | undefined): Promise<MaxAlone> {
  say(`(a) the primary alone: fio 1 MiB seq write QD8, unpaced, ${config.runtimeS} s + ${maxRampS} s ramp`);
  const pid = primary.daemon?.child.pid;
  const cpuBefore = await cpuSeconds(pid);
  const diskBefore = await diskCounters(disk);
  const startMs = performance.now();
  const fio = await runFio(seqWriteJob(undefined), { uri: nbdUri(primary, keepUpResource), sizeBytes: config.sizeBytes, runtimeS: config.runtimeS, rampS: maxRampS, passTimeoutMs: copyMsMax });
  const ms = performance.now() - startMs;
  const primaryCpuPercent = (100 * ((await cpuSeconds(pid)) - cpuBefore) * 1000) / ms;
  return { fio, primaryCpuPercent, disk: diskLoad(diskBefore, await diskCounters(disk), ms) };
}

/** (a) and (c): the primary alone at full speed, then (c) the join, then the paced runs. */
async function keepUpPart(config: Config, tools: Tools, alpha: TestHost, beta: TestHost): Promise<{ keepUp: KeepUpPart | undefined; fastSync: FastSyncFigures }> {
  const alphaDevice = await randomFile(devicePath(alpha, keepUpResource), config.sizeBytes);
  const betaDevice = devicePath(beta, keepUpResource);
  await mustAdm(alpha, 'create-resource', keepUpResource, alphaDevice);
  const disk = await diskOf(alphaDevice);
  let maxAlone: MaxAlone | undefined;
  if (tools.fio) {
    maxAlone = await maxAloneRun(config, alpha, disk);
    await settle(alpha, [], keepUpResource);
    await noteRss('the primary alone', [alpha, beta]);
  } else {
    say('(a) fio is not installed: the keep-up runs are skipped (apt-get install fio)');
  }
  const fastSync = await fastSyncPart(config, alpha, beta, alphaDevice, betaDevice);
  await noteRss('the fast sync', [alpha, beta]);
  if (maxAlone === undefined) return { keepUp: undefined, fastSync };
  const runs: KeepUpFigures[] = [];
  for (const share of paceShares) {
    await settle(alpha, [beta], keepUpResource);
    runs.push(await pacedRun(config, alpha, beta, share, maxAlone.fio.mibPerS * bytesPerMiB, disk));
    await noteRss(`the ${share * 100} % run`, [alpha, beta]);
  }
  await settle(alpha, [beta], keepUpResource);
  keepUpTables(maxAlone, runs);
  return { keepUp: { maxAlone, runs }, fastSync };
}

// ---- (d) attached / alone, split: what takes the primary's rate down ----

/** Who fetches during a run of (d): nobody, beta (state and device on the primary's disk), gamma (on tmpfs). */
type AttachMode = 'alone' | 'disk' | 'tmpfs';
const attachModes: readonly AttachMode[] = ['alone', 'disk', 'tmpfs'];

interface AttachRun {
  readonly mode: AttachMode;
  readonly round: number;
  readonly fioMiBPerS: number;
  /** % of one core per thread group, over the whole fio run (ramp included). */
  readonly primaryCpu: Record<ThreadGroup | 'total', number>;
  readonly secondaryCpu: Record<ThreadGroup | 'total', number> | undefined;
  /** The primary's CPU (all threads) per MiB written. */
  readonly primaryCpuUsPerMiB: number;
  /** The primary's disk: what it read and wrote, how busy it was (every process's I/O on it). */
  readonly disk: { readonly readMiBPerS: number; readonly writeMiBPerS: number; readonly busyPercent: number } | undefined;
  /** The measured part of the run (after the ramp), in the profile's clock. */
  readonly window: Window;
  /** The primary's main thread over `window`, from its CPU profile (with BENCH_MARSD_CPU_PROF). */
  profile?: WindowShares;
}

/** One unpaced fio run on the primary with `active` fetching (or nobody). */
async function attachRun(config: Config, primary: TestHost, active: TestHost | undefined, mode: AttachMode, round: number, disk: string | undefined): Promise<AttachRun> {
  say(`(d) round ${round + 1}, ${mode === 'alone' ? 'the primary alone (both secondaries paused)' : `${active!.name} fetching (${mode})`}: fio 1 MiB seq write QD8, unpaced, ${config.runtimeS} s + ${maxRampS} s ramp`);
  const pids = [primary.daemon?.child.pid, active?.daemon?.child.pid];
  const before = await Promise.all(pids.map(threadTimes));
  const diskBefore = await diskCounters(disk);
  const startMs = performance.now();
  const fromUs = monotonicUs() + maxRampS * 1_000_000;
  const fio = await runFio(seqWriteJob(undefined), { uri: nbdUri(primary, keepUpResource), sizeBytes: config.sizeBytes, runtimeS: config.runtimeS, rampS: maxRampS, passTimeoutMs: copyMsMax });
  const window = { fromUs, toUs: monotonicUs() };
  const ms = performance.now() - startMs;
  const after = await Promise.all(pids.map(threadTimes));
  const diskAfter = await diskCounters(disk);
  const primaryCpu = groupPercents(before[0]!, after[0]!, ms);
  const secondaryCpu = active === undefined ? undefined : groupPercents(before[1]!, after[1]!, ms);
  const load =
    diskBefore === undefined || diskAfter === undefined
      ? undefined
      : { readMiBPerS: mib(diskAfter.readBytes - diskBefore.readBytes) / (ms / 1000), writeMiBPerS: mib(diskAfter.writtenBytes - diskBefore.writtenBytes) / (ms / 1000), busyPercent: (100 * (diskAfter.busyMs - diskBefore.busyMs)) / ms };
  // CPU over the whole run (ramp included) per MiB at the measured rate: the ramp runs at about that rate too.
  const primaryCpuUsPerMiB = (primaryCpu.total / 100) * 1_000_000 / fio.mibPerS;
  return { mode, round, fioMiBPerS: fio.mibPerS, primaryCpu, secondaryCpu, primaryCpuUsPerMiB, disk: load, window };
}

/** Fetch on for `active` only (resume-fetch / pause-fetch on the secondaries). */
async function fetchOnlyBy(secondaries: readonly TestHost[], active: TestHost | undefined, verb: 'pause' | 'resume'): Promise<void> {
  for (const s of secondaries) if (s !== active) await mustAdm(s, `${verb}-fetch`, keepUpResource);
}

/** Adds the primary's profile shares to each run, once the primary has stopped and written its profile. */
async function addProfiles(config: Config, primary: TestHost, pid: number | undefined, runs: AttachRun[]): Promise<void> {
  if (config.cpuProfDir === undefined || pid === undefined) return;
  const path = join(config.cpuProfDir, primary.name, `marsd-${pid}.cpuprofile`);
  const profile = await readProfile(path);
  const shares = windowShares(profile, runs.map((r) => r.window));
  runs.forEach((r, i) => {
    const share = shares[i];
    if (share !== undefined) r.profile = share;
  });
  say(`(d) the primary's CPU profile: ${path}`);
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

function attachTables(runs: readonly AttachRun[]): void {
  const f0 = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(0));
  // Node 20 names every thread 'node': the pool and V8's helpers count as 'other' then (bench/thread-cpu.ts).
  const cpu = (c: AttachRun['primaryCpu'] | undefined): string => (c === undefined ? '-' : `${f0(c.main)} + ${f0(c.total - c.main)} = ${f0(c.total)}`);
  const rows: string[][] = [['run', 'fio MiB/s', 'primary CPU % main + other threads = all', 'µs CPU per MiB', 'secondary CPU %', 'disk read / write MiB/s', 'disk busy %', 'primary main thread: idle / GC / fetch / rest %']];
  for (const r of runs) {
    const p = r.profile?.percent;
    rows.push([
      `${r.round + 1} ${r.mode}`,
      r.fioMiBPerS.toFixed(1),
      cpu(r.primaryCpu),
      f0(r.primaryCpuUsPerMiB),
      cpu(r.secondaryCpu),
      r.disk === undefined ? '-' : `${f0(r.disk.readMiBPerS)} / ${f0(r.disk.writeMiBPerS)}`,
      f0(r.disk?.busyPercent),
      p === undefined ? '-' : `${f0(p.idle)} / ${f0(p.gc)} / ${f0(p.fetch)} / ${f0(p.rest)}`,
    ]);
  }
  say();
  say(table(rows));
  const rate = (m: AttachMode): number => mean(runs.filter((r) => r.mode === m).map((r) => r.fioMiBPerS));
  const alone = rate('alone');
  say();
  say(`(d) mean rates: alone ${alone.toFixed(1)} MiB/s; secondary on the disk ${rate('disk').toFixed(1)} (${(rate('disk') / alone).toFixed(2)} of alone); secondary on tmpfs ${rate('tmpfs').toFixed(1)} (${(rate('tmpfs') / alone).toFixed(2)} of alone)`);
  say("(d) tmpfs/alone: what fetch serving and the second daemon's CPU cost the primary; disk/tmpfs: what the secondary's writes on the same disk cost it");
  const top = new Map<string, number[]>();
  const attached = runs.filter((r) => r.mode !== 'alone' && r.profile !== undefined);
  for (const r of attached) for (const t of r.profile!.fetchTop) top.set(t.name, [...(top.get(t.name) ?? []), t.percent]);
  if (attached.length > 0) {
    const lines = [...top.entries()].map(([name, ps]) => [name, ps.reduce((a, b) => a + b, 0) / attached.length] as const).sort((a, b) => b[1] - a[1]).slice(0, 8);
    say(`(d) the primary's main thread, attached runs: fetch's largest self times (% of the main thread's time): ${lines.map(([n, p]) => `${n} ${p.toFixed(1)}`).join('; ')}`);
  }
}

/**
 * (d) The primary's maximum with a secondary attached as a share of its maximum alone,
 * split: interleaved rounds of the primary alone, with beta fetching (state and device on
 * the primary's disk) and with gamma fetching (on tmpfs: the disk is the primary's
 * alone). Both secondaries are fast-synced copies; between runs everyone catches up.
 */
async function attachPart(config: Config, tools: Tools, alpha: TestHost, beta: TestHost, gamma: TestHost): Promise<AttachRun[]> {
  if (!tools.fio) throw new Error('(d) needs fio (apt-get install fio)');
  const alphaDevice = await randomFile(devicePath(alpha, keepUpResource), config.sizeBytes);
  await mustAdm(alpha, 'create-resource', keepUpResource, alphaDevice);
  await waitWrittenBack(alpha, keepUpResource);
  for (const s of [beta, gamma]) {
    await copyFile(alphaDevice, devicePath(s, keepUpResource));
    await joinAndSync(s, keepUpResource, devicePath(s, keepUpResource));
    await consistentAfterSync(alpha, s, keepUpResource);
  }
  const disk = await diskOf(alphaDevice);
  const secondaries = [beta, gamma];
  const runs: AttachRun[] = [];
  for (let round = 0; round < config.rounds; round++) {
    for (let i = 0; i < attachModes.length; i++) {
      const mode = attachModes[(i + round) % attachModes.length]!;
      const active = mode === 'alone' ? undefined : mode === 'disk' ? beta : gamma;
      await settle(alpha, secondaries, keepUpResource);
      await fetchOnlyBy(secondaries, active, 'pause');
      try {
        runs.push(await attachRun(config, alpha, active, mode, round, disk));
      } finally {
        await fetchOnlyBy(secondaries, active, 'resume');
      }
    }
  }
  await settle(alpha, secondaries, keepUpResource);
  await noteRss('(d)', [alpha, beta, gamma]);
  const pid = alpha.daemon?.child.pid;
  await stopAll([alpha, beta, gamma]);
  await addProfiles(config, alpha, pid, runs);
  attachTables(runs);
  return runs;
}

function verdict(ok: boolean): string {
  return ok ? 'met' : 'MISSED';
}

function summary(keepUp: KeepUpPart | undefined, fast: FastSyncFigures | undefined, full: FullSyncFigures): void {
  say();
  say('summary against the aims:');
  const half = keepUp?.runs[0];
  const whole = keepUp?.runs[1];
  if (half !== undefined && whole !== undefined) {
    say(`  (a) apply/write at 100 %: ${whole.applyRatio.toFixed(2)} (aim >= ${aims.applyRatioMin}): ${verdict(whole.applyRatio >= aims.applyRatioMin)}`);
    say(`  (a) apply/write at 50 %: ${half.applyRatio.toFixed(2)}; lag at 50 %: p99 ${half.lagS.p99.toFixed(2)} s, max ${half.lagS.max.toFixed(2)} s (aim p99 < ${aims.lagSAtHalfMax} s): ${verdict(half.lagS.p99 < aims.lagSAtHalfMax)}`);
    const share = whole.fioMiBPerS / keepUp!.maxAlone.fio.mibPerS;
    say(`  (a) the primary's rate with a secondary attached (asked for 100 %) / alone: ${share.toFixed(2)} (aim >= ${aims.attachedShareMin}): ${verdict(share >= aims.attachedShareMin)}`);
  }
  const reference = full.nbdcopyFlushMiBPerS ?? full.nbdcopyMiBPerS;
  if (reference !== undefined) {
    const ratio = full.oursMiBPerS / reference;
    say(`  (b) full sync ours/nbdcopy${full.nbdcopyFlushMiBPerS === undefined ? '' : ' --flush'}: ${ratio.toFixed(2)} (aim >= ${aims.fullSyncRatioMin}): ${verdict(ratio >= aims.fullSyncRatioMin)}`);
  }
  if (fast?.receivedPercent !== undefined) {
    say(`  (c) fast full sync received ${fast.receivedPercent.toFixed(3)} % of the device (aim < ${aims.fastSyncPercentMax} %): ${verdict(fast.receivedPercent < aims.fastSyncPercentMax)}`);
  }
}

async function describeDir(dir: string): Promise<string> {
  const fs = await statfs(dir);
  const freeGiB = (fs.bavail * fs.bsize) / 1024 / bytesPerMiB;
  const kind = fs.type === tmpfsMagic ? 'tmpfs (memory, not a disk: set BENCH_DIR to measure a disk)' : `filesystem type 0x${fs.type.toString(16)}`;
  return `${kind}, ${freeGiB.toFixed(0)} GiB free`;
}

async function main(): Promise<void> {
  const config = readConfig();
  const tools: Tools = { fio: await installed('fio'), nbdkit: await installed('nbdkit'), nbdcopy: await installed('nbdcopy') };
  const root = await mkdtemp(join(config.parentDir, 'mars-bench-repl-'));
  let secondaryRoot = root;
  let tmpfsRoot: string | undefined;
  const hosts: TestHost[] = [];
  const cleanup = onCleanup(async () => {
    for (const child of helpers) child.kill('SIGTERM');
    const stderrs = hosts.map((h) => ({ name: h.name, text: h.daemon?.stderr() ?? '' }));
    await stopCluster(root, hosts);
    // With a stdout directory, each marsd's log (its stderr) goes beside its stdout.
    if (config.stdoutDir !== undefined) for (const e of stderrs) await writeFile(join(config.stdoutDir, `${e.name}.stderr`), e.text);
    await removeDir(secondaryRoot);
    if (tmpfsRoot !== undefined) await removeDir(tmpfsRoot);
  });
  try {
    if (config.secondaryParentDir !== config.parentDir) secondaryRoot = await mkdtemp(join(config.secondaryParentDir, 'mars-bench-repl-secondaries-'));
    if (config.parts === 'd') tmpfsRoot = await mkdtemp(join(config.tmpfsDir, 'mars-bench-repl-tmpfs-'));
    say(`replication bench: ${root} (${await describeDir(root)}); devices ${mib(config.sizeBytes)} MiB; node ${process.version}, ${cpus().length} CPUs`);
    if (secondaryRoot !== root) say(`the secondaries' state and devices: ${secondaryRoot} (${await describeDir(secondaryRoot)})`);
    if (tmpfsRoot !== undefined) say(`(d) gamma's state and device: ${tmpfsRoot} (${await describeDir(tmpfsRoot)})`);
    await startHosts([root, secondaryRoot, tmpfsRoot ?? secondaryRoot], hosts, config);
    const [alpha, beta, gamma] = hosts as [TestHost, TestHost, TestHost];
    if (config.parts === 'd') {
      const attach = await attachPart(config, tools, alpha, beta, gamma);
      await writeResults(config.resultsPath, { date: new Date().toISOString(), cpus: cpus().length, node: process.version, config, attach });
      say(`results written to ${config.resultsPath}`);
      return;
    }
    const { keepUp, fastSync } = config.parts === 'b' ? { keepUp: undefined, fastSync: undefined } : await keepUpPart(config, tools, alpha, beta);
    const fullSync = await fullSyncPart(config, tools, root, alpha, gamma);
    await noteRss('the full sync', hosts);
    fullSyncTable(fullSync);
    const rss = rssTable();
    summary(keepUp, fastSync, fullSync);
    for (const row of rss) say(`  peak RSS of ${row.host}'s marsd: ${row.peakMiB.toFixed(0)} MiB (budget < ${rssBudgetMiB} MiB): ${verdict(row.withinBudget)}`);
    if (!fullSync.identical) throw new Error(`after the full sync ${gamma.name}'s device differs from ${alpha.name}'s`);
    const report = { date: new Date().toISOString(), cpus: cpus().length, node: process.version, config, tools, keepUp: keepUp ?? null, fastSync, fullSync, rss: { budgetMiB: rssBudgetMiB, points: rssPoints, peaks: rss } };
    await writeResults(config.resultsPath, report);
    say(`results written to ${config.resultsPath}`);
  } finally {
    await cleanup();
  }
}

runMain(main);
