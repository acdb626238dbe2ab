/**
 * marsd: one daemon per host, in the foreground. Logs to stderr (JSON lines, pino).
 * SIGTERM/SIGINT stop it cleanly: the control socket and NBD server close, every log is
 * synced, every resource written back, every file closed. SIGHUP (systemctl reload) checks
 * every resource's hooks.json at once and reconciles every resource again.
 */
import { Command, InvalidArgumentError } from 'commander';
import { pino, destination } from 'pino';
import type { Clock } from '../core/clock.js';
import { systemEnv } from './system-env.js';
import { MarsError } from '../core/errors.js';
import { parallelConnectionsMax } from '../fetch/lanes.js';
import { parseRate } from './bandwidth.js';
import { parseCompressionList } from '../compress/index.js';
import { marsVersion } from '../core/version.js';
import type { Daemon } from './daemon.js';
import { checkStateDir, defaultNbdAddress, loadHostConfig, loadTls, parseAddress, resolveStateDir } from './state-dir.js';
import type { LoggerLimits } from '../logger/limits.js';
import type { NbdLimits } from '../nbd/limits.js';
import { spaceLimitsDefault, type SpaceLimits } from '../space/index.js';
import type { BlockBackend } from '../nbd/backend.js';
import { daemonIntervalsEnv, parseDaemonIntervals } from './daemon-intervals.js';

function positiveBytes(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number of bytes');
  return n;
}

const byteSuffixes: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** Bytes, 0 allowed, with an optional binary suffix K, M or G. */
function nonNegativeBytes(value: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(value.trim());
  const n = match === null ? Number.NaN : Number(match[1]) * byteSuffixes[match[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number of bytes (suffixes K, M, G)');
  return n;
}

/** PERCENT:BYTES (a share of the log filesystem with an absolute floor), e.g. 5:64M. */
function threshold(value: string): { percent: number; floorBytes: number } {
  const match = /^(\d+(?:\.\d+)?):(\d+[KMG]?)$/i.exec(value.trim());
  const percent = match === null ? Number.NaN : Number(match[1]);
  if (match === null || !(percent >= 0 && percent <= 100)) throw new InvalidArgumentError('expected PERCENT:BYTES, e.g. 5:64M (percent of the log filesystem, at least BYTES)');
  return { percent, floorBytes: nonNegativeBytes(match[2]!) };
}

function positiveSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 365 * 24 * 3600) throw new InvalidArgumentError('expected seconds (more than 0)');
  return n;
}

/** The NBD buffer budget: at least two of the largest requests (32 MiB each). */
function nbdBufferBytes(value: string): number {
  const n = nonNegativeBytes(value);
  if (n < 64 * 1024 ** 2) throw new InvalidArgumentError('expected at least 64M');
  return n;
}

interface MarsdOptions {
  parallelConnections?: string;
  insecureDir?: boolean;
  nbdIdleTimeout?: number;
  nbdBufferBytes?: number;
  spaceWarn?: { percent: number; floorBytes: number };
  spaceReclaim?: { percent: number; floorBytes: number };
  spaceEmergency?: { percent: number; floorBytes: number };
  spaceHysteresis?: { percent: number; floorBytes: number };
  memberDeadAfter?: number;
  syncRate?: string;
  fetchRate?: string;
  compression?: string;
  dir?: string;
  nbd: string;
  shadowBytesMax?: number;
  logRotateBytes?: number;
  logLevel: string;
  tls?: boolean;
  metrics?: string;
}

function parseParallelConnections(text: string): number {
  if (!/^[0-9]{1,3}$/.test(text) || Number(text) < 1 || Number(text) > parallelConnectionsMax) {
    throw new MarsError('EINVAL', `bad --parallel-connections '${text}': a whole number of connections, 1 to ${parallelConnectionsMax}`);
  }
  return Number(text);
}

