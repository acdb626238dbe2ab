/**
 * Split brain, decided from what the members report (pure): two histories exist when
 * two members hold a log file with the same number written by different hosts (after a
 * forced failover both the old and the new primary wrote log N), when one log ends at
 * different lengths on members that both hold it complete and one of them went on after
 * the shorter end (the common case: the old primary wrote on after the new one took over
 * with a shorter copy of its last log), or when a member's fetch or replay found its copy
 * at odds with its source's. Every member sees every member's indicator, so every host
 * that can see both histories reports the same verdict.
 *
 * `resolutionOf` turns a verdict into the commands that settle it, for either side.
 */

/** One member's report: its recent logs [number, origin, bytes or null for the live one]. */
export interface MemberHistory {
  readonly host: string;
  readonly logs: readonly (readonly [number, string, number | null])[];
  /** Why fetch or replay found the histories differ (FETCH_DIVERGED), if so. */
  readonly diverged?: string;
  /** Where a former primary's own log ends (final: it no longer writes it). */
  readonly logEnd?: { readonly logNumber: number; readonly offsetBytes: number };
}

export interface HistorySide {
  /** The host that wrote this side's log at the split. */
  readonly origin: string;
  readonly hosts: readonly string[];
  /** Bytes of log from the split on that this side holds (complete logs; the live one counts as 0): what it loses if the other side wins. */
  readonly lossBytes: number;
}

export interface SplitBrain {
  /** The first log number written twice or ended twice (0 when only a member's fetch knows of the split). */
  readonly atLog: number;
  /** Where in that log the histories part (0: at its start, two origins). */
  readonly atOffsetBytes: number;
  readonly sides: readonly HistorySide[];
  /** Members that hold no log at or after the split: they can follow either side. */
  readonly undecided: readonly string[];
  /** Members whose fetch or replay reported the divergence, with the reason. */
  readonly reports: readonly { readonly host: string; readonly reason: string }[];
}

export function detectSplitBrain(members: readonly MemberHistory[]): SplitBrain | undefined {
  const byNumber = new Map<number, Map<string, Set<string>>>();
  for (const m of members) {
    for (const [n, origin] of m.logs) {
      const origins = byNumber.get(n) ?? new Map<string, Set<string>>();
      byNumber.set(n, origins);
      const hosts = origins.get(origin) ?? new Set<string>();
      origins.set(origin, hosts);
      hosts.add(m.host);
    }
  }
  const reports = members.filter((m) => m.diverged !== undefined).map((m) => ({ host: m.host, reason: m.diverged! }));
  const atLog = [...byNumber.entries()].filter(([, origins]) => origins.size > 1).map(([n]) => n).sort((a, b) => a - b)[0];
  if (atLog === undefined) {
    const ended = endedTwice(members, reports);
    if (ended !== undefined) return ended;
    if (reports.length === 0) return undefined;
    return { atLog: 0, atOffsetBytes: 0, sides: [], undecided: [], reports };
  }
  const origins = byNumber.get(atLog)!;
  const sides: HistorySide[] = [...origins.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([origin, hosts]) => {
      let lossBytes = 0;
      for (const host of hosts) {
        const m = members.find((x) => x.host === host)!;
        // A live last log counts as 0, unless it is a former primary's final log (logEnd).
        const sizeOf = (n: number, bytes: number | null): number => bytes ?? (m.logEnd?.logNumber === n ? m.logEnd.offsetBytes : 0);
        const held = m.logs.filter(([n, o]) => n > atLog || (n === atLog && o === origin)).reduce((sum, [n, , bytes]) => sum + sizeOf(n, bytes), 0);
        lossBytes = Math.max(lossBytes, held);
      }
      return { origin, hosts: [...hosts].sort(), lossBytes };
    });
  const sided = new Set(sides.flatMap((s) => s.hosts));
  const undecided = members.filter((m) => !sided.has(m.host)).map((m) => m.host).sort();
  return { atLog, atOffsetBytes: 0, sides, undecided, reports };
}

/** The length of log `n` a member holds for good: complete, or a former primary's final log; undefined if live or absent. */
function finalLength(m: MemberHistory, n: number): number | undefined {
  const entry = m.logs.find(([x]) => x === n);
  if (entry === undefined) return undefined;
  if (entry[2] !== null) return entry[2];
  return m.logEnd?.logNumber === n ? m.logEnd.offsetBytes : undefined;
}

function bytesAfter(m: MemberHistory, n: number): number {
  return m.logs.filter(([x]) => x > n).reduce((sum, [x, , bytes]) => sum + (bytes ?? (m.logEnd?.logNumber === x ? m.logEnd.offsetBytes : 0)), 0);
}

