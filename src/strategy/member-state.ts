/**
 * The state words of a member of a resource — its disk state and replication state, the
 * words operators know from the original — derived in one place from what is known of it:
 * its indicator (`resource/R/actual/HOST`, or this host's own status), whether this host
 * can reach it, and whether the primary's emergency left a hole it stops at. `view` on
 * this host and the member list of every host use the same rules, so a member never reads
 * differently depending on where it is looked at.
 *
 * Pure: no clock; the caller says whether the member is reachable. An unreachable
 * member's indicator is stale: its words are `Unknown Unreachable`, and the caller shows
 * what it last said with its age.
 *
 * Also here: the one codec of the indicator's value (`parseIndicator`), which checks every
 * field (values come from peers) and turns a malformed one into "absent".
 */
import type { JsonValue } from '../meta/index.js';

/** Every disk state word, for those that enumerate them (metrics' one-hot gauges). */
export const diskStateWords = ['UpToDate', 'OutDated', 'InConsistent', 'Recovery', 'Detached', 'Failed', 'EmergencyMode', 'Unknown'] as const;
/** Every replication state word. */
export const replStateWords = [
  'Replicating',
  'Recovering',
  'Stopped',
  'Syncing',
  'PausedSync',
  'PausedFetch',
  'PausedReplay',
  'PrimaryUnreachable',
  'NoSpace',
  'Failed',
  'NotLogging',
  'StoppedAtHole',
  'Waiting',
  'Unreachable',
] as const;
export type DiskState = (typeof diskStateWords)[number];
export type ReplState = (typeof replStateWords)[number];

export interface SwitchFacts {
  readonly fetch: boolean;
  readonly replay: boolean;
  readonly sync: boolean;
}

/** A running secondary's replication, as its status or its indicator says. */
export interface ReplicationFacts {
  readonly consistent: boolean;
  readonly switches: SwitchFacts;
  /** null: no sync runs or is pending. */
  readonly syncState: string | null;
  readonly fetchState: string;
  readonly replayState: string;
  /**
   * Bytes the primary has made durable that this member has not fetched yet; null while it
   * does not know (it has not heard from its source since it started): never UpToDate then.
   */
  readonly fetchRestBytes: number | null;
  /** Bytes fetched here and not replayed yet. */
  readonly replayRestBytes: number;
}

export interface MemberFacts {
  /** The member's own state word ('serving', 'recovering', 'failed', 'stopped', 'detached', 'waiting', 'unconfigured'); null before it reported. */
  readonly state: string | null;
  /** It is the designated primary (as the one who looks knows it). */
  readonly designatedPrimary: boolean;
  /** It serves as primary (exports the resource). */
  readonly servingAsPrimary: boolean;
  /** As primary, it is in emergency mode (writes straight to the device, nothing logged). */
  readonly emergency: boolean;
  /** A running secondary's replication; null when none runs (or an older indicator without it). */
  readonly replication: ReplicationFacts | null;
  /** The hole in the log numbering it cannot replay past (null: none ahead of it). */
  readonly holeAhead: number | null;
  /** This host has a link to it (always true for this host itself). */
  readonly reachable: boolean;
}

export interface MemberStateWords {
  readonly diskState: DiskState | null;
  readonly replState: ReplState | null;
}

/** The replication state of a running secondary: the first rule that applies. A failed sync falls through to Failed. */
export function replicationReplState(r: ReplicationFacts): ReplState {
  const { switches, syncState, fetchState, replayState } = r;
  if (syncState !== null && syncState !== 'done' && syncState !== 'failed') return syncState === 'paused' || !switches.sync ? 'PausedSync' : 'Syncing';
  if (fetchState === 'failed' || replayState === 'failed' || syncState === 'failed') return 'Failed';
  if (!switches.fetch || fetchState === 'paused') return 'PausedFetch';
  if (fetchState === 'paused-no-space' || replayState === 'paused-no-space') return 'NoSpace';
  if (fetchState === 'source-unreachable') return 'PrimaryUnreachable';
  if (!switches.replay || replayState === 'paused') return 'PausedReplay';
  return 'Replicating';
}

/** The disk state of a running secondary: UpToDate only when everything is fetched and replayed. */
export function replicationDiskState(r: ReplicationFacts): DiskState {
  if (!r.consistent) return 'InConsistent';
  return r.fetchRestBytes === 0 && r.replayRestBytes === 0 && r.fetchState === 'caught-up' ? 'UpToDate' : 'OutDated';
}

function stoppedWords(state: string, primary: boolean): MemberStateWords | undefined {
  switch (state) {
    case 'recovering':
      return { diskState: 'Recovery', replState: 'Recovering' };
    case 'failed':
      return { diskState: 'Failed', replState: primary ? 'Stopped' : 'Failed' };
    case 'stopped':
    case 'detached':
      return { diskState: 'Detached', replState: 'Stopped' };
    case 'waiting':
    case 'unconfigured':
      return { diskState: 'Detached', replState: 'Waiting' };
    default:
      return undefined;
  }
}

