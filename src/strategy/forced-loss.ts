/**
 * What a forced takeover loses (pure): the bytes the old primary had made durable beyond
 * the copy the new primary takes over with, as far as the new primary knows them. Its
 * knowledge comes from two places, and the larger of the two counts per log: the old
 * primary's indicator (the sizes of its complete logs, and where its own log ends once it
 * no longer serves) and what the new primary's fetch last heard from it (the durable end
 * of each log it listed or streamed).
 *
 * The count is exact only when the old primary has said where its log ends for good (it no
 * longer serves: a former primary's `logEnd`) and no later log of it is known. Otherwise it
 * is a lower bound: the old primary may have made more durable since this host last heard
 * from it, which this host cannot know.
 */

/** One log of the old primary's history as known here. */
export interface KnownLog {
  readonly logNumber: number;
  readonly origin: string;
  /** Bytes known durable at the old primary. */
  readonly durableBytes: number;
  /** Its length will not change (complete, or the old primary's final log). */
  readonly final: boolean;
}

export interface ForcedLoss {
  /** Bytes known durable at the old primary and not held here. */
  readonly lostBytes: number;
  /** True when nothing beyond `lostBytes` can be lost; false: a lower bound. */
  readonly exact: boolean;
}

/** Where this host's copy ends: the log (number and origin) and its verified bytes. */
export interface CopyEnd {
  readonly logNumber: number;
  readonly origin: string;
  readonly offsetBytes: number;
}

/** Merges what is known of each log: the largest durable end, final if any source says so. */
export function mergeKnownLogs(...sources: readonly (readonly KnownLog[])[]): KnownLog[] {
  const byLog = new Map<string, KnownLog>();
  for (const log of sources.flat()) {
    const key = `${log.logNumber}\n${log.origin}`;
    const seen = byLog.get(key);
    byLog.set(key, seen === undefined ? log : { ...log, durableBytes: Math.max(seen.durableBytes, log.durableBytes), final: seen.final || log.final });
  }
  return [...byLog.values()].sort((a, b) => a.logNumber - b.logNumber || (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0));
}

/**
 * The loss of a takeover with the copy ending at `local` (undefined: no copy at all), given
 * the old primary's logs as known here; `ended`: the old primary said its log ends for good.
 */
export function forcedLossOf(local: CopyEnd | undefined, known: readonly KnownLog[], ended: boolean): ForcedLoss {
  let lostBytes = 0;
  for (const log of known) {
    if (local !== undefined && log.logNumber < local.logNumber) continue;
    if (local !== undefined && log.logNumber === local.logNumber && log.origin === local.origin) lostBytes += Math.max(0, log.durableBytes - local.offsetBytes);
    else lostBytes += log.durableBytes;
  }
  const last = known.at(-1);
  const exact = ended && (last === undefined || last.final);
  return { lostBytes, exact };
}
