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
  /** The log number written twice or ended twice (0 when only a member's fetch knows of the split). */
  readonly atLog: number;
  /** Where in that log the histories part (0: at its start, two origins). */
  readonly atOffsetBytes: number;
  readonly sides: readonly HistorySide[];
  /** Members that hold no log at or after the split: they can follow either side. */
  readonly undecided: readonly string[];
  /** Members whose fetch or replay reported the divergence, with the reason. */
  readonly reports: readonly { readonly host: string; readonly reason: string }[];
}

/** The earliest split brain among the members, if any (`detectSplitBrains` names every one). */
export function detectSplitBrain(members: readonly MemberHistory[]): SplitBrain | undefined {
  return detectSplitBrains(members)[0];
}

/** Where two members' histories part, and how. */
interface Parting {
  readonly atLog: number;
  readonly atOffsetBytes: number;
  /** 'origins': log atLog was written by two hosts; 'ends': one log, two ends (the shorter copy went on). */
  readonly kind: 'origins' | 'ends';
}

function compareParting(a: Parting, b: Parting): number {
  return a.atLog - b.atLog || a.atOffsetBytes - b.atOffsetBytes || (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0);
}

/**
 * Where the histories of two members first part, from the logs both still hold (either may
 * hold only a recent part of its history: a member that joined by sync starts at the sync's
 * log, logs before the oldest needed are deleted). Undefined: one continues the other as
 * far as both show, or they hold no log in common.
 */
export function partingOf(a: MemberHistory, b: MemberHistory): Parting | undefined {
  const ofB = new Map(b.logs.map(([n, origin]) => [n, origin]));
  const common = a.logs.map(([n, origin]) => [n, origin] as const).filter(([n]) => ofB.has(n)).sort(([x], [y]) => x - y);
  for (const [n, origin] of common) {
    if (ofB.get(n) !== origin) return { atLog: n, atOffsetBytes: 0, kind: 'origins' };
    const la = finalLength(a, n);
    const lb = finalLength(b, n);
    if (la === undefined || lb === undefined || la === lb) continue;
    const [short, shortBytes] = la < lb ? [a, la] : [b, lb];
    if (wentOn(short, n)) return { atLog: n, atOffsetBytes: shortBytes, kind: 'ends' };
  }
  return undefined;
}

function wentOn(m: MemberHistory, n: number): boolean {
  return m.logs.some(([x]) => x > n);
}

/**
 * Every split brain among the members, earliest first: each place where the histories of
 * two members part names one split, with the members on each side of it. Two members part
 * where both hold log N written by different hosts, or where one went on after its copy of
 * log N ended shorter than another's. Histories may begin at any log (after a sync or a log
 * deletion): only logs both members hold are compared. A member that parted from the sides
 * of a split earlier is on neither side of it, nor undecided.
 */
export function detectSplitBrains(members: readonly MemberHistory[]): SplitBrain[] {
  const sorted = [...members].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  const places = new Map<string, { parting: Parting; hosts: Set<string> }>();
  const partings = new Map<string, Parting | undefined>();
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length; j++) {
      const a = sorted[i]!;
      const b = sorted[j]!;
      const p = partingOf(a, b);
      partings.set(`${a.host}\n${b.host}`, p);
      partings.set(`${b.host}\n${a.host}`, p);
      if (p === undefined) continue;
      const key = `${p.atLog}:${p.atOffsetBytes}:${p.kind}`;
      const place = places.get(key) ?? { parting: p, hosts: new Set<string>() };
      places.set(key, place);
      place.hosts.add(a.host).add(b.host);
    }
  }
  const reports = sorted.filter((m) => m.diverged !== undefined).map((m) => ({ host: m.host, reason: m.diverged! }));
  const splits = [...places.values()]
    .sort((x, y) => compareParting(x.parting, y.parting))
    .map(({ parting, hosts }, i): SplitBrain => {
      const involved = sorted.filter((m) => hosts.has(m.host));
      const notBefore = (m: MemberHistory): boolean => involved.every((h) => { const p = partings.get(`${m.host}\n${h.host}`); return p === undefined || compareParting(p, parting) >= 0; });
      const beyond = (m: MemberHistory): boolean => m.logs.some(([n]) => n > parting.atLog || (n === parting.atLog && parting.kind === 'origins'));
      const undecided = sorted.filter((m) => !hosts.has(m.host) && !beyond(m) && notBefore(m)).map((m) => m.host);
      return { atLog: parting.atLog, atOffsetBytes: parting.atOffsetBytes, sides: sidesAt(parting, involved), undecided, reports: i === 0 ? reports : [] };
    });
  if (splits.length === 0 && reports.length > 0) return [{ atLog: 0, atOffsetBytes: 0, sides: [], undecided: [], reports }];
  return splits;
}

/** The sides of one split: the members that part there, grouped by the history each holds from it on. */
function sidesAt(p: Parting, involved: readonly MemberHistory[]): HistorySide[] {
  // Keyed by the origin of log atLog ('origins'), or by which end a member holds ('ends').
  const bySide = new Map<string, { origin: string; hosts: string[]; lossBytes: number }>();
  for (const m of involved) {
    const atEntry = m.logs.find(([n]) => n === p.atLog);
    let key: string;
    let origin: string;
    let held: number;
    if (p.kind === 'origins') {
      key = origin = atEntry?.[1] ?? m.host;
      held = m.logs.filter(([n]) => n >= p.atLog).reduce((sum, [n, , bytes]) => sum + sizeOf(m, n, bytes), 0);
    } else if ((finalLength(m, p.atLog) ?? 0) > p.atOffsetBytes) {
      key = 'longer';
      origin = atEntry?.[1] ?? m.host;
      held = finalLength(m, p.atLog)! - p.atOffsetBytes + bytesAfter(m, p.atLog);
    } else {
      key = 'went-on';
      origin = m.logs.filter(([n]) => n > p.atLog).sort(([x], [y]) => x - y)[0]?.[1] ?? m.host;
      held = bytesAfter(m, p.atLog);
    }
    const side = bySide.get(key) ?? { origin, hosts: [], lossBytes: 0 };
    bySide.set(key, side);
    side.hosts.push(m.host);
    side.lossBytes = Math.max(side.lossBytes, held);
  }
  return [...bySide.values()]
    .map((side) => ({ origin: side.origin, hosts: side.hosts.sort(), lossBytes: side.lossBytes }))
    .sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : a.hosts[0]! < b.hosts[0]! ? -1 : 1));
}

/** A log's size as held: a complete one's length, a former primary's final log's end, a live one 0. */
function sizeOf(m: MemberHistory, n: number, bytes: number | null): number {
  return bytes ?? (m.logEnd?.logNumber === n ? m.logEnd.offsetBytes : 0);
}

/** The length of log `n` a member holds for good: complete, or a former primary's final log; undefined if live or absent. */
function finalLength(m: MemberHistory, n: number): number | undefined {
  const entry = m.logs.find(([x]) => x === n);
  if (entry === undefined) return undefined;
  if (entry[2] !== null) return entry[2];
  return m.logEnd?.logNumber === n ? m.logEnd.offsetBytes : undefined;
}

function bytesAfter(m: MemberHistory, n: number): number {
  return m.logs.filter(([x]) => x > n).reduce((sum, [x, , bytes]) => sum + sizeOf(m, x, bytes), 0);
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
