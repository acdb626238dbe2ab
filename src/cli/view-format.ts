/**
 * What `marsadm view` and `view-MACRO` print, computed from the daemon's status answer.
 * Pure functions: the CLI prints their result, tests check them.
 *
 * The daemon answers the control request `view` with a `HostStatusJson`. `resourceView`
 * turns each resource into a `ResourceView`: the words operators know from the original
 * MARS (disk state, replication state, role) and the amounts scripts read (`*-rest`).
 * `marsadm view --json` prints `{ schemaVersion, generatedAt, host, resources:
 * ResourceView[] }`; that JSON is a contract for scripts, so fields are only ever added,
 * never renamed (schemaVersion grows when they are):
 *
 *   resource, host, sizeBytes, role, primarynode, isPrimary, isConsistent, isSplitBrain,
 *   splitBrain: { atLog, atOffsetBytes, sides, undecided, reports } | null   the earliest split
 *   laterSplitBrains: [splitBrain, …]                 every later split (the histories parted again)
 *   diskState, replState, fetchRestBytes (null: unknown), replayRestBytes, syncRestBytes, logBytes,
 *   logFiles, currentLog?, failure?, detached?, warning?   (? = left out when not set)
 *   switches: { fetch, replay, sync } | null          the operator's switches (secondary)
 *   sync:   { state, sizeBytes, doneBytes, restBytes, rateBytesPerS, rateLimitBytesPerS,
 *             remainingS, error, compression } | null  null: no sync runs or is pending
 *   fetch:  { state, source, logName, localBytes, restBytes (null: unknown), rateBytesPerS, remainingS,
 *             error, lastContactS, compression, connections } | null  null: not an attached secondary
 *   replay: { state, position, restBytes, rateBytesPerS, remainingS, error } | null
 *   members: [{ host, primary, diskState, replState, needsLog, reason,
 *               heldBackBytes, unreachableS, dead, emergency, hole,
 *               reachable, lastSeenAt, indicatorAgeS, lastDiskState, lastReplState,
 *               fetchLagBytes, replayLagBytes, lagS, switches, sync }]  sorted by host
 *   noSecondaryReplicating                            this host serves and no secondary replicates
 *   logDeleteHeldBy: { host, logNumber } | null
 *   isEmergency                                       the primary writes straight to its device
 *   emergency: { active, hole, reason } | null        this host as primary: emergency mode, last hole (0: none)
 *   syncMode: { mode, state, members, timeoutMs, waiting, fallbacks, reason, acked } | null
 *                                                     the resource's sync mode (async | near-sync); state
 *                                                     off | near-sync | fallen-back on the serving primary, else null
 *   isFallenBack                                      the serving primary's near-sync fell back to asynchronous
 *   stoppedAtHole: number | null                      a secondary: the hole (log number) it stops at
 *   space: { sizeBytes, freeBytes, stage, thresholds: { warnBytes, reclaimBytes,
 *            emergencyBytes, hysteresisBytes } } | null    the log filesystem of this host
 *
 * `remainingS` is whole seconds until the rest is done at the current rate (rounded up),
 * 0 when nothing is left, and null when the rate is 0 or the rest is unknown.
 *
 * A secondary's fetch-rest is unknown (`fetchRestBytes` and `fetch.restBytes` null; the
 * human view and `view-fetch-rest` print `unknown`) until its fetch has heard from the
 * primary how far its log goes: just after a restart, while the primary is unreachable,
 * while fetch is paused, or while no replica runs here (detached, stopped, failed). It is never shown as 0 then: 0 means caught up. The sync's
 * `rateBytesPerS` is its bytes on the link (both directions, what `--sync-rate` and
 * `set-rate --sync` limit) over the last 10 s; its `remainingS` follows the device bytes
 * compared per second (equal blocks cost only their digests on the link).
 */
import { resolutionOf } from '../strategy/split-brain.js';
import { logBytesBetween } from '../log/names.js';
import { holeAheadOf, memberState, replicationDiskState, replicationReplState, type DiskState, type ReplicationFacts, type ReplState } from '../strategy/member-state.js';
import type { MacroName } from './macro-names.js';

export interface PositionJson {
  logNumber: number;
  logHost: string;
  offsetBytes: number;
  nextSeq: string;
}

export type SyncState = 'syncing' | 'paused' | 'source-unreachable' | 'done' | 'failed';
export type FetchState = 'idle' | 'source-unreachable' | 'fetching' | 'caught-up' | 'waiting-for-source' | 'paused-no-space' | 'failed' | 'stopped' | 'paused' | 'waiting-for-sync';
export type ReplayState = 'idle' | 'replaying' | 'caught-up' | 'paused' | 'paused-no-space' | 'failed' | 'stopped' | 'waiting-for-sync';

