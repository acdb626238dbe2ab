/**
 * What a secondary does when its copy of the log turns out to belong to another history
 * than its source's (fetch or replay stopped with FETCH_DIVERGED), as a pure decision.
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
  if (phase.kind === 'replaying' && phase.syncEnd === undefined) {
    return { kind: 'split-brain', why: 'the copy was consistent before a crash (replaying to its dirty mark): its history is kept until the operator decides' };
  }
  if (resyncsBefore >= rivalResyncsMax) return { kind: 'split-brain', why: `resynced ${resyncsBefore} times in a row for a rival history without becoming consistent` };
  const where = phase.kind === 'syncing' ? 'in the middle of a full sync' : 'replaying towards the end of its full sync';
  return { kind: 'resync', why: `the copy is ${where}: it holds no consistent data of its own` };
}
