/**
 * Split brain, decided from what the members report (pure): two histories exist when
 * two members hold a log file with the same number written by different hosts (after a
 * forced failover both the old and the new primary wrote log N), or when a member's fetch
 * or replay found its copy at odds with its source's (the same log, longer here than the
 * source's complete one). Every member sees every member's indicator, so every host that
 * can see both histories reports the same verdict.
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
  /** The first log number written twice (0 when only a member's fetch knows of the split). */
  readonly atLog: number;
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
    if (reports.length === 0) return undefined;
    return { atLog: 0, sides: [], undecided: [], reports };
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
  return { atLog, sides, undecided, reports };
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