export interface SyncStatusJson {
  state: SyncState;
  sizeBytes: number;
  doneBytes: number;
  restBytes: number;
  /** Bytes on the sync link per second (both directions, what the limit counts), over the last 10 s. */
  rateBytesPerS: number;
  /** The daemon's answer only: device bytes compared per second, for the remaining time (not in --json). */
  progressBytesPerS?: number;
  rateLimitBytesPerS: number;
  error: string | null;
  /** The compression of the block data on the sync link (null: none seen yet). */
  compression?: string | null;
}

export interface FetchStatusJson {
  state: FetchState;
  source: string;
  logName: string | null;
  localBytes: number;
  /** null: unknown (fetch has not heard from its source since it started). */
  restBytes: number | null;
  rateBytesPerS: number;
  error: string | null;
  /** Seconds since the source was last heard from (null: never). */
  lastContactS?: number | null;
  /** The compression the link to the source uses (null: no link). */
  compression?: string | null;
  /** Open fetch connections to the source (marsd --parallel-connections). */
  connections?: number;
}

export interface ReplayStatusJson {
  state: ReplayState;
  position: PositionJson | null;
  restBytes: number;
  rateBytesPerS: number;
  error: string | null;
}

export interface SwitchesJson {
  fetch: boolean;
  replay: boolean;
  sync: boolean;
}

export interface ReplicaStatusJson {
  /** Sync done and replay reached the sync's end position (or no sync was needed). */
  consistent: boolean;
  /** The operator's switches (pause-fetch etc. set them false). */
  switches: SwitchesJson;
  /** null when no sync is running or pending (the copy was already consistent). */
  sync: SyncStatusJson | null;
  fetch: FetchStatusJson;
  replay: ReplayStatusJson;
}

export interface MemberStatusJson {
  host: string;
  primary: boolean;
  diskState: string | null;
  replState: string | null;
  needsLog: number | null;
  reason: string | null;
  /** This host has a link to the member (absent from older daemons: taken as reachable). */
  reachable?: boolean;
  /** When this host last had a link to it (ISO 8601). */
  lastSeenAt?: string;
  /** Seconds since the member wrote its indicator. */
  indicatorAgeS?: number | null;
  /** An unreachable member: the words its indicator last said (stale). */
  lastDiskState?: string | null;
  lastReplState?: string | null;
  /** A running secondary's lag: bytes not fetched yet, and fetched but not replayed. */
  fetchLagBytes?: number | null;
  lagS?: number | null;
  replayLagBytes?: number | null;
  switches?: SwitchesJson | null;
  sync?: { state: string; doneBytes: number | null; sizeBytes: number | null } | null;
  /** Bytes of log this host keeps only because the member still needs them. */
  heldBackBytes?: number | null;
  /** Seconds since this host last reached the member (null: reachable). */
  unreachableS?: number | null;
  /** Unreachable for longer than the limit (marsd --member-dead-after): it no longer holds logs back from reclaim. */
  dead?: boolean;
  /** The member, as primary, is in emergency mode. */
  emergency?: boolean;
  /** The last hole in the log numbering the member reports (null: none). */
  hole?: number | null;
}

export type SpaceStage = 'ok' | 'warn' | 'reclaim' | 'emergency';

export interface SpaceJson {
  sizeBytes: number;
  freeBytes: number;
  stage: SpaceStage;
  thresholds: { warnBytes: number; reclaimBytes: number; emergencyBytes: number; hysteresisBytes: number };
}

export interface EmergencyJson {
  active: boolean;
  hole: number;
  reason: string | null;
}

/** The resource's sync mode (src/logger/near-sync.ts); `state` only on the serving primary. */
export interface SyncModeJson {
  mode: 'async' | 'near-sync';
  /** off, near-sync, or fallen-back (near-sync asked for, the members did not keep up: asynchronous until they do). */
  state: 'off' | 'near-sync' | 'fallen-back' | null;
  members: number;
  timeoutMs: number;
  waiting: number;
  fallbacks: number;
  reason: string | null;
  acked: Record<string, { logNumber: number; endOffsetBytes: number }>;
}

export interface LogDeleteHolderJson {
  host: string;
  logNumber: number;
}

export interface ResourceStatusJson {
  name: string;
  sizeBytes: number;
  devicePath: string;
  primary: string;
  /** On a secondary, 'serving' means its replica runs. */
  state: 'recovering' | 'serving' | 'failed' | 'stopped';
  failure?: string | null;
  /** null on a secondary. */
  logger?: {
    logPosition: PositionJson;
    writtenBack: PositionJson;
    shadowBytes: number;
    writesWaiting: number;
    positionError?: string | null;
  } | null;
  logFiles: { name: string; sizeBytes: number }[];
  /** This host's role as configured: 'primary' when the resource's designated primary is this host. */
  role?: 'primary' | 'secondary';
  /** Only on a secondary that is attached (null on the primary or when detached). */
  replica?: ReplicaStatusJson | null;
  /** Every member of the resource as the metadata says (this host included), sorted by host. */
  members?: MemberStatusJson[];
  /** The member whose replay holds log deletion back on this host, if any. */
  logDeleteHeldBy?: LogDeleteHolderJson | null;
  /** Two histories of the resource, as the members' indicators show (src/strategy/split-brain.ts). */
  splitBrain?: SplitBrainJson | null;
  /** The split brains after the first, when the histories parted more than once. */
  laterSplitBrains?: SplitBrainJson[];
  /** The log filesystem of this host (the space monitor's last look). */
  space?: SpaceJson | null;
  /** This host as the serving primary: emergency mode and the last hole. */
  emergency?: EmergencyJson | null;
  /** The resource's sync mode, with this host's near-sync state as the serving primary. */
  syncMode?: SyncModeJson | null;
}

