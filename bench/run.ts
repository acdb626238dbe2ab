/**
 * `npm run bench`: the same fio jobs against our export (marsd, nbd://127.0.0.1:PORT/r0)
 * and against the reference, nbdkit's file plugin, each on its own sparse file of the same
 * size on the same filesystem. Prints a table with the ratios, the peak RSS of marsd
 * (VmHWM) next to the shadow index limit, and writes the figures as JSON.
 * Everything started here is stopped by PID; the temporary directory is removed.
 * Settings come from the environment (see docs/benchmarks.md):
 *   BENCH_DIR (or --dir DIR)  parent directory of the temporary directory (default: os.tmpdir())
 *   BENCH_SIZE                device size, bytes or with K/M/G suffix (default 1G)
 *   BENCH_RUNTIME_S           runtime of each time-based fio job (default 20)
 *   BENCH_RAMP_S              fio ramp time, not measured (default 2)
 *   BENCH_JOBS                comma-separated subset of the job names
 *   BENCH_SHADOW_BYTES        marsd --shadow-bytes-max (default: marsd's own default)
 *   BENCH_MARSD_NODE_OPTIONS  NODE_OPTIONS for marsd only (e.g. --max-old-space-size=512)
 *   BENCH_MARSD_CPU_PROF      a directory: profile marsd's CPU (bench/cpu-profile.ts) and write a .cpuprofile there
 *   BENCH_MARSD_V8_FLAGS      flags for node on marsd's command line (e.g. --trace-gc, refused in NODE_OPTIONS)
 *   BENCH_MARSD_STDOUT        a file: marsd's standard output is appended there (what --trace-gc prints)
 *   BENCH_CEILING             the I/O pattern of job (b) in fio (bench/ceiling.ts): pattern (default), all, off, or variant names
 *   BENCH_CEILING_LOG_SYNC_MIB  the pattern's log fdatasync interval in MiB (default: what marsd's logger does, bench/ceiling.ts)
 *   BENCH_RESULTS             where the JSON goes (default dist/bench-results.json)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { cpus, loadavg, totalmem, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { resourceView, type HostStatusJson } from '../src/cli/view-format.js';
import { callDaemon } from '../src/control/client.js';
import { paths } from '../src/daemon/state-dir.js';
import { loggerLimitsDefault } from '../src/logger/limits.js';
import { NbdClient } from '../src/nbd/client.js';
import { freePort, marsadm, removeDir, repoRoot, run, sparseFile, startMarsd, waitFor, type Marsd } from '../test/support/processes.js';
import { diskFlushes, logSyncMiBDefault, patternVariants, runPattern, type PatternFigures, type PatternVariant } from './ceiling.js';
import { measuredJobs, prefillJob, runFio, type FioFigures, type FioJob, type FioRunOptions } from './fio.js';
import { onCleanup, runMain, say, table, writeResults } from './support.js';

const bytesPerKiB = 1024;
const usPerS = 1e6;
const bytesPerMiB = 1024 * 1024;
const sizeDefaultBytes = 1024 * bytesPerMiB;
const runtimeDefaultS = 20;
const rampDefaultS = 2;
const loopback = '127.0.0.1';
const exportName = 'r0';
const clusterHost = 'bench';
const clusterListen = '127.0.0.1:7777';
/** How long nbdkit may take to accept an NBD handshake after its start. */
const nbdkitReadyMsMax = 10_000;
/** How long marsd may take to write back what a job left in its shadow index. */
const drainMsMax = 300_000;
const drainPollMs = 50;
/** Bound on one control-socket request. */
const controlMsMax = 30_000;
/** Bound on one pass over the device (prefill). */
const passTimeoutMsMax = 900_000;
/** Bound on a clean SIGTERM stop (marsd writes everything back first); then SIGKILL. */
const stopMsMax = 120_000;
/** Bound on `sync` between runs. */
const syncMsMax = 300_000;
/** The memory promise checked by a reader: peak RSS below this plus the shadow index limit. */
const rssBaseBudgetMiB = 300;
/** USER_HZ of /proc/PID/stat; 100 on every Linux architecture Node runs on. */
const clockTicksPerS = 100;
/** Read by bench/cpu-profile.ts in marsd. */
const cpuProfDirVariable = 'BENCH_CPU_PROF_DIR';

type TargetName = 'ours' | 'nbdkit';

interface Config {
  readonly parentDir: string;
  readonly sizeBytes: number;
  readonly runtimeS: number;
  readonly rampS: number;
  readonly jobs: readonly FioJob[];
  readonly shadowBytesMax: number;
  readonly shadowBytesExplicit: boolean;
  readonly marsdNodeOptions: string | undefined;
  readonly marsdCpuProfDir: string | undefined;
  readonly marsdStdout: string | undefined;
  readonly marsdV8Flags: string | undefined;
  readonly resultsPath: string;
  /** The pattern variants of bench/ceiling.ts run after the disk reference (empty: none). */
  readonly ceilingVariants: readonly PatternVariant[];
  /** One log fdatasync per this many MiB in the pattern (variants that set none). */
  readonly ceilingLogSyncMiB: number;
}