async function main(): Promise<void> {
  const program = new Command('marsd')
    .description('MARS daemon: serves this host\'s resources over NBD and replicates them')
    .version(marsVersion, '--version', 'print the version and exit')
    .option('--dir <DIR>', 'state directory (default: $MARS_DIR, else /var/lib/mars)')
    .option('--nbd <IP:PORT>', 'address of the NBD server', defaultNbdAddress)
    .option('--shadow-bytes-max <BYTES>', 'memory for written-but-not-written-back data per resource', positiveBytes)
    .option('--log-rotate-bytes <BYTES>', 'rotate a log file once it reaches this size', positiveBytes)
    .option('--sync-rate <RATE>', 'limit the full syncs this host receives to RATE bytes per second in all (suffixes K, M, G; default unlimited; marsadm set-rate changes it)')
    .option('--compression <LIST>', 'compressions for log shipping and sync, best first, e.g. lz4,deflate (default: lz4, brotli, deflate as this host can; none: off)')
    .option('--parallel-connections <N>', `fetch each resource's log over N connections to its source, so that one TCP window does not cap a long fat link (1 to ${parallelConnectionsMax}, default 1)`)
    .option('--fetch-rate <RATE>', 'limit the log fetch of this host to RATE bytes per second in all (suffixes K, M, G; default unlimited; marsadm set-rate changes it)')
    .option('--space-warn <PCT:BYTES>', 'log space: warn (view, daemon log) when free space falls below PCT% of the log filesystem, at least BYTES (default 20:256M)', threshold)
    .option('--space-reclaim <PCT:BYTES>', 'log space: delete logs every live member has (secondaries: replayed copies) below this (default 10:128M)', threshold)
    .option('--space-emergency <PCT:BYTES>', 'log space: the primary stops logging and writes straight to its device below this (default 5:64M)', threshold)
    .option('--space-hysteresis <PCT:BYTES>', 'log space: a stage is left only this far above its threshold (default 5:32M)', threshold)
    .option('--member-dead-after <SECONDS>', 'a member unreachable this long no longer holds logs back from reclaim (default 600)', positiveSeconds)
    .option('--nbd-idle-timeout <SECONDS>', 'close an NBD connection that sends no request and reads no reply for this long after its handshake (default 600)', positiveSeconds)
    .option('--nbd-buffer-bytes <BYTES>', 'memory for NBD write payloads and read replies of all connections together; when spent, the server stops reading requests until replies are taken (suffixes K, M, G; default 256M, at least 64M)', nbdBufferBytes)
    .option('--insecure-dir', 'accept a state directory that is writable by group or others, or not owned by this user')
    .option('--log-level <LEVEL>', 'fatal, error, warn, info, debug', 'info')
    .option('--metrics <IP:PORT>', 'serve Prometheus metrics at /metrics and a status page at / on this address (off unless given)')
    .option('--tls', 'encrypt peer traffic with TLS 1.3 (DIR/tls.key, DIR/tls.crt, optional DIR/tls-ca.crt); every host of the cluster must use it')
    .addHelpText('after', `\nEnvironment:\n  MARS_DIR        the state directory when --dir is not given\n  ${daemonIntervalsEnv}  refresh and retry intervals for tests and tuning: NAME=MS,... with NAME one of\n                  indicatorRefreshMs, fetchRetryMs, positionPersistIntervalMs, peerIdleMs (100 to 600000; see docs/operations.md)`)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError(false)
    .parse(process.argv);
  const opts = program.opts<MarsdOptions>();
  const syncRate = opts.syncRate === undefined ? undefined : parseRate(opts.syncRate, '--sync-rate');
  const fetchRate = opts.fetchRate === undefined ? undefined : parseRate(opts.fetchRate, '--fetch-rate');
  const compressions = opts.compression === undefined ? undefined : parseCompressionList(opts.compression);
  const parallelConnections = opts.parallelConnections === undefined ? undefined : parseParallelConnections(opts.parallelConnections);
  // The one place the refresh and retry intervals are read from the environment (tests and tuning shorten them).
  const intervals = parseDaemonIntervals(process.env[daemonIntervalsEnv] ?? '');
  const log = pino({ name: 'marsd', level: opts.logLevel }, destination({ dest: 2, sync: true }));
  // Every stderr line is JSON: Node's own warnings go through the log too, not as plain text.
  process.removeAllListeners('warning');
  process.on('warning', (warning) => log.warn({ warning: warning.name }, warning.message));
  const dir = resolveStateDir(opts.dir);
  const nbd = parseAddress(opts.nbd, true);
  const limits: Partial<LoggerLimits> = { positionPersistIntervalMs: intervals.positionPersistIntervalMs };
  if (opts.shadowBytesMax !== undefined) limits.shadowBytesMax = opts.shadowBytesMax;
  if (opts.logRotateBytes !== undefined) limits.logRotateBytes = opts.logRotateBytes;
  const spaceLimits = spaceLimitsFrom(opts);
  const nbdLimits: { -readonly [K in keyof NbdLimits]?: NbdLimits[K] } = {};
  if (opts.nbdIdleTimeout !== undefined) nbdLimits.idleMsMax = Math.round(opts.nbdIdleTimeout * 1000);
  if (opts.nbdBufferBytes !== undefined) {
    nbdLimits.bufferedBytesMax = opts.nbdBufferBytes;
    nbdLimits.bufferedBytesPerAddressMax = Math.max(32 * 1024 ** 2, Math.floor(opts.nbdBufferBytes / 2));
  }
  await checkStateDir(dir, opts.insecureDir === true);
  const hostConfig = await loadHostConfig(dir);
  const tls = opts.tls === true ? await loadTls(dir) : undefined;
  let stopping = false;
  const env = systemEnv();
  const started: { daemon?: Daemon } = {};
  const metrics = opts.metrics === undefined ? undefined : await startMetrics(opts.metrics, dir, hostConfig.host, env.clock, () => started.daemon, (msg) => log.warn(msg));
  // The daemon's modules (most of marsd) load only now: --help, --version and a refused
  // option, environment or state directory answer without them. A module that fails to
  // load stops marsd with its message like any other start error (exit 1).
  const { Daemon } = await import('./daemon.js');
  const daemon = new Daemon({
    dir,
    hostConfig,
    nbd,
    clock: env.clock,
    timers: env.timers,
    limits,
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
    ...(tls === undefined ? {} : { tls }),
    ...(syncRate === undefined ? {} : { syncRateBytesPerS: syncRate }),
    ...(fetchRate === undefined ? {} : { fetchRateBytesPerS: fetchRate }),
    ...(compressions === undefined ? {} : { compressions }),
    ...(parallelConnections === undefined ? {} : { parallelConnections }),
    spaceLimits,
    nbdLimits,
    intervals,
    onLeft: () => stop('leave-cluster'),
    ...(metrics === undefined ? {} : { wrapBackend: (name: string, backend: BlockBackend) => metrics.meter(name, backend) }),
  });
  started.daemon = daemon;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    metrics?.stop();
    daemon.stop().then(
      () => {
        log.info('stopped cleanly');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    if (stopping) return;
    log.info({ signal: 'SIGHUP' }, 'reloading');
    daemon.reload().then(
      () => log.info('reloaded'),
      (err: unknown) => log.error({ err }, 'reload failed'),
    );
  });
  await daemon.start();
  metrics?.observer.start();
  if (metrics !== undefined) log.info({ metrics: metrics.address }, 'metrics and status page listening');
}