export interface HostStatusJson {
  host: string;
  clusterId: string;
  listen: string;
  nbd: string;
  resources: ResourceStatusJson[];
}

export type { DiskState, ReplState } from '../strategy/member-state.js';

export interface SyncView extends SyncStatusJson {
  remainingS: number | null;
}

export interface FetchView extends FetchStatusJson {
  remainingS: number | null;
}

export interface ReplayView extends ReplayStatusJson {
  remainingS: number | null;
}

export interface ResourceView {
  resource: string;
  host: string;
  sizeBytes: number;
  role: 'Primary' | 'Secondary' | 'NotYetPrimary';
  primarynode: string;
  isPrimary: boolean;
  isConsistent: boolean;
  isSplitBrain: boolean;
  splitBrain: SplitBrainJson | null;
  /** The split brains after the first (the histories parted more than once), earliest first. */
  laterSplitBrains: SplitBrainJson[];
  diskState: DiskState;
  replState: ReplState;
  /** null: unknown (a secondary whose fetch has not heard from its primary). */
  fetchRestBytes: number | null;
  replayRestBytes: number;
  syncRestBytes: number;
  logBytes: number;
  logFiles: number;
  currentLog: string | undefined;
  failure: string | undefined;
  /** Why a resource that is not failed is not served here (switched off, a secondary waiting). */
  detached: string | undefined;
  warning: string | undefined;
  switches: SwitchesJson | null;
  sync: SyncView | null;
  fetch: FetchView | null;
  replay: ReplayView | null;
  members: MemberStatusJson[];
  logDeleteHeldBy: LogDeleteHolderJson | null;
  isEmergency: boolean;
  emergency: EmergencyJson | null;
  syncMode: SyncModeJson | null;
  /** Serving primary in near-sync mode that fell back to asynchronous replication. */
  isFallenBack: boolean;
  /** A secondary that cannot replay further: the primary's emergency left a hole at this log number (or is going on: the next number). */
  stoppedAtHole: number | null;
  space: SpaceJson | null;
  /** This host serves as primary and none of its secondaries replicates. */
  noSecondaryReplicating: boolean;
}

/** Whole seconds until `restBytes` are done at `rateBytesPerS`; 0 when none are left; null when unknown. */
export function remainingSeconds(restBytes: number, rateBytesPerS: number): number | null {
  if (!(restBytes > 0)) return 0;
  if (!(rateBytesPerS > 0) || !Number.isFinite(rateBytesPerS)) return null;
  const seconds = Math.ceil(restBytes / rateBytesPerS);
  return Number.isFinite(seconds) ? seconds : null;
}

/** A running secondary's status as the facts the state words are derived from. */
export function replicationFacts(replica: ReplicaStatusJson): ReplicationFacts {
  return {
    consistent: replica.consistent,
    switches: replica.switches,
    syncState: replica.sync?.state ?? null,
    fetchState: replica.fetch.state,
    replayState: replica.replay.state,
    fetchRestBytes: replica.fetch.restBytes,
    replayRestBytes: replica.replay.restBytes,
  };
}

/** The replication state of an attached secondary (src/strategy/member-state.ts). */
export function replicaReplState(replica: ReplicaStatusJson): ReplState {
  return replicationReplState(replicationFacts(replica));
}

/** The disk state of an attached secondary (src/strategy/member-state.ts). */
export function replicaDiskState(replica: ReplicaStatusJson): DiskState {
  return replicationDiskState(replicationFacts(replica));
}

/** This host's own state words, by the same rules as every member's. */
function ownStates(r: ResourceStatusJson, isDesignatedPrimary: boolean, isEmergency: boolean, hole: number | null): { diskState: DiskState; replState: ReplState } {
  const replica = isDesignatedPrimary ? null : (r.replica ?? null);
  const words = memberState({
    state: r.state,
    designatedPrimary: isDesignatedPrimary,
    servingAsPrimary: isDesignatedPrimary && r.state === 'serving',
    emergency: isEmergency,
    replication: replica === null ? null : replicationFacts(replica),
    holeAhead: hole,
    reachable: true,
  });
  return { diskState: words.diskState ?? 'Detached', replState: words.replState ?? 'Stopped' };
}

/**
 * The hole a secondary stops at: the primary is in emergency mode (the hole will follow
 * its current log), or its last hole lies after this host's replay position. A secondary
 * still syncing (invalidate) has no position yet and is not stopped.
 */