interface Target {
  readonly name: TargetName;
  readonly uri: string;
  /** The server process, whose CPU time is measured. */
  readonly pid: number;
  /** Waits until the target has nothing pending (ours: writeback drained) and returns the wait in ms. */
  settle(): Promise<number>;
}

/** One fio run against one target, with the CPU time the server process spent meanwhile. */
interface Measured {
  readonly fio: FioFigures;
  /** User + system CPU seconds of the server process (all its threads) during the fio run, ramp included. */
  readonly serverCpuS: number;
  /** Wall-clock seconds of the fio run, ramp and start included. */
  readonly wallS: number;
  /** CPU seconds of the server's main thread alone during the fio run (marsd: its event loop). */
  readonly mainThreadCpuS: number;
  /** Seconds the disk under the bench directory was busy during the fio run (/proc/diskstats io_ticks); undefined if not found. */
  readonly diskBusyS: number | undefined;
  /** Flush requests the disk under the bench directory completed during the fio run (/proc/diskstats); undefined if not found. */
  readonly diskFlushes: number | undefined;
}

interface JobResult {
  readonly name: string;
  readonly label: string;
  readonly direction: string;
  readonly order: readonly TargetName[];
  readonly ours: Measured;
  readonly nbdkit: Measured;
  /** ours / nbdkit: higher is better for us. */
  readonly iopsRatio: number;
  /** ours / nbdkit: lower is better for us. */
  readonly p99Ratio: number;
  /** Time marsd needed after the job to write back what the job left in its shadow index. */
  readonly oursDrainMs: number;
  /** marsd's resident set after the job, and its peak so far (VmHWM), in MiB. */
  readonly marsdRssMiBAfter: { readonly current: number; readonly peak: number };
  /** marsd's WRITE payload buffers so far (view: logger.payloadBuffers): handed out reused / newly allocated; undefined from an older marsd. */
  readonly payloadBuffers: { readonly reused: number; readonly allocated: number } | undefined;
}





class UsageError extends Error {}

function envString(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function parseBytes(name: string, value: string): number {
  const m = /^(\d+)\s*([KMGT])?i?B?$/i.exec(value);
  if (m === null) throw new UsageError(`${name}=${value}: expected bytes, optionally with K, M, G or T (powers of 1024)`);
  const scale: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
  const n = Number(m[1]) * (m[2] === undefined ? 1 : (scale[m[2].toUpperCase()] ?? Number.NaN));
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${name}=${value}: out of range`);
  return n;
}

function parseSeconds(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${name}=${value}: expected a whole number of seconds >= ${min}`);
  return n;
}