/**
 * One log, two ends: a member went on to a later log after a copy of log N with L bytes,
 * while another holds log N (same origin) longer than L. The first is on the history that
 * went on (the origin of its next log); the second, and any member holding more than L of
 * log N, on the history of log N's writer.
 */
function endedTwice(members: readonly MemberHistory[], reports: SplitBrain['reports']): SplitBrain | undefined {
  const numbers = [...new Set(members.flatMap((m) => m.logs.map(([n]) => n)))].sort((a, b) => a - b);
  for (const n of numbers) {
    const wentOn = members.filter((m) => finalLength(m, n) !== undefined && m.logs.some(([x]) => x > n));
    if (wentOn.length === 0) continue;
    const shortest = Math.min(...wentOn.map((m) => finalLength(m, n)!));
    const longer = members.filter((m) => (finalLength(m, n) ?? 0) > shortest);
    if (longer.length === 0) continue;
    const origin = members.flatMap((m) => m.logs.filter(([x]) => x === n).map(([, o]) => o))[0]!;
    const short = wentOn.filter((m) => finalLength(m, n) === shortest);
    const nextOrigin = short.flatMap((m) => m.logs.filter(([x]) => x === n + 1).map(([, o]) => o))[0] ?? short[0]!.host;
    const sides: HistorySide[] = [
      { origin, hosts: longer.map((m) => m.host).sort(), lossBytes: Math.max(...longer.map((m) => finalLength(m, n)! - shortest + bytesAfter(m, n))) },
      { origin: nextOrigin, hosts: short.map((m) => m.host).sort(), lossBytes: Math.max(...short.map((m) => bytesAfter(m, n))) },
    ].sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0));
    const sided = new Set(sides.flatMap((side) => side.hosts));
    return { atLog: n, atOffsetBytes: shortest, sides, undecided: members.filter((m) => !sided.has(m.host)).map((m) => m.host).sort(), reports };
  }
  return undefined;
}

/** How to settle a split brain so that one side's history wins: the commands, host by host, in order. */
export interface Resolution {
  /** The side whose history is kept (its origin). */
  readonly keep: string;
  /** Bytes the other side loses. */
  readonly lossBytes: number;
  readonly steps: readonly { readonly host: string; readonly command: string }[];
}

/**
 * For each side: keep its history. The losing side's hosts each run invalidate; if the
 * designated primary is on the losing side, a host of the winning side first takes over
 * with primary --force --yes (invalidate is refused on the primary).
 */
export function resolutionOf(s: SplitBrain, resource: string, primary: string): Resolution[] {
  if (s.sides.length < 2) {
    return s.reports.map((r) => ({ keep: primary, lossBytes: 0, steps: r.host === primary ? [] : [{ host: r.host, command: `marsadm invalidate ${resource}` }] }));
  }
  return s.sides.map((keep) => {
    const losers = s.sides.filter((side) => side !== keep).flatMap((side) => side.hosts);
    const lossBytes = Math.max(0, ...s.sides.filter((side) => side !== keep).map((side) => side.lossBytes));
    const steps: { host: string; command: string }[] = [];
    if (losers.includes(primary) && keep.hosts[0] !== undefined) steps.push({ host: keep.hosts[0], command: `marsadm primary ${resource} --force --yes` });
    for (const host of losers) steps.push({ host, command: `marsadm invalidate ${resource}` });
    return { keep: keep.origin, lossBytes, steps };
  });
}

/** Reads a member's indicator (values come from peers: anything malformed counts as absent). */
export function historyOf(host: string, actual: unknown): MemberHistory {
  const a = actual !== null && typeof actual === 'object' && !Array.isArray(actual) ? (actual as Record<string, unknown>) : {};
  const logs: [number, string, number | null][] = [];
  if (Array.isArray(a['logs'])) {
    for (const entry of a['logs'] as unknown[]) {
      if (!Array.isArray(entry) || entry.length !== 3) continue;
      const [n, origin, bytes] = entry as unknown[];
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || typeof origin !== 'string') continue;
      logs.push([n, origin, typeof bytes === 'number' && Number.isSafeInteger(bytes) && bytes >= 0 ? bytes : null]);
    }
  }
  const diverged = typeof a['diverged'] === 'string' ? a['diverged'] : undefined;
  const end = a['logEnd'];
  let logEnd: MemberHistory['logEnd'];
  if (end !== null && typeof end === 'object' && !Array.isArray(end)) {
    const e = end as Record<string, unknown>;
    if (typeof e['logNumber'] === 'number' && typeof e['offsetBytes'] === 'number' && e['offsetBytes'] >= 0) logEnd = { logNumber: e['logNumber'], offsetBytes: e['offsetBytes'] };
  }
  return { host, logs, ...(diverged === undefined ? {} : { diverged }), ...(logEnd === undefined ? {} : { logEnd }) };
}