export function holeAhead(r: ResourceStatusJson): number | null {
  const replica = r.replica ?? null;
  const position = replica?.replay.position ?? null;
  if (replica === null || position === null || (replica.sync !== null && replica.sync.state !== 'done')) return null;
  const primary = (r.members ?? []).find((m) => m.primary);
  return holeAheadOf(primary === undefined ? undefined : { emergency: primary.emergency === true, hole: primary.hole ?? null, needsLog: primary.needsLog }, position.logNumber);
}

/** States in which nothing moves: no time remaining is shown (it would be a guess). */
const stalledStates = new Set(['paused', 'source-unreachable', 'paused-no-space', 'failed', 'stopped', 'waiting-for-source']);

/** The time remaining, or null while the work stands still. */
function remainingWhile(state: string, restBytes: number | null, rateBytesPerS: number): number | null {
  return stalledStates.has(state) || restBytes === null ? null : remainingSeconds(restBytes, rateBytesPerS);
}

interface ReplicaViews {
  switches: SwitchesJson | null;
  sync: SyncView | null;
  fetch: FetchView | null;
  replay: ReplayView | null;
}

/** Copies the daemon's fields one by one, so that the --json output stays exactly as documented. */
function replicaViews(replica: ReplicaStatusJson | null): ReplicaViews {
  if (replica === null) return { switches: null, sync: null, fetch: null, replay: null };
  const { switches, sync: s, fetch: f, replay: r } = replica;
  const sync: SyncView | null =
    s === null
      ? null
      : {
          state: s.state,
          sizeBytes: s.sizeBytes,
          doneBytes: s.doneBytes,
          restBytes: s.restBytes,
          rateBytesPerS: s.rateBytesPerS,
          rateLimitBytesPerS: s.rateLimitBytesPerS,
          // The rate is bytes on the wire (what a limit counts); the remaining time follows the device bytes compared per second.
          remainingS: s.state === 'done' ? 0 : remainingWhile(s.state, s.restBytes, s.progressBytesPerS ?? s.rateBytesPerS),
          error: s.error,
          compression: s.compression ?? null,
        };
  const fetchRemainingS = remainingWhile(f.state, f.restBytes, f.rateBytesPerS);
  const fetch: FetchView = { state: f.state, source: f.source, logName: f.logName, localBytes: f.localBytes, restBytes: f.restBytes, rateBytesPerS: f.rateBytesPerS, remainingS: fetchRemainingS, error: f.error, lastContactS: f.lastContactS ?? null, compression: f.compression ?? null, connections: f.connections ?? 0 };
  const replay: ReplayView = { state: r.state, position: r.position, restBytes: r.restBytes, rateBytesPerS: r.rateBytesPerS, remainingS: remainingWhile(r.state, r.restBytes, r.rateBytesPerS), error: r.error };
  return { switches: { fetch: switches.fetch, replay: switches.replay, sync: switches.sync }, sync, fetch, replay };
}

/** Why a resource is not served or replicated here, when it is not failed. */
function detachedReason(r: ResourceStatusJson, isDesignatedPrimary: boolean): string | undefined {
  if (r.state === 'stopped') return r.failure ?? 'switched off (marsadm up R switches it on)';
  if (!isDesignatedPrimary && r.state !== 'failed' && (r.replica ?? null) === null) return 'no replica runs here (not attached)';
  return undefined;
}