function parseMiB(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name}=${value}: expected a whole number of MiB >= 1`);
  return n;
}

function dirArgument(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--dir') {
      const value = argv[i + 1];
      if (value === undefined) throw new UsageError('--dir needs a directory');
      return value;
    }
    if (arg?.startsWith('--dir=') === true) return arg.slice('--dir='.length);
    if (arg !== undefined) throw new UsageError(`unknown argument ${arg} (only --dir DIR; the rest is set by BENCH_* variables)`);
  }
  return undefined;
}

/** BENCH_CEILING: `pattern` (default: the pattern as marsd does it), `all`, `off`, or a comma-separated list of variant names. */
function ceilingVariants(value: string | undefined): readonly PatternVariant[] {
  if (value === 'off') return [];
  if (value === 'all') return patternVariants;
  const wanted = (value ?? 'pattern').split(',').map((v) => v.trim());
  return wanted.map((name) => {
    const variant = patternVariants.find((v) => v.name === name);
    if (variant === undefined) throw new UsageError(`BENCH_CEILING: unknown ${name} (off, all, or some of: ${patternVariants.map((v) => v.name).join(', ')})`);
    return variant;
  });
}

function readConfig(): Config {
  const sizeText = envString('BENCH_SIZE');
  const sizeBytes = sizeText === undefined ? sizeDefaultBytes : parseBytes('BENCH_SIZE', sizeText);
  if (sizeBytes < bytesPerMiB || sizeBytes % bytesPerMiB !== 0) throw new UsageError('BENCH_SIZE must be a whole number of MiB');
  const shadowText = envString('BENCH_SHADOW_BYTES');
  const jobsText = envString('BENCH_JOBS');
  let jobs = measuredJobs;
  if (jobsText !== undefined) {
    const wanted = jobsText.split(',').map((s) => s.trim());
    for (const name of wanted) {
      if (!measuredJobs.some((j) => j.name === name)) throw new UsageError(`BENCH_JOBS: unknown job ${name} (known: ${measuredJobs.map((j) => j.name).join(', ')})`);
    }
    jobs = measuredJobs.filter((j) => wanted.includes(j.name));
  }
  return {
    parentDir: resolve(dirArgument(process.argv.slice(2)) ?? envString('BENCH_DIR') ?? tmpdir()),
    sizeBytes,
    runtimeS: parseSeconds('BENCH_RUNTIME_S', envString('BENCH_RUNTIME_S'), runtimeDefaultS, 1),
    rampS: parseSeconds('BENCH_RAMP_S', envString('BENCH_RAMP_S'), rampDefaultS, 0),
    jobs,
    shadowBytesMax: shadowText === undefined ? loggerLimitsDefault.shadowBytesMax : parseBytes('BENCH_SHADOW_BYTES', shadowText),
    shadowBytesExplicit: shadowText !== undefined,
    marsdNodeOptions: envString('BENCH_MARSD_NODE_OPTIONS'),
    marsdCpuProfDir: envString('BENCH_MARSD_CPU_PROF'),
    marsdStdout: envString('BENCH_MARSD_STDOUT'),
    marsdV8Flags: envString('BENCH_MARSD_V8_FLAGS'),
    resultsPath: resolve(envString('BENCH_RESULTS') ?? join(repoRoot, 'dist', 'bench-results.json')),
    ceilingVariants: ceilingVariants(envString('BENCH_CEILING')),
    ceilingLogSyncMiB: parseMiB('BENCH_CEILING_LOG_SYNC_MIB', envString('BENCH_CEILING_LOG_SYNC_MIB'), logSyncMiBDefault),
  };
}

/** The first line of `TOOL --version`; a clear error when the tool is not installed. */
async function toolVersion(tool: string, hint: string): Promise<string> {
  try {
    const result = await run(tool, ['--version'], { timeoutMs: 10_000 });
    if (result.code !== 0) throw new Error(`${tool} --version exited ${result.code}`);
    return result.stdout.split('\n')[0]?.trim() ?? tool;
  } catch (err) {
    const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
    if (code === 'ENOENT') throw new UsageError(`${tool} is not installed; the benchmark needs it (${hint})`);
    throw err;
  }
}

async function mustSucceed(what: string, result: Promise<{ code: number; stdout: string; stderr: string }>): Promise<string> {
  const r = await result;
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Peak (VmHWM) and current (VmRSS) resident set of a process, in MiB. */
async function rssMiB(pid: number): Promise<{ peak: number; current: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
    if (m === null) throw new Error(`/proc/${pid}/status has no ${key}`);
    return Number(m[1]);
  };
  return { peak: (kib('VmHWM') * bytesPerKiB) / bytesPerMiB, current: (kib('VmRSS') * bytesPerKiB) / bytesPerMiB };
}

/** CPU seconds (user + system, every thread) a process has used so far, from /proc/PID/stat. */
function cpuSeconds(pid: number): Promise<number> {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/** CPU seconds of a process's main thread (its task whose id is the PID). */
function mainThreadCpuSeconds(pid: number): Promise<number> {
  return statCpuSeconds(`/proc/${pid}/task/${pid}/stat`);
}

/**
 * The /proc/diskstats name of the block device holding `dir` (its filesystem's major and
 * minor numbers), or undefined (tmpfs, overlay and other filesystems without one).
 */
async function diskOf(dir: string): Promise<string | undefined> {
  const dev = (await stat(dir, { bigint: true })).dev;
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  for (const line of (await readFile('/proc/diskstats', 'utf8')).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (Number(f[0]) === major && Number(f[1]) === minor) return f[2];
  }
  return undefined;
}

/** Milliseconds the disk has been busy so far (field 13 of /proc/diskstats, io_ticks). */
async function diskBusyMs(disk: string): Promise<number | undefined> {
  for (const line of (await readFile('/proc/diskstats', 'utf8')).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[2] === disk) return Number(f[12]);
  }
  return undefined;
}

async function statCpuSeconds(path: string): Promise<number> {
  const stat = await readFile(path, 'utf8');
  // Fields after "(comm)" start with field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot read CPU times from ${path}`);
  return (utime + stime) / clockTicksPerS;
}

async function syncFilesystems(): Promise<void> {
  await mustSucceed('sync', run('sync', [], { timeoutMs: syncMsMax }));
}

/** Resolves with the exit code, or undefined if the process did not exit within `ms`. */
function exitWithin(child: ChildProcess, exited: Promise<number>, ms: number): Promise<number | undefined> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  return Promise.race([exited, timeout]).finally(() => clearTimeout(timer));
}

interface Nbdkit {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<number>;
  stderr(): string;
}

