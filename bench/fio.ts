/**
 * fio with its nbd engine (libnbd) as the load generator of `npm run bench`: the job
 * definitions, one run against an NBD URI, and the figures read back from fio's JSON
 * output (IOPS, MiB/s, p99 completion latency of the job's direction).
 */
import { run } from '../test/support/processes.js';

const bytesPerMiB = 1024 * 1024;
const nsPerMs = 1e6;
/** fio's key for the 99th percentile in `clat_ns.percentile`. */
const p99Key = '99.000000';
/** Slack on top of ramp + runtime before a time-based fio run counts as hung. */
const fioSlackMs = 120_000;

export type Direction = 'read' | 'write';

export interface FioJob {
  /** Short name, used as fio's `--name` and as the key in the JSON results. */
  readonly name: string;
  /** What a reader sees in the table. */
  readonly label: string;
  /** The direction whose figures are reported. */
  readonly direction: Direction;
  /** Workload arguments (rw, bs, iodepth, fsync, ...); the common ones are added by runFio. */
  readonly args: readonly string[];
  /** Time-based (fixed runtime, with ramp) or one pass over the region. */
  readonly timeBased: boolean;
}

/** The measured jobs; every run covers the whole device (`--size`). */
export const measuredJobs: readonly FioJob[] = [
  {
    name: 'randwrite-4k',
    label: '4 KiB rand write, QD16, flush/64',
    direction: 'write',
    args: ['--rw=randwrite', '--bs=4k', '--iodepth=16', '--fsync=64'],
    timeBased: true,
  },
  {
    name: 'seqwrite-1m',
    label: '1 MiB seq write, QD8',
    direction: 'write',
    args: ['--rw=write', '--bs=1M', '--iodepth=8'],
    timeBased: true,
  },
  {
    name: 'seqwrite-1m-flush',
    label: '1 MiB seq write, QD8, flush/64',
    direction: 'write',
    args: ['--rw=write', '--bs=1M', '--iodepth=8', '--fsync=64'],
    timeBased: true,
  },
  {
    name: 'randread-4k',
    label: '4 KiB rand read, QD16',
    direction: 'read',
    args: ['--rw=randread', '--bs=4k', '--iodepth=16'],
    timeBased: true,
  },
];

/** One sequential pass over the whole device before the read job, so that reads hit written data. */
export const prefillJob: FioJob = {
  name: 'prefill-1m',
  label: 'prefill: 1 MiB seq write, one pass',
  direction: 'write',
  args: ['--rw=write', '--bs=1M', '--iodepth=8'],
  timeBased: false,
};

export interface FioFigures {
  readonly iops: number;
  readonly mibPerS: number;
  readonly p99Ms: number;
  readonly ioBytes: number;
  readonly runtimeMs: number;
}

export interface FioRunOptions {
  readonly uri: string;
  /**
   * Instead of the NBD URI: a plain file, written with libaio and O_DIRECT (`--direct=1`),
   * which measures the disk's own rate on that filesystem. fio lays the file out first.
   */
  readonly directFile?: string;
  readonly sizeBytes: number;
  readonly runtimeS: number;
  readonly rampS: number;
  /** Bound on a one-pass (not time-based) run. */
  readonly passTimeoutMs: number;
}

/** The full fio command line of a job against one URI. */
export function fioArgs(job: FioJob, options: FioRunOptions): string[] {
  const args = [
    `--name=${job.name}`,
    ...(options.directFile === undefined ? ['--ioengine=nbd', `--uri=${options.uri}`] : ['--ioengine=libaio', '--direct=1', `--filename=${options.directFile}`]),
    `--size=${options.sizeBytes}`,
    '--numjobs=1',
    '--output-format=json',
    ...job.args,
  ];
  if (job.timeBased) args.push('--time_based', `--runtime=${options.runtimeS}`, `--ramp_time=${options.rampS}`);
  return args;
}

export function field(value: unknown, key: string): unknown {
  if (typeof value !== 'object' || value === null) return undefined;
  return (value as Record<string, unknown>)[key];
}

/** The number at `path` in fio's JSON, or an error naming the path. */
export function numberAt(value: unknown, path: readonly string[]): number {
  let at = value;
  for (const key of path) at = field(at, key);
  if (typeof at !== 'number' || !Number.isFinite(at)) throw new Error(`fio JSON has no number at ${path.join('.')}`);
  return at;
}

/** Reads the figures of `direction` from fio's JSON report (stdout may carry warnings before the JSON). */
export function parseFioJson(stdout: string, direction: Direction): FioFigures {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error('fio printed no JSON');
  const report: unknown = JSON.parse(stdout.slice(start));
  const jobs = field(report, 'jobs');
  if (!Array.isArray(jobs) || jobs.length !== 1) throw new Error('fio JSON: expected exactly one job');
  const job: unknown = jobs[0];
  const error = numberAt(job, ['error']);
  if (error !== 0) throw new Error(`fio job reported error ${error}`);
  const ioBytes = numberAt(job, [direction, 'io_bytes']);
  if (ioBytes <= 0) throw new Error(`fio job did no ${direction} I/O`);
  return {
    iops: numberAt(job, [direction, 'iops']),
    mibPerS: numberAt(job, [direction, 'bw_bytes']) / bytesPerMiB,
    p99Ms: numberAt(job, [direction, 'clat_ns', 'percentile', p99Key]) / nsPerMs,
    ioBytes,
    runtimeMs: numberAt(job, [direction, 'runtime']),
  };
}

/** Runs one fio job against `options.uri` and returns its figures; throws with fio's stderr on failure. */
export async function runFio(job: FioJob, options: FioRunOptions): Promise<FioFigures> {
  const timeoutMs = job.timeBased ? (options.rampS + options.runtimeS) * 1000 + fioSlackMs : options.passTimeoutMs;
  const result = await run('fio', fioArgs(job, options), { timeoutMs });
  if (result.code !== 0) throw new Error(`fio ${job.name} against ${options.uri} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
  return parseFioJson(result.stdout, job.direction);
}
