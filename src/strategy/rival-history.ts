/**
 * What a secondary that is not consistent yet does when its primary changes, and what any
 * secondary does when its copy of the log turns out to belong to another history than its
 * source's (fetch or replay stopped with FETCH_DIVERGED), as pure decisions.
 *
 * A member in the middle of a full sync (or replaying towards the sync's end) when another
 * host is designated primary starts its sync again from the new primary with a clean slate
 * (log copies, positions, sync state forgotten, as invalidate does): its sync would start
 * again at offset 0 anyway, from the new primary's position in the new primary's log, and
 * the copies of the old primary's log would either be a rival history (the new primary
 * took over with less of it) or end where replay can never reach the old sync's end. Only
 * a consistent member carries on with fetch and replay from the new primary.
 *
 * The usual cause is a forced failover: the new primary had fetched less of the old
 * primary's log than this member, and continues in a log of its own. What this member
 * holds then decides:
 *
 *   a consistent copy (or one that was consistent until a crash and is replaying back to
 *   its dirty mark) is a history of its own: a split brain, reported, never merged; the
 *   operator picks the survivor (`invalidate` on the losers);
 *   a copy in the middle of a full sync, or replaying towards the sync's end, has no
 *   consistent data to protect: its device is a mix of the source's blocks from various
 *   moments. It drops its copies and restarts the full sync from the new primary by
 *   itself (as DRBD's SyncTarget does), up to `rivalResyncsMax` times in a row without
 *   becoming consistent; past that it reports the split brain and waits for the operator.
 */
import type { ReplicaPhase } from './replica-phase.js';

/** Resyncs in a row, without the copy becoming consistent in between, before the member stops and reports a split brain. */
export const rivalResyncsMax = 3;

export type RivalHistoryDecision =
  /** Forget the history here (log copies, positions, sync state, version chain) and sync again from the primary. */
  | { readonly kind: 'resync'; readonly why: string }
  /** Report the split brain (the indicator's `diverged`) and wait for the operator. */
  | { readonly kind: 'split-brain'; readonly why: string };

/** The decision for a member in `phase` that has already resynced `resyncsBefore` times in a row for a rival history. */
export function onRivalHistory(phase: ReplicaPhase, resyncsBefore: number): RivalHistoryDecision {
  if (phase.kind === 'consistent') return { kind: 'split-brain', why: 'the copy is consistent: its history is kept until the operator decides' };
  // Off the history: its device may hold writes of its own (a former primary's direct writes): never forgotten without the operator.
  if (phase.kind === 'off-history') return { kind: 'split-brain', why: phase.reason };
  if (phase.kind === 'replaying' && phase.syncEnd === undefined) {
    return { kind: 'split-brain', why: 'the copy was consistent before a crash (replaying to its dirty mark): its history is kept until the operator decides' };
  }
  if (resyncsBefore >= rivalResyncsMax) return { kind: 'split-brain', why: `resynced ${resyncsBefore} times in a row for a rival history without becoming consistent` };
  const where = phase.kind === 'syncing' ? 'in the middle of a full sync' : 'replaying towards the end of its full sync';
  return { kind: 'resync', why: `the copy is ${where}: it holds no consistent data of its own` };
}

export type PrimaryChangeDecision =
  /** Forget the history here and sync again from the new primary. */
  | { readonly kind: 'resync'; readonly why: string }
  /** Fetch (and a sync, if one ran) dial the new primary; the copy carries on. */
  | { readonly kind: 'redial' };

/** The decision for a secondary in `phase` whose designated primary changed to another host. */
export function onPrimaryChange(phase: ReplicaPhase): PrimaryChangeDecision {
  if (phase.kind === 'off-history') return { kind: 'redial' };
  if (phase.kind === 'syncing') return { kind: 'resync', why: 'the copy is in the middle of a full sync from the old primary: it holds no consistent data of its own' };
  if (phase.kind === 'replaying' && phase.syncEnd !== undefined) {
    return { kind: 'resync', why: "the copy is replaying towards the end of its full sync from the old primary, which the new primary's history may never reach" };
  }
  return { kind: 'redial' };
}