async function startNbdkit(file: string, sizeBytes: number): Promise<Nbdkit> {
  const port = await freePort(loopback);
  const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', loopback, '-p', String(port), '-e', exportName, 'file', `file=${file}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((r) => child.on('exit', (code, signal) => r(code ?? (signal === null ? -1 : 128))));
  const spawnError = new Promise<Error>((r) => child.on('error', r));
  const nbdkit = { child, port, exited, stderr: () => stderr };
  let failure: Error | undefined;
  void spawnError.then((e) => (failure = e));
  void exited.then((code) => (failure ??= new Error(`nbdkit exited with ${code} during start: ${stderr.trim()}`)));
  await waitFor(
    'nbdkit to accept an NBD handshake',
    async () => {
      if (failure !== undefined) throw failure;
      try {
        const client = await NbdClient.connect({ host: loopback, port, exportName });
        const size = client.sizeBytes;
        await client.close();
        if (size !== sizeBytes) throw new Error(`nbdkit exports ${size} bytes, expected ${sizeBytes}`);
        return true;
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('nbdkit exports')) throw err;
        return false;
      }
    },
    nbdkitReadyMsMax,
  );
  return nbdkit;
}

async function stopNbdkit(nbdkit: Nbdkit): Promise<void> {
  if (nbdkit.child.exitCode !== null || nbdkit.child.signalCode !== null) return;
  nbdkit.child.kill('SIGTERM');
  if ((await exitWithin(nbdkit.child, nbdkit.exited, stopMsMax)) === undefined) {
    nbdkit.child.kill('SIGKILL');
    await nbdkit.exited;
  }
}

/** Sets environment variables for the duration of `fn` (startMarsd spawns with process.env). */
async function withEnv<T>(vars: Readonly<Record<string, string>>, fn: () => Promise<T>): Promise<T> {
  const saved = new Map<string, string | undefined>();
  for (const [key, value] of Object.entries(vars)) {
    saved.set(key, process.env[key]);
    process.env[key] = value;
  }
  try {
    return await fn();
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) Reflect.deleteProperty(process.env, key);
      else process.env[key] = value;
    }
  }
}

/** Starts marsd; BENCH_MARSD_NODE_OPTIONS and the profiler preload apply to it only. */
async function startOurs(stateDir: string, config: Config): Promise<Marsd> {
  const extraArgs = config.shadowBytesExplicit ? ['--shadow-bytes-max', String(config.shadowBytesMax)] : [];
  const nodeOptions: string[] = [];
  const vars: Record<string, string> = {};
  if (config.marsdNodeOptions !== undefined) nodeOptions.push(config.marsdNodeOptions);
  if (config.marsdCpuProfDir !== undefined) {
    nodeOptions.push(`--import=${pathToFileURL(join(repoRoot, 'dist', 'bench', 'cpu-profile.js')).href}`);
    vars[cpuProfDirVariable] = resolve(config.marsdCpuProfDir);
  }
  if (nodeOptions.length > 0) vars['NODE_OPTIONS'] = nodeOptions.join(' ');
  // A shell in front becomes marsd (exec: the same PID): it appends marsd's stdout (otherwise
  // dropped) to a file, and runs bin/marsd with node and the extra V8 flags. bin/marsd's own
  // environment settings are repeated here, since its shebang line is bypassed then.
  let prefix: string[] = [];
  if (config.marsdStdout !== undefined || config.marsdV8Flags !== undefined) {
    vars['BENCH_MARSD_STDOUT'] = config.marsdStdout === undefined ? '/dev/null' : resolve(config.marsdStdout);
    vars['BENCH_MARSD_V8_FLAGS'] = config.marsdV8Flags ?? '';
    vars['MALLOC_MMAP_THRESHOLD_'] = '4194304';
    vars['UV_THREADPOOL_SIZE'] = '16';
    prefix = ['sh', '-c', `exec ${JSON.stringify(process.execPath)} $BENCH_MARSD_V8_FLAGS "$@" >>"$BENCH_MARSD_STDOUT"`, 'sh'];
  }
  return withEnv(vars, () => startMarsd(stateDir, { nbdHost: loopback, extraArgs, prefix }));
}

async function stopOurs(marsd: Marsd): Promise<void> {
  if (marsd.child.exitCode !== null || marsd.child.signalCode !== null) return;
  const code = await exitWithin(marsd.child, marsd.stop(), stopMsMax);
  if (code === undefined) {
    say(`marsd did not stop within ${stopMsMax} ms after SIGTERM; killing it`);
    await marsd.kill9();
  } else if (code !== 0) {
    say(`marsd exited with ${code} on SIGTERM`);
  }
}

/** Bytes of log not yet written back to the device (what `marsadm view-replay-rest r0` prints), over the control socket. */
async function replayRestBytes(stateDir: string): Promise<number> {
  const status = (await callDaemon(paths.controlSocket(stateDir), 'view', { name: exportName }, controlMsMax)) as HostStatusJson;
  const resource = status.resources.find((r) => r.name === exportName);
  if (resource === undefined) throw new Error(`marsd does not know resource ${exportName}`);
  if (resource.state !== 'serving') throw new Error(`resource ${exportName} is ${resource.state}: ${resource.failure ?? 'no reason given'}`);
  return resourceView(status.host, resource).replayRestBytes;
}