export function resourceView(host: string, r: ResourceStatusJson): ResourceView {
  const logger = r.logger ?? undefined;
  const isDesignatedPrimary = r.primary === host;
  const isPrimary = isDesignatedPrimary && r.state === 'serving';
  const replica = isDesignatedPrimary ? null : (r.replica ?? null);
  const views = replicaViews(replica);
  const emergency = r.emergency ?? null;
  const isEmergency = isDesignatedPrimary && emergency?.active === true;
  const stoppedAtHole = isDesignatedPrimary ? null : holeAhead(r);
  const states = ownStates(r, isDesignatedPrimary, isEmergency, stoppedAtHole);
  const writebackRestBytes = logger === undefined ? 0 : logBytesBetween(logger.writtenBack, logger.logPosition, r.logFiles);
  const syncRestBytes = views.sync === null || views.sync.state === 'done' ? 0 : views.sync.restBytes;
  const view: ResourceView = {
    resource: r.name,
    host,
    sizeBytes: r.sizeBytes,
    role: isPrimary ? 'Primary' : isDesignatedPrimary ? 'NotYetPrimary' : 'Secondary',
    primarynode: r.primary,
    isPrimary,
    isConsistent: isDesignatedPrimary ? r.state === 'serving' : (replica?.consistent ?? false),
    isSplitBrain: (r.splitBrain ?? null) !== null,
    splitBrain: r.splitBrain ?? null,
    laterSplitBrains: r.laterSplitBrains ?? [],
    diskState: states.diskState,
    replState: states.replState,
    // A secondary without a running replica (detached, stopped, failed) cannot know how far the primary is: unknown, never 0.
    fetchRestBytes: isDesignatedPrimary ? 0 : views.fetch === null ? null : views.fetch.restBytes,
    replayRestBytes: isDesignatedPrimary ? writebackRestBytes : (views.replay?.restBytes ?? 0),
    syncRestBytes,
    logBytes: r.logFiles.reduce((sum, f) => sum + f.sizeBytes, 0),
    logFiles: r.logFiles.length,
    currentLog: r.logFiles.at(-1)?.name,
    failure: r.state === 'stopped' ? undefined : (r.failure ?? undefined),
    detached: detachedReason(r, isDesignatedPrimary),
    warning: logger?.positionError ?? undefined,
    ...views,
    members: [...(r.members ?? [])].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0)),
    logDeleteHeldBy: r.logDeleteHeldBy ?? null,
    isEmergency,
    emergency,
    syncMode: r.syncMode ?? null,
    isFallenBack: isPrimary && r.syncMode?.state === 'fallen-back',
    stoppedAtHole,
    space: r.space ?? null,
    noSecondaryReplicating: false,
  };
  return { ...view, noSecondaryReplicating: noSecondaryReplicating(view) };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${units[unit]}`;
}

export function formatRate(bytesPerS: number): string {
  return `${formatBytes(bytesPerS)}/s`;
}

/** Beyond this, `formatRemaining` says `>9999:59:59` rather than a long number. */
export const remainingShownSMax = 9999 * 3600 + 59 * 60 + 59;

/** Remaining time as hh:mm:ss (whole seconds, rounded up); `--:--:--` when unknown. */
export function formatRemaining(seconds: number | null): string {
  if (seconds === null || !(seconds >= 0)) return '--:--:--';
  const whole = Math.ceil(seconds);
  if (whole > remainingShownSMax) return `>${formatRemaining(remainingShownSMax)}`;
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(Math.floor(whole / 3600))}:${two(Math.floor(whole / 60) % 60)}:${two(whole % 60)}`;
}

/**
 * `[=====>.....] 42.17%`: `widthChars` characters between the brackets whatever the
 * inputs; the percentage is rounded down (100.00% only when done) and within 0..100.
 */
export function progressBar(done: number, total: number, widthChars = 30): string {
  if (!Number.isSafeInteger(widthChars) || widthChars < 1) throw new RangeError(`progress bar width ${widthChars} is not a positive integer`);
  const ratio = total > 0 ? done / total : 1;
  const fraction = Number.isNaN(ratio) ? 0 : Math.min(1, Math.max(0, ratio));
  const filled = Math.round(fraction * widthChars);
  const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + '.'.repeat(widthChars - filled);
  // The epsilon keeps 0.29 from printing 28.99%; a fraction below 1 never prints 100.00%.
  const hundredths = Math.min(fraction < 1 ? 9_999 : 10_000, Math.floor(fraction * 10_000 + 1e-6));
  return `[${bar}] ${(hundredths / 100).toFixed(2)}%`;
}

/** What an amount that may be unknown prints: whole bytes, or `unknown` (never 0: 0 means caught up). */
export const unknownAmountText = 'unknown';

/** The parts of a progress line after the bar: rest, rate, remaining time (when something is left). */
function amounts(restBytes: number | null, rateBytesPerS: number, remainingS: number | null, state: string): string[] {
  const parts = [`rest ${restBytes === null ? unknownAmountText : formatBytes(restBytes)}`, `rate ${formatRate(rateBytesPerS)}`];
  if (restBytes !== null && restBytes > 0 && !stalledStates.has(state)) parts.push(`remaining ${formatRemaining(remainingS)}`);
  return parts;
}

function tail(switchOn: boolean | undefined, paused: boolean, error: string | null): string[] {
  const parts: string[] = [];
  if (switchOn === false && !paused) parts.push('pause requested');
  if (error !== null) parts.push(`error: ${error}`);
  return parts;
}

function syncLine(sync: SyncView, switchOn: boolean | undefined): string {
  if (sync.state === 'done') return `    sync:   done  ${formatBytes(sync.sizeBytes)}`;
  const parts = [progressBar(sync.doneBytes, sync.sizeBytes), `${formatBytes(sync.doneBytes)} of ${formatBytes(sync.sizeBytes)}`, `rate ${formatRate(sync.rateBytesPerS)}`];
  if (!stalledStates.has(sync.state) && switchOn !== false) parts.push(`remaining ${formatRemaining(sync.remainingS)}`);
  if (sync.rateLimitBytesPerS > 0) parts.push(`limit ${formatRate(sync.rateLimitBytesPerS)}`);
  if (sync.compression !== null && sync.compression !== undefined) parts.push(`compressed ${sync.compression}`);
  if (sync.state !== 'syncing') parts.push(sync.state);
  return `    sync:   ${[...parts, ...tail(switchOn, sync.state === 'paused', sync.error)].join('  ')}`;
}

