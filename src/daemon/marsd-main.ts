/**
 * marsd: one daemon per host, in the foreground. Logs to stderr (JSON lines, pino).
 * SIGTERM/SIGINT stop it cleanly: the control socket and NBD server close, every log is
 * synced, every resource written back, every file closed.
 */
import { Command, InvalidArgumentError } from 'commander';
import { pino, destination } from 'pino';
import { systemClock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { Daemon } from './daemon.js';
import { defaultNbdAddress, loadHostConfig, loadTls, parseAddress, resolveStateDir } from './state-dir.js';
import type { LoggerLimits } from '../logger/limits.js';

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

interface MarsdOptions {
  syncRate?: number;
  dir?: string;
  nbd: string;
  shadowBytesMax?: number;
  logRotateBytes?: number;
  logLevel: string;
  tls?: boolean;
}

async function main(): Promise<void> {
  const program = new Command('marsd')
    .description('MARS daemon: serves this host\'s resources over NBD and replicates them')
    .option('--dir <DIR>', 'state directory (default: $MARS_DIR, else /var/lib/mars)')
    .option('--nbd <IP:PORT>', 'address of the NBD server', defaultNbdAddress)
    .option('--shadow-bytes-max <BYTES>', 'memory for written-but-not-written-back data per resource', positiveBytes)
    .option('--log-rotate-bytes <BYTES>', 'rotate a log file once it reaches this size', positiveBytes)
    .option('--sync-rate <BYTES>', 'limit a full sync this host receives to BYTES per second (suffixes K, M, G; 0 = unlimited)', nonNegativeBytes)
    .option('--log-level <LEVEL>', 'fatal, error, warn, info, debug', 'info')
    .option('--tls', 'encrypt peer traffic with TLS 1.3 (DIR/tls.key, DIR/tls.crt, optional DIR/tls-ca.crt); every host of the cluster must use it')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .showHelpAfterError(false)
    .parse(process.argv);
  const opts = program.opts<MarsdOptions>();
  const log = pino({ name: 'marsd', level: opts.logLevel }, destination({ dest: 2, sync: true }));
  const dir = resolveStateDir(opts.dir);
  const nbd = parseAddress(opts.nbd, true);
  const limits: Partial<LoggerLimits> = {};
  if (opts.shadowBytesMax !== undefined) limits.shadowBytesMax = opts.shadowBytesMax;
  if (opts.logRotateBytes !== undefined) limits.logRotateBytes = opts.logRotateBytes;
  const hostConfig = await loadHostConfig(dir);
  const tls = opts.tls === true ? await loadTls(dir) : undefined;
  let stopping = false;
  const daemon = new Daemon({
    dir,
    hostConfig,
    nbd,
    clock: systemClock,
    limits,
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
    ...(tls === undefined ? {} : { tls }),
    ...(opts.syncRate === undefined ? {} : { syncRateBytesPerS: opts.syncRate }),
    onLeft: () => stop('leave-cluster'),
  });
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
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
  await daemon.start();
}

main().catch((err: unknown) => {
  const msg = err instanceof MarsError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`marsd: ${msg}\n`);
  process.exit(1);
});