/** marsd's payload buffer figures (reused / newly allocated, all jobs so far), from `view`. */
async function payloadBuffers(stateDir: string): Promise<{ reused: number; allocated: number } | undefined> {
  const status = (await callDaemon(paths.controlSocket(stateDir), 'view', { name: exportName }, controlMsMax)) as HostStatusJson;
  const resource = status.resources.find((r) => r.name === exportName) as { logger?: { payloadBuffers?: { reused: number; allocated: number } } } | undefined;
  const figures = resource?.logger?.payloadBuffers;
  return figures === undefined ? undefined : { reused: figures.reused, allocated: figures.allocated };
}

/** Waits until marsd has written back everything (replay-rest 0), then deletes old logs and syncs. */
async function settleOurs(stateDir: string): Promise<number> {
  const started = Date.now();
  await waitFor('marsd to write back its shadow index (replay-rest 0)', async () => (await replayRestBytes(stateDir)) === 0, drainMsMax, drainPollMs);
  const drainMs = Date.now() - started;
  await callDaemon(paths.controlSocket(stateDir), 'cron', {}, controlMsMax); // log-rotate + log-delete: bounds the disk space the logs take
  await syncFilesystems();
  return drainMs;
}

function fmt(value: number, digits: number): string {
  return value.toFixed(digits);
}

function formatIops(iops: number): string {
  return iops >= 100 ? fmt(iops, 0) : fmt(iops, 1);
}


function resultTable(results: readonly JobResult[], prefill: { ours: Measured; nbdkit: Measured } | undefined): string {
  const rows: string[][] = [
    ['job', 'ours IOPS', 'MiB/s', 'p99 ms', 'nbdkit IOPS', 'MiB/s', 'p99 ms', 'IOPS ours/nbdkit', 'p99 ours/nbdkit'],
  ];
  const row = (label: string, oursRun: Measured, refRun: Measured): string[] => {
    const ours = oursRun.fio;
    const ref = refRun.fio;
    return [
      label,
      formatIops(ours.iops),
      fmt(ours.mibPerS, 1),
      fmt(ours.p99Ms, 2),
      formatIops(ref.iops),
      fmt(ref.mibPerS, 1),
      fmt(ref.p99Ms, 2),
      fmt(ours.iops / ref.iops, 2),
      fmt(ours.p99Ms / ref.p99Ms, 2),
    ];
  };
  for (const r of results) rows.push(row(r.label, r.ours, r.nbdkit));
  if (prefill !== undefined) rows.push(row(`(${prefillJob.label})`, prefill.ours, prefill.nbdkit));
  return table(rows);
}

/**
 * Server CPU per job: percent of one core over the fio run, and CPU microseconds per I/O;
 * for marsd also its main thread's share (is the event loop the limit?), and how busy the
 * disk was during each run (is the disk the limit?).
 */
function cpuTable(results: readonly JobResult[]): string {
  const rows: string[][] = [['job', 'marsd CPU % of a core', 'main thread %', 'µs CPU per I/O', 'disk busy %', 'nbdkit CPU % of a core', 'µs CPU per I/O', 'disk busy %']];
  const busy = (m: Measured): string => (m.diskBusyS === undefined ? 'n/a' : fmt((100 * m.diskBusyS) / m.wallS, 0));
  const cells = (m: Measured): string[] => {
    const ios = m.fio.iops * (m.fio.runtimeMs / 1000);
    // CPU includes the ramp, I/Os do not: scale the CPU to the measured part of the run.
    const measuredShare = m.fio.runtimeMs / 1000 / m.wallS;
    return [fmt((100 * m.serverCpuS) / m.wallS, 0), fmt((m.serverCpuS * measuredShare * usPerS) / ios, 0)];
  };
  for (const r of results) {
    const [oursPercent, oursUs] = cells(r.ours);
    const [refPercent, refUs] = cells(r.nbdkit);
    rows.push([r.label, oursPercent!, fmt((100 * r.ours.mainThreadCpuS) / r.ours.wallS, 0), oursUs!, busy(r.ours), refPercent!, refUs!, busy(r.nbdkit)]);
  }
  return table(rows);
}

