/**
 * What a forced takeover loses (pure): the bytes the old primary had made durable beyond
 * the copy the new primary takes over with, as far as the cluster knows them. The
 * knowledge comes from several places, and the largest figure counts per log:
 *
 * - the old primary's indicator: the sizes of its complete logs, its durable log end
 *   while it served (refreshed every indicator refresh, so a little behind), and where its
 *   log ends for good once it no longer serves (`logEnd`);
 * - every other member's indicator: the end of its copy of the old primary's log
 *   (`copyEnd`: it was shipped only once durable there) and the last log it replayed to
 *   its end (`version`: a complete log with its length);
 * - what this host's fetch last heard from the old primary (the durable end of each log it
 *   listed or streamed).
 *
 * The count is exact only when the old primary has said where its log ends for good and
 * no later log of it is known. Otherwise it is a lower bound: the old primary may have made
 * more durable since the cluster last heard from it. When no source gives a figure for any
 * log at or beyond the copy's, nothing is known and the loss is unknown (not 0).
 */
import { parseLogName } from '../log/index.js';

/** One log of the old primary's history as known here. */
export interface KnownLog {
  readonly logNumber: number;
  readonly origin: string;
  /** Bytes known durable at the old primary. */
  readonly durableBytes: number;
  /** Its length will not change (complete, or the old primary's final log). */
  readonly final: boolean;
  /**
   * Who said so ("alpha's indicator", "gamma's copy"); empty: the log is known to exist
   * but nobody gave its durable end. Absent: a figure of unnamed origin.
   */
  readonly from?: readonly string[];
}

export interface ForcedLoss {
  /** Bytes known durable at the old primary and not held here (0 when unknown). */
  readonly lostBytes: number;
  /** True when nothing beyond `lostBytes` can be lost; false: a lower bound. */
  readonly exact: boolean;
  /** False: no source knows how far the old primary's log reached beyond the copy. */
  readonly known: boolean;
  /** The sources of the figures counted, in log order, each once. */
  readonly from: readonly string[];
}

/** Where this host's copy ends: the log (number and origin) and its verified bytes. */
export interface CopyEnd {
  readonly logNumber: number;
  readonly origin: string;
  readonly offsetBytes: number;
}

function hasFigure(log: KnownLog): boolean {
  return log.final || log.from === undefined || log.from.length > 0;
}

/** Merges what is known of each log: the largest durable end (and who said it), final if any source says so. */
export function mergeKnownLogs(...sources: readonly (readonly KnownLog[])[]): KnownLog[] {
  const byLog = new Map<string, KnownLog>();
  for (const log of sources.flat()) {
    const key = `${log.logNumber}\n${log.origin}`;
    const seen = byLog.get(key);
    if (seen === undefined) {
      byLog.set(key, log);
      continue;
    }
    const final = seen.final || log.final;
    const larger = log.durableBytes > seen.durableBytes ? log : seen;
    const from = log.durableBytes === seen.durableBytes ? unionFrom(seen.from, log.from) : larger.from;
    byLog.set(key, { logNumber: log.logNumber, origin: log.origin, durableBytes: larger.durableBytes, final, ...(from === undefined ? {} : { from }) });
  }
  return [...byLog.values()].sort((a, b) => a.logNumber - b.logNumber || (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0));
}

function unionFrom(a: readonly string[] | undefined, b: readonly string[] | undefined): readonly string[] | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  return [...new Set([...a, ...b])];
}

/**
 * The loss of a takeover with the copy ending at `local` (undefined: no copy at all), given
 * the old primary's logs as known here; `ended`: the old primary said its log ends for good.
 */