function fetchLine(fetch: FetchView, switchOn: boolean | undefined): string {
  if (fetch.state === 'waiting-for-sync') return '    fetch:  waiting for sync';
  const parts: string[] = [];
  if (fetch.restBytes !== null && fetch.restBytes > 0) parts.push(progressBar(fetch.localBytes, fetch.localBytes + fetch.restBytes));
  if (fetch.logName !== null) parts.push(fetch.logName);
  parts.push(...amounts(fetch.restBytes, fetch.rateBytesPerS, fetch.remainingS, fetch.state), `${fetch.state} from ${fetch.source}`);
  if (fetch.compression !== null && fetch.compression !== undefined && fetch.compression !== 'none') parts.push(`compressed ${fetch.compression}`);
  if ((fetch.connections ?? 0) > 1) parts.push(`over ${fetch.connections} connections`);
  if (fetch.state === 'source-unreachable') parts.push(fetch.lastContactS === null || fetch.lastContactS === undefined ? 'never reached' : `last contact ${fetch.lastContactS} s ago`);
  return `    fetch:  ${[...parts, ...tail(switchOn, fetch.state === 'paused', fetch.error)].join('  ')}`;
}

function positionText(p: PositionJson): string {
  return `at log-${String(p.logNumber).padStart(9, '0')}-${p.logHost} offset ${p.offsetBytes}`;
}

/** The replay bar counts against the local log bytes (what fetch holds here). */
function replayLine(replay: ReplayView, localBytes: number, switchOn: boolean | undefined): string {
  if (replay.state === 'waiting-for-sync') return '    replay: waiting for sync';
  const parts: string[] = [];
  if (replay.restBytes > 0) {
    const totalBytes = Math.max(localBytes, replay.restBytes);
    parts.push(progressBar(totalBytes - replay.restBytes, totalBytes));
  }
  if (replay.position !== null) parts.push(positionText(replay.position));
  parts.push(...amounts(replay.restBytes, replay.rateBytesPerS, replay.remainingS, replay.state), replay.state);
  return `    replay: ${[...parts, ...tail(switchOn, replay.state === 'paused', replay.error)].join('  ')}`;
}

export interface SplitBrainJson {
  atLog: number;
  /** Where in that log the histories part (0: at its start). */
  atOffsetBytes?: number;
  sides: { origin: string; hosts: string[]; lossBytes: number }[];
  undecided: string[];
  reports: { host: string; reason: string }[];
}

/** Where two histories part: "at log 7", or "in log 5 at byte 83886080". */
export function splitPlace(s: SplitBrainJson): string {
  if (s.atLog === 0) return '';
  return (s.atOffsetBytes ?? 0) > 0 ? ` in log ${s.atLog} at byte ${s.atOffsetBytes}` : ` at log ${s.atLog}`;
}

function splitBrainLines(s: SplitBrainJson | null, resource: string, primary: string): string[] {
  if (s === null) return [];
  const lines = [`    SPLIT BRAIN${splitPlace(s)}: resolve with marsadm invalidate ${resource} on each host of the losing side`];
  for (const side of s.sides) lines.push(`        history of ${side.origin}: ${side.hosts.join(' ')} (would lose ${formatBytes(side.lossBytes)} of log if the other side wins)`);
  if (s.undecided.length > 0) lines.push(`        behind the split (can follow either): ${s.undecided.join(' ')}`);
  for (const r of s.reports) lines.push(`        ${r.host}: ${r.reason}`);
  for (const how of resolutionOf({ atOffsetBytes: 0, ...s }, resource, primary)) {
    if (how.steps.length === 0) continue;
    const keep = s.sides.length >= 2 ? `to keep the history of ${how.keep} (the other side loses ${formatBytes(how.lossBytes)})` : 'to resolve it';
    lines.push(`        ${keep}: ${how.steps.map((step) => `on ${step.host}: ${step.command}`).join('; then ')}`);
  }
  return lines;
}

/** Up to this many members share one line; more get a line each. */
export const membersInlineMax = 4;

/** What a member's entry says beyond its words: staleness, lag, paused switches, sync. */
function memberNotes(m: MemberStatusJson): string[] {
  const notes: string[] = [];
  if (m.reachable === false) {
    const said = m.lastDiskState === undefined || m.lastDiskState === null ? '' : `; stale: it last said ${m.lastDiskState} ${m.lastReplState ?? '?'}${m.indicatorAgeS === null || m.indicatorAgeS === undefined ? '' : `, ${m.indicatorAgeS} s ago`}`;
    notes.push(`unreachable since ${m.lastSeenAt ?? '?'}${said}`);
  }
  if (m.sync !== null && m.sync !== undefined && m.sync.state !== 'done') notes.push(`sync ${m.sync.state} ${formatBytes(m.sync.doneBytes ?? 0)} of ${formatBytes(m.sync.sizeBytes ?? 0)}`);
  // A running secondary reports both rests; its fetch-rest alone is null while it has not heard from its primary.
  const reportsLag = (m.fetchLagBytes !== null && m.fetchLagBytes !== undefined) || (m.replayLagBytes !== null && m.replayLagBytes !== undefined);
  if (reportsLag && m.reachable !== false) {
    const fetch = m.fetchLagBytes === null || m.fetchLagBytes === undefined ? unknownAmountText : formatBytes(m.fetchLagBytes);
    notes.push(`lag: ${m.lagS === null || m.lagS === undefined ? '' : `${m.lagS} s, `}fetch ${fetch}, replay ${formatBytes(m.replayLagBytes ?? 0)}`);
  }
  const paused = m.switches === null || m.switches === undefined ? [] : (['fetch', 'replay', 'sync'] as const).filter((w) => m.switches?.[w] === false);
  if (paused.length > 0) notes.push(`paused: ${paused.join(', ')}`);
  return notes;
}