async function main(): Promise<void> {
  const config = readConfig();
  const fioVersion = await toolVersion('fio', 'apt-get install fio');
  const nbdkitVersion = await toolVersion('nbdkit', 'apt-get install nbdkit');
  await toolVersion('sync', 'coreutils');

  const dir = await mkdtemp(join(config.parentDir, 'mars-bench-'));
  const stateDir = join(dir, 'state');
  let marsd: Marsd | undefined;
  let nbdkit: Nbdkit | undefined;
  const cleanup = onCleanup(async () => {
    if (nbdkit !== undefined) await stopNbdkit(nbdkit);
    if (marsd !== undefined) await stopOurs(marsd);
    await removeDir(dir);
  });
  try {
    say(`temporary directory: ${dir}`);
    say(`device size ${config.sizeBytes / bytesPerMiB} MiB, runtime ${config.runtimeS} s + ramp ${config.rampS} s per job; ${fioVersion}, ${nbdkitVersion}, node ${process.version}, ${cpus().length} CPUs`);
    const oursFile = await sparseFile(join(dir, 'ours.img'), config.sizeBytes);
    const nbdkitFile = await sparseFile(join(dir, 'nbdkit.img'), config.sizeBytes);

    await mustSucceed('marsadm create-cluster', marsadm(stateDir, 'create-cluster', '--host', clusterHost, '--listen', clusterListen));
    marsd = await startOurs(stateDir, config);
    const marsdPid = marsd.child.pid;
    if (marsdPid === undefined) throw new Error('marsd has no PID');
    await mustSucceed('marsadm create-resource', marsadm(stateDir, 'create-resource', exportName, oursFile));
    nbdkit = await startNbdkit(nbdkitFile, config.sizeBytes);

    const nbdkitPid = nbdkit.child.pid;
    if (nbdkitPid === undefined) throw new Error('nbdkit has no PID');
    const ours: Target = { name: 'ours', pid: marsdPid, uri: `nbd://${loopback}:${marsd.nbdPort}/${exportName}`, settle: () => settleOurs(stateDir) };
    const reference: Target = {
      name: 'nbdkit',
      pid: nbdkitPid,
      uri: `nbd://${loopback}:${nbdkit.port}/${exportName}`,
      settle: async () => {
        await syncFilesystems();
        return 0;
      },
    };
    say(`ours:   marsd pid ${marsdPid}, ${ours.uri}`);
    say(`nbdkit: pid ${nbdkitPid}, ${reference.uri}`);

    const runOptions = (target: Target): FioRunOptions => ({
      uri: target.uri,
      sizeBytes: config.sizeBytes,
      runtimeS: config.runtimeS,
      rampS: config.rampS,
      passTimeoutMs: passTimeoutMsMax,
    });

    const benchDisk = await diskOf(dir);
    const measure = async (job: FioJob, target: Target): Promise<Measured> => {
      const cpuBefore = await cpuSeconds(target.pid);
      const mainBefore = await mainThreadCpuSeconds(target.pid);
      const busyBefore = benchDisk === undefined ? undefined : await diskBusyMs(benchDisk);
      const flushesBefore = benchDisk === undefined ? undefined : await diskFlushes(benchDisk);
      const started = process.hrtime.bigint();
      const fio = await runFio(job, runOptions(target));
      const wallS = Number(process.hrtime.bigint() - started) / 1e9;
      const serverCpuS = (await cpuSeconds(target.pid)) - cpuBefore;
      const mainThreadCpuS = (await mainThreadCpuSeconds(target.pid)) - mainBefore;
      const busyAfter = benchDisk === undefined ? undefined : await diskBusyMs(benchDisk);
      const diskBusyS = busyBefore === undefined || busyAfter === undefined ? undefined : (busyAfter - busyBefore) / 1000;
      const flushesAfter = benchDisk === undefined ? undefined : await diskFlushes(benchDisk);
      const flushes = flushesBefore === undefined || flushesAfter === undefined ? undefined : flushesAfter - flushesBefore;
      return { fio, serverCpuS, wallS, mainThreadCpuS, diskBusyS, diskFlushes: flushes };
    };

    const results: JobResult[] = [];
    let prefill: { ours: Measured; nbdkit: Measured } | undefined;
    for (const [index, job] of config.jobs.entries()) {
      if (job.direction === 'read' && prefill === undefined) {
        const figures: Partial<Record<TargetName, Measured>> = {};
        for (const target of [ours, reference]) {
          await target.settle();
          say(`${job.name}: prefilling ${target.name} (${prefillJob.label})`);
          figures[target.name] = await measure(prefillJob, target);
          await target.settle();
        }
        prefill = { ours: figures.ours!, nbdkit: figures.nbdkit! };
      }
      // Alternate who goes first, so that neither side always runs on a cooler (or warmer) machine.
      const order = index % 2 === 0 ? [ours, reference] : [reference, ours];
      const figures: Partial<Record<TargetName, Measured>> = {};
      let oursDrainMs = 0;
      for (const target of order) {
        await target.settle();
        say(`${job.name}: ${target.name} (${job.label})`);
        figures[target.name] = await measure(job, target);
        // Settle right after the run: the drain time is ours, and the other side's run gets a quiet machine.
        const drainMs = await target.settle();
        if (target.name === 'ours') oursDrainMs = drainMs;
      }
      const oursFigures = figures.ours!;
      const refFigures = figures.nbdkit!;
      results.push({
        name: job.name,
        label: job.label,
        direction: job.direction,
        order: order.map((t) => t.name),
        ours: oursFigures,
        nbdkit: refFigures,
        iopsRatio: oursFigures.fio.iops / refFigures.fio.iops,
        p99Ratio: oursFigures.fio.p99Ms / refFigures.fio.p99Ms,
        oursDrainMs,
        marsdRssMiBAfter: await rssMiB(marsdPid),
        payloadBuffers: await payloadBuffers(stateDir),
      });
    }

    const disk = await diskReference(config, dir, results);
    const ceiling = disk === undefined ? [] : await ceilingRuns(config, dir, benchDisk, results, disk.fio.mibPerS);

    const rss = await rssMiB(marsdPid);
    const shadowMiB = config.shadowBytesMax / bytesPerMiB;
    const budgetMiB = rssBaseBudgetMiB + shadowMiB;

    say();
    say(resultTable(results, prefill));
    say();
    say('IOPS ratio: ours/nbdkit, higher is better for us. p99 ratio: ours/nbdkit completion latency, lower is better for us.');
    say();
    say(cpuTable(results));
    say();
    if (disk !== undefined) {
      say(
        `the disk itself (fio --direct=1, libaio, on a file in the same directory): 1 MiB seq write QD8 ${fmt(disk.fio.mibPerS, 1)} MiB/s; ` +
          `ours / disk ${fmt(disk.oursRatio, 2)} (every byte is written twice, log and device: 0.5 at most on one disk, and less where durable writes are slower than these, which never flush: see the pattern below)`,
      );
      say();
    }
    if (disk !== undefined && ceiling.length > 0) {
      say(ceilingReport(ceiling, disk.fio.mibPerS, results));
      say();
    }
    for (const r of results) {
      say(
        `after ${r.name}: marsd needed ${fmt(r.oursDrainMs / 1000, 2)} s to finish writeback (replay-rest 0); ` +
          `RSS ${fmt(r.marsdRssMiBAfter.current, 0)} MiB, peak so far ${fmt(r.marsdRssMiBAfter.peak, 0)} MiB` +
          (r.payloadBuffers === undefined ? '' : `; payload buffers so far: ${r.payloadBuffers.reused} reused, ${r.payloadBuffers.allocated} newly allocated`),
      );
    }
    say(
      `marsd peak RSS (VmHWM): ${fmt(rss.peak, 1)} MiB; shadow index limit (--shadow-bytes-max): ${fmt(shadowMiB, 0)} MiB; ` +
        `budget ${rssBaseBudgetMiB} MiB + limit = ${fmt(budgetMiB, 0)} MiB: ${rss.peak < budgetMiB ? 'within' : 'EXCEEDED'}`,
    );

    const report = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryMiB: Math.round(totalmem() / bytesPerMiB), kernel: release(), node: process.version, fio: fioVersion, nbdkit: nbdkitVersion },
      config: { sizeBytes: config.sizeBytes, runtimeS: config.runtimeS, rampS: config.rampS, shadowBytesMax: config.shadowBytesMax, parentDir: config.parentDir },
      jobs: results,
      prefill: prefill ?? null,
      disk: disk ?? null,
      ceiling,
      marsd: { peakRssMiB: rss.peak, rssMiBAtEnd: rss.current, shadowBytesMaxMiB: shadowMiB, rssBudgetMiB: budgetMiB, withinBudget: rss.peak < budgetMiB },
    };
    await writeResults(config.resultsPath, report);
    say(`results written to ${config.resultsPath}`);
  } finally {
    await cleanup();
    if (config.marsdCpuProfDir !== undefined) say(`marsd CPU profile (if it stopped cleanly): ${resolve(config.marsdCpuProfDir)}/marsd-${marsd?.child.pid ?? 'PID'}.cpuprofile`);
  }
}

