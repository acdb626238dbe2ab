/**
 * The ceiling of job (b), 1 MiB sequential writes: the I/O pattern our durability rules
 * ask of the disk, done by fio in C on plain files, with no NBD and no JavaScript.
 *
 * What marsd does with a stream of 1 MiB client writes (src/log/writer.ts,
 * src/logger/logger.ts), and how the fio jobs here copy it, in one fio group (all jobs at
 * once, no `stonewall`):
 *   - `log`: the log is appended with O_DIRECT into a new file, several 1 MiB writes in
 *     flight, and fdatasync'd every so often (whenever writeback finds records not yet
 *     durable, at most every 50 ms): libaio, `--direct=1`, `iodepth=8` (the client keeps
 *     8 MiB in flight, and a write is answered once it is in the log), `file_append=1` on
 *     a file that does not exist (every write allocates blocks and moves the end of the
 *     file), `fdatasync=N` (one every N MiB; logSyncMiBDefault, what the logger alone did in
 *     bench/write-path.ts with 1 MiB sequential writes).
 *   - `device`: writeback writes the same bytes through the page cache into the device
 *     file, in 1 MiB pieces: psync, buffered, into a file of the device's size written in
 *     full before the run (`overwrite=1`).
 *   - `device-sync`: the device is fdatasync'd every 5 s (the position persist): a third
 *     job that writes one 4 KiB block of the device file, thinks for 5 s (`thinktime`) and
 *     fdatasyncs the file before its next write (`fdatasync=1`), so at 5, 10, 15 s... An
 *     fdatasync covers every dirty page of the file, whichever descriptor wrote it, so this
 *     is the device's own fdatasync; its 4 KiB are not counted. fio lets its last think
 *     time run out, so a run may take up to that much longer than its runtime.
 *   - The log and the device move together: marsd writes back only what is in the log,
 *     and the log cannot run more than the shadow index (128 MiB) ahead of writeback.
 *     fio's flow control (`flow_id`, equal `flow` weights) keeps the two jobs' I/O counts
 *     equal within a few I/Os, tighter than marsd's 128 MiB; `flow_sleep` makes the job
 *     that is ahead wait instead of spinning on a CPU (it waits for its own I/O in flight
 *     first, which only the log job has).
 * What this does not copy: the unaligned head and tail of each log batch (written
 * through the page cache), the log's rotation every 1 GiB, the record headers (a few
 * dozen bytes per MiB), and everything marsd spends CPU on.
 *
 * The rate a client would see is the slower of the two streams (they are kept equal), so
 * it is comparable with job (b)'s MiB/s directly; `ours / pattern` says how much of the
 * pattern's rate marsd reaches, and `pattern / disk` how much of the disk's own
 * `fio --direct=1` rate the pattern allows.
 */
import { readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../test/support/processes.js';
import { field, numberAt } from './fio.js';

const bytesPerMiB = 1024 * 1024;
const nsPerMs = 1e6;
const usPerS = 1e6;
/** Slack on top of ramp + runtime (and the layout of the files) before a run counts as hung. */
const fioSlackMs = 180_000;
/**
 * One log fdatasync per this many MiB: what marsd's logger did with 1 MiB sequential
 * writes, 8 in flight (bench/write-path.ts counts its fdatasyncs; every 40.3 MiB in two
 * runs at 102 and 181 MiB/s, 2026-12-07).
 */
export const logSyncMiBDefault = 40;
/** Log writes in flight: the client's queue depth of job (b). */
export const logInFlight = 8;
/** Device writes in flight when the device is written with O_DIRECT (variant): writeback's pieces of one batch. */
export const deviceDirectInFlight = 4;
/** The position persist's interval (loggerLimitsDefault.positionPersistIntervalMs). */
export const deviceSyncIntervalSDefault = 5;
/** How long the job that is ahead sleeps before it looks again (fio's `flow_sleep`). */
const flowSleepUs = 200;
/** The size of a log file before rotation (loggerLimitsDefault.logRotateBytes): a recycled log overwrites one file of this size. */
export const recycledLogBytes = 1024 * bytesPerMiB;

export interface PatternVariant {
  /** Short name, the key in the JSON results. */
  readonly name: string;
  /** What a reader sees in the table. */
  readonly label: string;
  /**
   * `append`: a new file, every write extends it; `hole`: a new file extended ahead by
   * ftruncate (every write allocates blocks inside the file's size); `recycled`: a file
   * written before, overwritten in a loop.
   */
  readonly log: 'append' | 'hole' | 'recycled';
  /** One log fdatasync per this many MiB; undefined: the calibrated frequency (PatternOptions.logSyncMiB). */
  readonly logSyncMiB?: number;
  /** The device written through the page cache (as marsd does), with O_DIRECT, or not at all (the log stream alone). */
  readonly device: 'buffered' | 'direct' | 'none';
  /** Seconds between device fdatasyncs; 0: none within the run. */
  readonly deviceSyncIntervalS: number;
}

/** The pattern as marsd does it, and the variants of part (i)–(iv) of the ceiling study. */
export const patternVariants: readonly PatternVariant[] = [
  { name: 'pattern', label: 'our pattern: log appended direct, device buffered, device sync/5 s', log: 'append', device: 'buffered', deviceSyncIntervalS: deviceSyncIntervalSDefault },
  { name: 'log-recycled', label: '(i) log overwrites a recycled 1 GiB file', log: 'recycled', device: 'buffered', deviceSyncIntervalS: deviceSyncIntervalSDefault },
  { name: 'log-hole', label: '(i) log written into a new file extended ahead (ftruncate)', log: 'hole', device: 'buffered', deviceSyncIntervalS: deviceSyncIntervalSDefault },
  { name: 'device-direct', label: '(ii) device written with O_DIRECT too', log: 'append', device: 'direct', deviceSyncIntervalS: deviceSyncIntervalSDefault },
  { name: 'device-sync-1s', label: '(iii) device fdatasync every 1 s', log: 'append', device: 'buffered', deviceSyncIntervalS: 1 },
  { name: 'device-sync-never', label: '(iii) no device fdatasync in the run', log: 'append', device: 'buffered', deviceSyncIntervalS: 0 },
  { name: 'log-alone', label: 'the log stream alone (no device writes)', log: 'append', device: 'none', deviceSyncIntervalS: 0 },
  { name: 'log-alone-sync-256m', label: 'the log stream alone, fdatasync every 256 MiB', log: 'append', logSyncMiB: 256, device: 'none', deviceSyncIntervalS: 0 },
  { name: 'log-sync-64m', label: '(iv) log fdatasync every 64 MiB', log: 'append', logSyncMiB: 64, device: 'buffered', deviceSyncIntervalS: deviceSyncIntervalSDefault },
];

export interface PatternOptions {
  /** Directory for the files (the filesystem under test); the files are removed after the run. */
  readonly dir: string;
  /** Size of the device file (the bench device's size). */
  readonly deviceBytes: number;
  /** Upper bound of an appended log file: it must not be reached within the run (else fio wraps and overwrites). */
  readonly logAppendBytesMax: number;
  /** One log fdatasync per this many MiB (variants that do not set their own). */
  readonly logSyncMiB: number;
  readonly runtimeS: number;
  readonly rampS: number;
}

/** The fio job file of one variant (an ini text). */
export function patternJobFile(variant: PatternVariant, options: PatternOptions): string {
  if (!Number.isInteger(options.deviceBytes / bytesPerMiB) || options.deviceBytes <= 0) throw new Error(`device size ${options.deviceBytes} is not a whole number of MiB`);
  const logSyncMiB = variant.logSyncMiB ?? options.logSyncMiB;
  if (!Number.isInteger(logSyncMiB) || logSyncMiB < 1) throw new Error(`log fdatasync interval ${logSyncMiB} MiB is not a whole number >= 1`);
  const lines = [
    '[global]',
    'bs=1M',
    'rw=write',
    'time_based',
    `runtime=${options.runtimeS}`,
    `ramp_time=${options.rampS}`,
    '',
    '[log]',
    `filename=${join(options.dir, 'pattern-log.img')}`,
    'ioengine=libaio',
    'direct=1',
    `iodepth=${logInFlight}`,
    ...{
      append: [`size=${options.logAppendBytesMax}`, 'file_append=1', 'fallocate=none'],
      hole: [`size=${options.logAppendBytesMax}`, 'fallocate=none'],
      recycled: [`size=${recycledLogBytes}`, 'overwrite=1'],
    }[variant.log],
    `fdatasync=${logSyncMiB}`,
    'flow_id=1',
    'flow=1',
    `flow_sleep=${flowSleepUs}`,
  ];
  if (variant.device === 'none') return `${lines.join('\n')}\n`;
  lines.push(
    '',
    '[device]',
    `filename=${join(options.dir, 'pattern-device.img')}`,
    ...(variant.device === 'direct' ? ['ioengine=libaio', 'direct=1', `iodepth=${deviceDirectInFlight}`] : ['ioengine=psync', 'direct=0']),
    `size=${options.deviceBytes}`,
    'overwrite=1',
    'flow_id=1',
    'flow=1',
    `flow_sleep=${flowSleepUs}`,
  );
  if (variant.deviceSyncIntervalS > 0) {
    lines.push(
      '',
      '[device-sync]',
      `filename=${join(options.dir, 'pattern-device.img')}`,
      'ioengine=psync',
      'direct=0',
      'bs=4k',
      'size=4k',
      'overwrite=1',
      'fdatasync=1',
      `thinktime=${variant.deviceSyncIntervalS * usPerS}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export interface StreamFigures {
  readonly mibPerS: number;
  readonly ioBytes: number;
  readonly runtimeMs: number;
  /** fdatasyncs this job issued, and their mean and worst latency in ms (0 when none). */
  readonly syncs: number;
  readonly syncMeanMs: number;
  readonly syncMaxMs: number;
  /** CPU seconds fio spent on this job (user + system) over its runtime. */
  readonly cpuS: number;
}

export interface PatternFigures {
  readonly log: StreamFigures;
  /** The device stream; undefined when the variant has none (the log alone). */
  readonly device: StreamFigures | undefined;
  /** The device's fdatasyncs (the device-sync job); undefined in a variant without them. */
  readonly deviceSync: StreamFigures | undefined;
  /** What a client would get: the slower of the two streams. */
  readonly clientMiBPerS: number;
  /** fio's CPU (all jobs) per MiB the client would have written, in µs. */
  readonly cpuUsPerMiB: number;
  /** The appended log reached its size bound and wrapped (its figure then partly measures overwrites). */
  readonly logWrapped: boolean;
}

function streamFigures(job: unknown): StreamFigures {
  const name = String(field(job, 'jobname'));
  const error = numberAt(job, ['error']);
  if (error !== 0) throw new Error(`fio job ${name} reported error ${error}`);
  const runtimeMs = numberAt(job, ['write', 'runtime']);
  const syncs = numberAt(job, ['sync', 'lat_ns', 'N']);
  return {
    mibPerS: numberAt(job, ['write', 'bw_bytes']) / bytesPerMiB,
    ioBytes: numberAt(job, ['write', 'io_bytes']),
    runtimeMs,
    syncs,
    syncMeanMs: syncs === 0 ? 0 : numberAt(job, ['sync', 'lat_ns', 'mean']) / nsPerMs,
    syncMaxMs: syncs === 0 ? 0 : numberAt(job, ['sync', 'lat_ns', 'max']) / nsPerMs,
    // fio reports usr_cpu and sys_cpu in percent of one CPU over the job's runtime.
    cpuS: ((numberAt(job, ['usr_cpu']) + numberAt(job, ['sys_cpu'])) / 100) * (runtimeMs / 1000),
  };
}

/** The figures of a pattern run from fio's JSON report (stdout may carry warnings before the JSON). */
export function parsePatternJson(stdout: string, logWrapped: boolean): PatternFigures {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error('fio printed no JSON');
  const jobs = field(JSON.parse(stdout.slice(start)) as unknown, 'jobs');
  if (!Array.isArray(jobs)) throw new Error('fio JSON has no jobs');
  const byName = (name: string): unknown => jobs.find((j: unknown) => field(j, 'jobname') === name);
  const logJob = byName('log');
  const deviceJob = byName('device');
  if (logJob === undefined) throw new Error('fio JSON: expected a job named log');
  const log = streamFigures(logJob);
  const device = deviceJob === undefined ? undefined : streamFigures(deviceJob);
  if (log.ioBytes <= 0 || (device !== undefined && device.ioBytes <= 0)) throw new Error('fio pattern: a stream wrote nothing');
  const syncJob = byName('device-sync');
  const deviceSync = syncJob === undefined ? undefined : streamFigures(syncJob);
  const clientMiBPerS = Math.min(log.mibPerS, device?.mibPerS ?? log.mibPerS);
  const clientMiB = Math.min(log.ioBytes, device?.ioBytes ?? log.ioBytes) / bytesPerMiB;
  const cpuS = log.cpuS + (device?.cpuS ?? 0) + (deviceSync?.cpuS ?? 0);
  return { log, device, deviceSync, clientMiBPerS, cpuUsPerMiB: (cpuS * usPerS) / clientMiB, logWrapped };
}

/** Runs one variant in `options.dir` and removes its files; throws with fio's stderr on failure. */
export async function runPattern(variant: PatternVariant, options: PatternOptions): Promise<PatternFigures> {
  const jobPath = join(options.dir, `pattern-${variant.name}.fio`);
  const logPath = join(options.dir, 'pattern-log.img');
  const devicePath = join(options.dir, 'pattern-device.img');
  await rm(logPath, { force: true }); // an appended log must start as a new file
  // A log extended ahead: a sparse file of the bound's size. fio would append to a new file
  // (it does not ftruncate one it creates), but it leaves one of the right size as it is.
  if (variant.log === 'hole') {
    await writeFile(logPath, '');
    await truncate(logPath, options.logAppendBytesMax);
  }
  await writeFile(jobPath, patternJobFile(variant, options));
  try {
    const timeoutMs = (options.rampS + options.runtimeS) * 1000 + fioSlackMs;
    const result = await run('fio', ['--output-format=json', jobPath], { timeoutMs });
    if (result.code !== 0) throw new Error(`fio pattern ${variant.name} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
    const figures = parsePatternJson(result.stdout, false);
    // An appended log wrapped if it reached its bound; one extended ahead (its size is the bound from the start) if it wrote that much after the ramp.
    const bound = options.logAppendBytesMax;
    const logWrapped = variant.log === 'append' ? (await stat(logPath)).size >= bound : variant.log === 'hole' && figures.log.ioBytes >= bound;
    return { ...figures, logWrapped };
  } finally {
    await rm(jobPath, { force: true });
    await rm(logPath, { force: true });
    await rm(devicePath, { force: true });
  }
}

/** Flush requests the disk has completed so far (field 20 of /proc/diskstats, kernels ≥ 5.5); undefined if not there. */
export async function diskFlushes(disk: string): Promise<number | undefined> {
  for (const line of (await readFile('/proc/diskstats', 'utf8')).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[2] === disk) return f[19] === undefined ? undefined : Number(f[19]);
  }
  return undefined;
}