function memberText(m: MemberStatusJson, resource: string): string {
  const notes: string[] = memberNotes(m);
  if (m.needsLog !== null) notes.push(`needs log ${m.needsLog}`);
  if ((m.heldBackBytes ?? 0) > 0) notes.push(`holds ${formatBytes(m.heldBackBytes ?? 0)} of log back`);
  const dead = m.dead === true ? `, counted as dead: leave-resource ${resource} --host ${m.host} removes it` : '';
  if (m.unreachableS !== null && m.unreachableS !== undefined) notes.push(`unreachable for ${m.unreachableS} s${dead}`);
  if (m.emergency === true) notes.push('emergency mode');
  if (m.reason !== null) notes.push(m.reason);
  const text = `${m.host} ${m.primary ? 'Primary' : 'Secondary'} ${m.diskState ?? '?'} ${m.replState ?? '?'}`;
  return notes.length === 0 ? text : `${text} (${notes.join(', ')})`;
}

function memberLines(members: MemberStatusJson[], resource: string): string[] {
  if (members.length === 0) return [];
  if (members.length <= membersInlineMax) return [`    members: ${members.map((m) => memberText(m, resource)).join('; ')}`];
  return ['    members:', ...members.map((m) => `        ${memberText(m, resource)}`)];
}

/**
 * The primary serving while none of its secondaries replicates (all paused, stopped,
 * failed or unreachable): the members it would need in a failover are falling behind.
 */
export function noSecondaryReplicating(v: ResourceView): boolean {
  const secondaries = v.members.filter((m) => !m.primary);
  return v.isPrimary && secondaries.length > 0 && !secondaries.some((m) => m.replState === 'Replicating' || m.replState === 'Syncing');
}

function replicaLines(v: ResourceView): string[] {
  const lines: string[] = [];
  if (v.sync !== null) lines.push(syncLine(v.sync, v.switches?.sync));
  if (v.fetch !== null) lines.push(fetchLine(v.fetch, v.switches?.fetch));
  if (v.replay !== null) lines.push(replayLine(v.replay, v.fetch?.localBytes ?? 0, v.switches?.replay));
  return lines;
}

/** The sync mode line: only for near-sync (asynchronous is the default and says nothing). */
function syncModeLine(v: ResourceView): string | undefined {
  const m = v.syncMode;
  if (m === null || m.mode !== 'near-sync') return undefined;
  const asked = `near-sync (${m.members} member(s), timeout ${m.timeoutMs} ms)`;
  if (m.state === 'fallen-back') return `    sync-mode: ${asked}: FALLEN BACK to asynchronous (${m.reason ?? 'timeout'}); near-sync again once the members catch up`;
  if (m.state === 'near-sync') return `    sync-mode: ${asked}: flushes wait for the members${m.waiting > 0 ? `, ${m.waiting} waiting` : ''}`;
  return `    sync-mode: ${asked}`;
}

/** The human view of one resource, in the manner of the original's `marsadm view`. */
export function formatResource(v: ResourceView): string {
  const lines = [
    `--------- resource ${v.resource}  size ${formatBytes(v.sizeBytes)}  primary ${v.primarynode}`,
    `${v.resource} ${v.diskState} ${v.replState} ${v.role} ${v.host}`,
  ];
  if (v.failure !== undefined) lines.push(`    failed: ${v.failure}`);
  if (v.detached !== undefined) lines.push(`    detached: ${v.detached}`);
  if (v.warning !== undefined) lines.push(`    warning: cannot save the writeback position: ${v.warning}`);
  if (v.currentLog !== undefined) lines.push(`    log: ${v.currentLog}  ${v.logFiles} file(s), ${formatBytes(v.logBytes)}`);
  lines.push(...spaceLines(v));
  const syncMode = syncModeLine(v);
  if (syncMode !== undefined) lines.push(syncMode);
  if (v.isPrimary) {
    const written = v.logBytes - v.replayRestBytes;
    lines.push(`    writeback: ${progressBar(written, v.logBytes)}  rest ${formatBytes(v.replayRestBytes)}`);
  }
  lines.push(...replicaLines(v), ...memberLines(v.members, v.resource));
  if (v.noSecondaryReplicating) {
    lines.push(`    WARNING: no secondary replicates ${v.resource}: ${v.members.filter((m) => !m.primary).map((m) => `${m.host} ${m.replState ?? '?'}`).join(', ')}`);
  }
  const holder = v.logDeleteHeldBy;
  if (holder !== null) lines.push(`    log-delete held back by ${holder.host} (needs log ${holder.logNumber})`);
  lines.push(...splitBrainLines(v.splitBrain, v.resource, v.primarynode));
  for (const later of v.laterSplitBrains) lines.push(...splitBrainLines(later, v.resource, v.primarynode));
  return lines.join('\n');
}