/**
 * The disk's own sequential write rate on the same filesystem, measured in the same run:
 * the seqwrite-1m job with libaio and O_DIRECT on a plain file (no page cache, no NBD).
 * Our 1 MiB sequential writes are compared with it (each byte goes to the log and to the
 * device, so 0.5 is the physical limit on one disk).
 */
async function diskReference(config: Config, dir: string, results: readonly JobResult[]): Promise<{ fio: FioFigures; oursRatio: number } | undefined> {
  const job = config.jobs.find((j) => j.name === 'seqwrite-1m');
  const ours = results.find((r) => r.name === 'seqwrite-1m');
  if (job === undefined || ours === undefined) return undefined;
  await syncFilesystems();
  say(`${job.name}: the disk (fio --direct=1 on a plain file)`);
  const path = join(dir, 'disk.img');
  const fio = await runFio({ ...job, name: 'disk-seqwrite-1m' }, { uri: '', directFile: path, sizeBytes: config.sizeBytes, runtimeS: config.runtimeS, rampS: config.rampS, passTimeoutMs: passTimeoutMsMax });
  await rm(path, { force: true });
  return { fio, oursRatio: ours.ours.fio.mibPerS / fio.mibPerS };
}

/** One run of a pattern variant (bench/ceiling.ts) in this bench run. */
interface CeilingRun {
  readonly name: string;
  readonly label: string;
  /** One log fdatasync per this many MiB in this run. */
  readonly logSyncMiB: number;
  /** Load average (1 minute) when the run started. */
  readonly load1: number;
  readonly figures: PatternFigures;
  /** Flushes the disk completed per second during the run (all processes); undefined if not known. */
  readonly diskFlushesPerS: number | undefined;
}