export function forcedLossOf(local: CopyEnd | undefined, known: readonly KnownLog[], ended: boolean): ForcedLoss {
  let lostBytes = 0;
  let figures = false;
  const from = new Set<string>();
  for (const log of known) {
    if (local !== undefined && log.logNumber < local.logNumber) continue;
    if (local !== undefined && log.logNumber === local.logNumber && log.origin === local.origin) lostBytes += Math.max(0, log.durableBytes - local.offsetBytes);
    else lostBytes += log.durableBytes;
    if (!hasFigure(log)) continue;
    figures = true;
    for (const source of log.from ?? []) from.add(source);
  }
  const last = known.at(-1);
  const exact = ended && (last === undefined || last.final);
  return { lostBytes, exact, known: exact || figures, from: [...from] };
}

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function wholeBytes(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** A log named in an indicator: `[logNumber, origin, bytes]`, or undefined when malformed. */
function logTriple(x: unknown): { logNumber: number; origin: string; bytes: number } | undefined {
  if (!Array.isArray(x) || x.length !== 3) return undefined;
  const [logNumber, origin, bytes] = x as unknown[];
  if (typeof logNumber !== 'number' || !Number.isSafeInteger(logNumber) || typeof origin !== 'string' || !wholeBytes(bytes)) return undefined;
  return { logNumber, origin, bytes };
}

/** The complete log a version string ("digest,log-NNNNNNNNN-ORIGIN,LENGTH:previous") names, with its length. */
function replayedLogOf(version: unknown): { logNumber: number; origin: string; bytes: number } | undefined {
  if (typeof version !== 'string') return undefined;
  const parts = version.split(':')[0]?.split(',');
  if (parts?.length !== 3) return undefined;
  const name = parseLogName(parts[1]!);
  const bytes = /^(0|[1-9][0-9]{0,15})$/.test(parts[2]!) ? Number(parts[2]) : undefined;
  return name === undefined || !wholeBytes(bytes) ? undefined : { logNumber: name.logNumber, origin: name.host, bytes };
}

/** What the old primary's own indicator says of its logs (`logs`, `durableEnd`, `logEnd`). */
export function knownFromOldIndicator(old: string, indicator: unknown): KnownLog[] {
  const a = record(indicator);
  const from = [`${old}'s indicator`];
  const out: KnownLog[] = [];
  const logs = Array.isArray(a['logs']) ? (a['logs'] as unknown[]) : [];
  for (const entry of logs) {
    if (!Array.isArray(entry) || entry.length !== 3) continue;
    const [logNumber, origin, bytes] = entry as unknown[];
    if (typeof logNumber !== 'number' || !Number.isSafeInteger(logNumber) || typeof origin !== 'string') continue;
    // The live log's size is null: it is known to exist, its end is not (durableEnd below may say).
    out.push(wholeBytes(bytes) ? { logNumber, origin, durableBytes: bytes, final: true, from } : { logNumber, origin, durableBytes: 0, final: false, from: [] });
  }
  const durable = record(a['durableEnd']);
  if (typeof durable['logNumber'] === 'number' && Number.isSafeInteger(durable['logNumber']) && wholeBytes(durable['offsetBytes'])) {
    out.push({ logNumber: durable['logNumber'], origin: old, durableBytes: durable['offsetBytes'], final: false, from });
  }
  const end = record(a['logEnd']);
  if (typeof end['logNumber'] === 'number' && Number.isSafeInteger(end['logNumber']) && wholeBytes(end['offsetBytes'])) {
    // Once it no longer serves, where its own log ends for good.
    out.push({ logNumber: end['logNumber'], origin: old, durableBytes: end['offsetBytes'], final: a['isPrimary'] !== true, from });
  }
  return out;
}

/** What another member's indicator says of the old primary's log: the end of its copy, the last log it replayed whole. */
export function knownFromMember(old: string, member: string, indicator: unknown): KnownLog[] {
  const a = record(indicator);
  const out: KnownLog[] = [];
  const copy = logTriple(a['copyEnd']);
  if (copy !== undefined && copy.origin === old) out.push({ logNumber: copy.logNumber, origin: old, durableBytes: copy.bytes, final: false, from: [`${member}'s copy`] });
  const replayed = replayedLogOf(a['version']);
  if (replayed !== undefined && replayed.origin === old) out.push({ logNumber: replayed.logNumber, origin: old, durableBytes: replayed.bytes, final: true, from: [`${member}'s replayed logs`] });
  return out;
}