/**
 * `marsadm status`: one block per resource with a line per member, the words and notes
 * of the member list (this host's own words from its local status), and the warnings
 * that need an operator (split brain, emergency, no secondary replicating).
 */
export function formatStatus(v: ResourceView): string {
  const lines = [`${v.resource} size ${formatBytes(v.sizeBytes)} primary ${v.primarynode === '' ? '(none)' : v.primarynode} (seen from ${v.host})`];
  for (const m of v.members) {
    const own = m.host === v.host ? { ...m, diskState: v.diskState, replState: v.replState } : m;
    lines.push(`  ${memberText(own, v.resource)}${m.host === v.host ? ' [this host]' : ''}`);
  }
  if (v.isEmergency) lines.push(`  EMERGENCY MODE on ${v.host}: not logging, replication stopped`);
  if (v.isFallenBack) lines.push(`  NEAR-SYNC FALLEN BACK on ${v.host}: asynchronous until the members catch up (${v.syncMode?.reason ?? 'timeout'})`);
  if (v.noSecondaryReplicating) lines.push(`  WARNING: no secondary replicates ${v.resource}`);
  if (v.splitBrain !== null) lines.push(`  SPLIT BRAIN${splitPlace(v.splitBrain)}: marsadm view ${v.resource} says how to resolve it`);
  for (const later of v.laterSplitBrains) lines.push(`  SPLIT BRAIN${splitPlace(later)}: marsadm view ${v.resource} says how to resolve it`);
  if (v.failure !== undefined) lines.push(`  failed on ${v.host}: ${v.failure}`);
  return lines.join('\n');
}

/** The space line, and what emergency mode or a hole means for this host. */
function spaceLines(v: ResourceView): string[] {
  const lines: string[] = [];
  const s = v.space;
  if (s !== null) {
    const share = s.sizeBytes > 0 ? ((100 * s.freeBytes) / s.sizeBytes).toFixed(1) : '0.0';
    const t = s.thresholds;
    lines.push(
      `    space: ${formatBytes(s.freeBytes)} free of ${formatBytes(s.sizeBytes)} (${share}%)  stage ${s.stage}  (warn below ${formatBytes(t.warnBytes)}, reclaim below ${formatBytes(t.reclaimBytes)}, emergency below ${formatBytes(t.emergencyBytes)})`,
    );
  }
  if (v.isEmergency) lines.push(`    EMERGENCY MODE: not logging, writes go straight to the device (${v.emergency?.reason ?? 'log space'}); replication stopped; logging resumes once space is back`);
  else if ((v.emergency?.hole ?? 0) > 0 && v.isPrimary) lines.push(`    hole: log ${v.emergency?.hole} was skipped by an emergency; secondaries before it need marsadm invalidate ${v.resource}`);
  if (v.stoppedAtHole !== null) {
    lines.push(`    hole: the primary stopped logging (emergency mode) before log ${v.stoppedAtHole}: this copy is consistent and outdated; marsadm invalidate ${v.resource} resyncs it once the primary logs again`);
  }
  return lines;
}

/** `view --json` and `status --json`: `{ schemaVersion, generatedAt, host, resources }`; the version grows when fields are added. */
export const viewJsonSchemaVersion = 5;

export function viewJson(host: string, resources: ResourceView[], now: Date): { schemaVersion: number; generatedAt: string; host: string; resources: ResourceView[] } {
  return { schemaVersion: viewJsonSchemaVersion, generatedAt: now.toISOString(), host, resources };
}

export { macroNames, type MacroName } from './macro-names.js';

export function macroValue(v: ResourceView, macro: MacroName): string {
  const bool = (b: boolean): string => (b ? '1' : '0');
  switch (macro) {
    case 'role':
      return v.role;
    case 'primarynode':
      return v.primarynode;
    case 'is-primary':
      return bool(v.isPrimary);
    case 'is-consistent':
      return bool(v.isConsistent);
    case 'is-split-brain':
      return bool(v.isSplitBrain);
    case 'fetch-rest':
      return v.fetchRestBytes === null ? unknownAmountText : String(v.fetchRestBytes);
    case 'replay-rest':
      return String(v.replayRestBytes);
    case 'sync-rest':
      return String(v.syncRestBytes);
    case 'disk-state':
      return v.diskState;
    case 'repl-state':
      return v.replState;
    case 'is-emergency':
      return bool(v.isEmergency);
    case 'space':
      return String(v.space?.freeBytes ?? 0);
  }
}