/** The disk and replication state words of one member. */
export function memberState(f: MemberFacts): MemberStateWords {
  if (!f.reachable) return { diskState: 'Unknown', replState: 'Unreachable' };
  if (f.servingAsPrimary) return f.emergency ? { diskState: 'EmergencyMode', replState: 'NotLogging' } : { diskState: 'UpToDate', replState: 'Replicating' };
  if (f.state === null) return { diskState: null, replState: null };
  const stopped = stoppedWords(f.state, f.designatedPrimary);
  if (stopped !== undefined) return stopped;
  // A state word this version does not know (a newer peer's): no words rather than a guess.
  if (f.state !== 'serving') return { diskState: null, replState: null };
  const r = f.replication;
  if (r === null) return { diskState: 'Detached', replState: 'Stopped' };
  if (f.holeAhead !== null) return { diskState: r.consistent ? 'OutDated' : 'InConsistent', replState: 'StoppedAtHole' };
  return { diskState: replicationDiskState(r), replState: replicationReplState(r) };
}

/**
 * The hole a secondary stops at: the primary is in emergency mode (the hole follows its
 * current log), or the primary's last hole lies after the log the secondary's replay is
 * in. A secondary that has no position yet (syncing) is not stopped.
 */
export function holeAheadOf(primary: { emergency: boolean; hole: number | null; needsLog: number | null } | undefined, replayLog: number | null): number | null {
  if (primary === undefined || replayLog === null) return null;
  if (primary.emergency) return Math.max(replayLog + 1, (primary.needsLog ?? 0) + 1);
  return primary.hole !== null && replayLog < primary.hole ? primary.hole : null;
}

// ---------------------------------------------------------------------------------------
// The indicator's value.

/** What a member's indicator says, each field checked. */
export interface Indicator {
  readonly state: string | null;
  readonly isPrimary: boolean;
  readonly reason: string | null;
  readonly consistent: boolean | null;
  readonly needsLog: number | null;
  readonly fetchedLog: number | null;
  readonly emergency: boolean;
  readonly hole: number | null;
  readonly nbdClients: readonly string[];
  readonly deviceBytes: number | null;
  readonly replication: IndicatorReplication | null;
}

/** A running secondary's replication in its indicator (`repl`). */
export interface IndicatorReplication extends ReplicationFacts {
  /** A running sync's progress (null: none runs). */
  readonly syncDoneBytes: number | null;
  readonly syncSizeBytes: number | null;
  /** Age in whole seconds of the oldest write its disk does not hold yet (0: holds all it knows of; null: unknown, or an indicator without it). */
  readonly lagS: number | null;
}

type JsonRecord = Record<string, JsonValue>;

function recordOf(value: JsonValue | undefined): JsonRecord | undefined {
  return value !== null && value !== undefined && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
}

function count(value: JsonValue | undefined): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function positive(value: JsonValue | undefined): number | null {
  const n = count(value);
  return n !== null && n > 0 ? n : null;
}

function text(value: JsonValue | undefined): string | null {
  return typeof value === 'string' ? value : null;
}

/** The `repl` field: [fetch, replay, sync] switches and the states and rests of fetch, replay and sync. */
export function encodeReplication(r: IndicatorReplication): JsonValue {
  return {
    consistent: r.consistent,
    switches: [r.switches.fetch, r.switches.replay, r.switches.sync],
    sync: r.syncState,
    fetch: r.fetchState,
    replay: r.replayState,
    fetchRestBytes: r.fetchRestBytes,
    replayRestBytes: r.replayRestBytes,
    syncDoneBytes: r.syncDoneBytes,
    syncSizeBytes: r.syncSizeBytes,
    lagS: r.lagS,
  };
}

export function parseReplication(value: JsonValue | undefined): IndicatorReplication | null {
  const v = recordOf(value);
  if (v === undefined) return null;
  const switches = v['switches'];
  const fetchState = text(v['fetch']);
  const replayState = text(v['replay']);
  // null is a value here: the member does not know its fetch-rest yet (not a malformed field).
  const fetchRest = v['fetchRestBytes'] === null ? 'unknown' : count(v['fetchRestBytes']);
  const replayRestBytes = count(v['replayRestBytes']);
  if (!Array.isArray(switches) || switches.length !== 3 || !switches.every((s) => typeof s === 'boolean')) return null;
  if (typeof v['consistent'] !== 'boolean' || fetchState === null || replayState === null || fetchRest === null || replayRestBytes === null) return null;
  const [fetch, replay, sync] = switches as [boolean, boolean, boolean];
  return {
    consistent: v['consistent'],
    switches: { fetch, replay, sync },
    syncState: text(v['sync']),
    fetchState,
    replayState,
    fetchRestBytes: fetchRest === 'unknown' ? null : fetchRest,
    replayRestBytes,
    syncDoneBytes: count(v['syncDoneBytes']),
    syncSizeBytes: count(v['syncSizeBytes']),
    lagS: count(v['lagS']),
  };
}

export function parseIndicator(value: JsonValue | undefined): Indicator {
  const v = recordOf(value) ?? {};
  const clients = v['nbdClients'];
  return {
    state: text(v['state']),
    isPrimary: v['isPrimary'] === true,
    reason: text(v['reason']),
    consistent: typeof v['consistent'] === 'boolean' ? v['consistent'] : null,
    needsLog: positive(v['needsLog']),
    fetchedLog: positive(v['fetchedLog']),
    emergency: v['emergency'] === true,
    hole: positive(v['hole']),
    nbdClients: Array.isArray(clients) ? clients.filter((c): c is string => typeof c === 'string') : [],
    deviceBytes: count(v['deviceBytes']),
    replication: parseReplication(v['repl']),
  };
}