/** Bound of an appended pattern log: it must not wrap within the run (fio would then overwrite). */
const patternLogBoundFactor = 1.5;
const patternLogBytesMin = 4 * 1024 * bytesPerMiB;

/**
 * The I/O pattern of job (b), in fio on plain files in the same directory (bench/ceiling.ts),
 * right after the disk reference: the ceiling our design allows on this disk without NBD
 * or JavaScript, and the variants asked for by BENCH_CEILING. The disk's flushes per second
 * are counted for ours and for each pattern run (every process's flushes count, so on a
 * shared machine they say little).
 */
async function ceilingRuns(config: Config, dir: string, benchDisk: string | undefined, results: readonly JobResult[], diskMiBPerS: number): Promise<CeilingRun[]> {
  const ours = results.find((r) => r.name === 'seqwrite-1m')?.ours;
  if (ours === undefined || config.ceilingVariants.length === 0) return [];
  const logSyncMiB = config.ceilingLogSyncMiB;
  const logAppendBytesMax = Math.max(patternLogBytesMin, Math.ceil(diskMiBPerS * (config.runtimeS + config.rampS) * patternLogBoundFactor) * bytesPerMiB);
  const runs: CeilingRun[] = [];
  for (const variant of config.ceilingVariants) {
    await syncFilesystems();
    say(`ceiling: ${variant.name} (${variant.label})`);
    const load1 = loadavg()[0] ?? 0;
    const flushesBefore = benchDisk === undefined ? undefined : await diskFlushes(benchDisk);
    const started = process.hrtime.bigint();
    const figures = await runPattern(variant, { dir, deviceBytes: config.sizeBytes, logAppendBytesMax, logSyncMiB, runtimeS: config.runtimeS, rampS: config.rampS });
    const wallS = Number(process.hrtime.bigint() - started) / 1e9;
    const flushesAfter = benchDisk === undefined ? undefined : await diskFlushes(benchDisk);
    const diskFlushesPerS = flushesBefore === undefined || flushesAfter === undefined ? undefined : (flushesAfter - flushesBefore) / wallS;
    runs.push({ name: variant.name, label: variant.label, logSyncMiB: variant.logSyncMiB ?? logSyncMiB, load1, figures, diskFlushesPerS });
  }
  return runs;
}

/** The pattern's figures beside ours: client-equivalent MiB/s, share of the disk, ours / pattern. */
function ceilingReport(runs: readonly CeilingRun[], diskMiBPerS: number, results: readonly JobResult[]): string {
  const ours = results.find((r) => r.name === 'seqwrite-1m')?.ours;
  if (ours === undefined) return '';
  const oursFlushesPerS = ours.diskFlushes === undefined ? 'n/a' : fmt(ours.diskFlushes / ours.wallS, 1);
  const rows: string[][] = [['pattern in fio (bench/ceiling.ts)', 'MiB/s', 'log / device MiB/s', 'of disk', 'ours / it', 'log syncs: every, mean ms', 'device sync max ms', 'disk flushes/s', 'fio µs CPU per MiB', 'load']];
  for (const r of runs) {
    const f = r.figures;
    rows.push([
      r.label + (f.logWrapped ? ' (LOG WRAPPED)' : ''),
      fmt(f.clientMiBPerS, 1),
      `${fmt(f.log.mibPerS, 0)} / ${f.device === undefined ? '-' : fmt(f.device.mibPerS, 0)}`,
      fmt(f.clientMiBPerS / diskMiBPerS, 2),
      fmt(ours.fio.mibPerS / f.clientMiBPerS, 2),
      `${r.logSyncMiB} MiB, ${fmt(f.log.syncMeanMs, 1)}`,
      f.deviceSync === undefined || f.deviceSync.syncs === 0 ? '-' : fmt(f.deviceSync.syncMaxMs, 0),
      r.diskFlushesPerS === undefined ? 'n/a' : fmt(r.diskFlushesPerS, 1),
      fmt(f.cpuUsPerMiB, 0),
      fmt(r.load1, 1),
    ]);
  }
  const base = runs.find((r) => r.name === 'pattern') ?? runs[0]!;
  const logAlone = runs.find((r) => r.name === 'log-alone');
  return [
    table(rows),
    `ours: 1 MiB seq write QD8 ${fmt(ours.fio.mibPerS, 1)} MiB/s with ${oursFlushesPerS} disk flushes/s; ours / disk ${fmt(ours.fio.mibPerS / diskMiBPerS, 2)}, ` +
      `ours / ${base.name} ${fmt(ours.fio.mibPerS / base.figures.clientMiBPerS, 2)} (the pattern: the slower of its log and device streams, which fio's flow control keeps equal)` +
      (logAlone === undefined ? '' : `, ours / log alone ${fmt(ours.fio.mibPerS / logAlone.figures.clientMiBPerS, 2)} (a bound: marsd must at least write and sync its log)`),
  ].join('\n');
}

runMain(main);