/**
 * The metrics listener, before the daemon starts: a taken port or a bad address stops marsd
 * at once. Its modules (prom-client alone takes a third of a second of CPU to load) are
 * imported only when --metrics is given.
 */
async function startMetrics(address: string, dir: string, host: string, clock: Clock, daemon: () => Daemon | undefined, warn: (msg: string) => void) {
  const { host: ip, port } = parseAddress(address, true);
  const { MarsMetrics, MeteredBackend, MetricsHttpServer, Observer } = await import('../metrics/index.js');
  const observer = new Observer({ dir, clock, source: daemon });
  const metrics = new MarsMetrics(host);
  const server = new MetricsHttpServer(observer, metrics, warn);
  const bound = await server.listen(ip, port);
  return {
    observer,
    metrics,
    address: `${bound.host}:${bound.port}`,
    meter: (name: string, backend: BlockBackend): BlockBackend => new MeteredBackend(name, backend, metrics),
    stop: (): void => {
      observer.stop();
      void server.close();
    },
  };
}

/** The thresholds given on the command line, over the defaults (their caps and size shares stay). */
function spaceLimitsFrom(opts: MarsdOptions): Partial<SpaceLimits> {
  const d = spaceLimitsDefault;
  const limits: { -readonly [K in keyof SpaceLimits]?: SpaceLimits[K] } = {};
  if (opts.spaceWarn !== undefined) limits.warn = { ...d.warn, ...opts.spaceWarn };
  if (opts.spaceReclaim !== undefined) limits.reclaim = { ...d.reclaim, ...opts.spaceReclaim };
  if (opts.spaceEmergency !== undefined) limits.emergency = { ...d.emergency, ...opts.spaceEmergency };
  if (opts.spaceHysteresis !== undefined) limits.hysteresis = { ...d.hysteresis, ...opts.spaceHysteresis };
  if (opts.memberDeadAfter !== undefined) limits.memberUnreachableMsMax = Math.round(opts.memberDeadAfter * 1000);
  return limits;
}

main().catch((err: unknown) => {
  const msg = err instanceof MarsError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`marsd: ${msg}\n`);
  process.exit(1);
});
