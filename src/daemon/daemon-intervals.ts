/**
 * The daemon's refresh and retry intervals, and the one knob that changes them: the
 * environment variable MARS_INTERVALS (`NAME=MS,NAME=MS`), read by marsd at start.
 *
 * The defaults suit production: an indicator that changes with every write is rewritten at
 * most every few seconds, and a failed fetch is tried again after a pause. Tests and
 * tuning may shorten them; each has bounds, and a bad value stops marsd with one clear
 * error (exit 1, like a bad option value) rather than running with a guess. docs/operations.md describes the knob.
 */
import { MarsError } from '../core/errors.js';
import { loggerLimitsDefault } from '../logger/limits.js';
import { idleMsMax } from '../net/limits.js';

export interface DaemonIntervals {
  /**
   * How often a running secondary's replication progress in its indicator is refreshed,
   * and how often every running resource's indicator (and device size) is looked at.
   */
  readonly indicatorRefreshMs: number;
  /** A fetch that failed for a reason other than diverged histories starts again after this long. */
  readonly fetchRetryMs: number;
  /** A primary fdatasyncs its device and saves its writeback position at most this often (src/logger/limits.ts). */
  readonly positionPersistIntervalMs: number;
  /**
   * A peer link that receives nothing for this long is closed (src/net/limits.ts
   * idleMsMax), so that a silent outage is noticed; keepalives go at a sixth of it, at most
   * every second. Shorter: outages are noticed sooner, and a stalled event loop on either
   * side drops links sooner too.
   */
  readonly peerIdleMs: number;
}

export const defaultDaemonIntervals: DaemonIntervals = {
  indicatorRefreshMs: 5_000,
  fetchRetryMs: 5_000,
  positionPersistIntervalMs: loggerLimitsDefault.positionPersistIntervalMs,
  peerIdleMs: idleMsMax,
};

/** Bounds of every interval: below the lower one the daemon would spend its time refreshing. */
export const daemonIntervalMsMin = 100;
export const daemonIntervalMsMax = 600_000;

/** The environment variable marsd reads its intervals from. */
export const daemonIntervalsEnv = 'MARS_INTERVALS';

/** How long resize waits for a member to report a device grown underneath: a little more than one indicator refresh. */
export function resizeDeviceWaitMs(indicatorRefreshMs: number): number {
  return indicatorRefreshMs + 2_000;
}

/**
 * The intervals that `text` (the value of MARS_INTERVALS: `NAME=MS` entries separated by
 * commas) sets, over the defaults. An empty text sets none.
 */
export function parseDaemonIntervals(text: string): DaemonIntervals {
  const out: Record<string, number> = { ...defaultDaemonIntervals };
  const names = Object.keys(defaultDaemonIntervals);
  for (const entry of text.split(',').map((e) => e.trim())) {
    if (entry === '') continue;
    const m = /^([A-Za-z]+)=([0-9]{1,7})$/.exec(entry);
    if (m === null || !names.includes(m[1]!)) {
      throw new MarsError('EINVAL', `bad ${daemonIntervalsEnv} entry '${entry}': NAME=MS with NAME one of ${names.join(', ')}`);
    }
    const ms = Number(m[2]);
    if (ms < daemonIntervalMsMin || ms > daemonIntervalMsMax) {
      throw new MarsError('EINVAL', `bad ${daemonIntervalsEnv} entry '${entry}': ${m[1]} must be ${daemonIntervalMsMin} to ${daemonIntervalMsMax} ms`);
    }
    out[m[1]!] = ms;
  }
  return out as unknown as DaemonIntervals;
}
