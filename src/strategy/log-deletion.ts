/**
 * Who holds log deletion back, and which log files may go: pure decisions (no clock, no
 * file system) that the daemon's `log-delete` and space monitor and the simulator share.
 *
 * A member needs the logs from the one its replay stands in (or its sync started at) on.
 * A log file goes only when it is below this host's own need (the primary: written back
 * to its device; a secondary: replayed) and below every other member's need, and never
 * the last one (the log being written, or the last copy fetch appends to).
 *
 * Exceptions, both on purpose:
 * - a member stuck before an emergency's hole (its need is below the hole) holds nothing
 *   back: it needs invalidate anyway, a full sync that needs no log before the hole;
 * - under space pressure ('live-fetched'), what a member has fetched counts instead of what
 *   it has replayed, and a member unreachable for too long (dead) holds nothing back.
 */

export type HoldKind = 'replayed' | 'live-fetched';

/** What one other member reports of a resource. */
export interface MemberNeed {
  readonly host: string;
  /** The lowest log it still needs (its replay's log, or its sync's start); undefined: none reported. */
  readonly needsLog: number | undefined;
  /** The number of its last local copy (logs before it are complete there). */
  readonly fetchedLog?: number | undefined;
  /** Unreachable for longer than the limit. */
  readonly dead?: boolean;
}

export interface LogHold {
  readonly host: string;
  readonly logNumber: number;
}

/**
 * The lowest log another member still needs, and who: from the members' reports and the
 * start positions of syncs this primary served to members that have not reported yet.
 * `hole`: the last hole in the log numbering (0: none).
 */
export function logDeleteHold(members: readonly MemberNeed[], hole: number, kind: HoldKind, syncHolds: Iterable<readonly [string, number]> = []): LogHold | undefined {
  let hold: LogHold | undefined;
  const consider = (host: string, logNumber: number): void => {
    if (hold === undefined || logNumber < hold.logNumber) hold = { host, logNumber };
  };
  for (const m of members) {
    if (m.needsLog === undefined) continue;
    if (m.needsLog < hole) continue;
    if (kind === 'live-fetched' && m.dead === true) continue;
    consider(m.host, kind === 'live-fetched' ? (m.fetchedLog ?? m.needsLog) : m.needsLog);
  }
  for (const [host, logNumber] of syncHolds) consider(host, logNumber);
  return hold;
}

/**
 * The log files to delete: those below both this host's own need and `floor` (the hold's
 * log), never the last one. `files` in log order.
 */
export function logsToDelete<F extends { readonly logNumber: number }>(files: readonly F[], own: number | undefined, floor: number = Number.MAX_SAFE_INTEGER): F[] {
  if (own === undefined) return [];
  const keepFrom = Math.min(own, floor);
  const lastNumber = files.reduce((max, f) => Math.max(max, f.logNumber), 0);
  return files.filter((f) => f.logNumber < keepFrom && f.logNumber < lastNumber);
}
