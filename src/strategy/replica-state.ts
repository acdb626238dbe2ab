/**
 * Everything a secondary's replica decides from, as one value: its phase
 * (replica-phase.ts), the replay position it persisted last, a failure of its own work, the
 * position a handover waits for, and what the indicator was last told. The shell (the
 * daemon's Replica) holds handles (connections, files, the fetch client, the replayer) and
 * one such value; every change goes through `replicaStep`, a pure function: events in, the
 * next value and the shell's duties out. Nothing here touches a file, a timer or a link.
 *
 * Ordering duty of the shell: a `remove-sync-state` decision is carried out (the file gone,
 * durably) before the new value is taken, so that the copy is never said consistent while a
 * crash would find the sync unfinished; `tell` (the indicator changed) comes last.
 */
import { comparePlaces, nextPhase, type PhasePosition, type ReplicaDecision, type ReplicaEvent, type ReplicaPhase } from './replica-phase.js';

export interface ReplicaState<P extends PhasePosition = PhasePosition> {
  readonly phase: ReplicaPhase<P>;
  /** The replay position persisted last (what the device holds for sure); undefined before the first. */
  readonly position: P | undefined;
  /** Why the replica's own work stopped (a failed sync, a position it could not save): the indicator's failure. */
  readonly failure: string | undefined;
  /** A position a handover waits for: the indicator is told once replay persisted it. */
  readonly replayTarget: PhasePosition | undefined;
  /** The log number of the last local copy the indicator was told of (log deletion across the cluster reads it). */
  readonly toldFetchedLog: number | undefined;
}

export type ReplicaStateEvent<P extends PhasePosition = PhasePosition> =
  | ReplicaEvent<P>
  /** The replica's own work failed (the sync, saving a position). */
  | { readonly kind: 'failed'; readonly reason: string }
  /** A handover waits until replay persisted `target`. */
  | { readonly kind: 'wait-for'; readonly target: PhasePosition }
  /** The rate sampler saw the last local copy's log number. */
  | { readonly kind: 'fetched'; readonly logNumber: number | undefined };

export type ReplicaStateDecision<P extends PhasePosition = PhasePosition> =
  | ReplicaDecision<P>
  /** Something the indicator shows changed: the shell tells it (onChange), once per step. */
  | { readonly kind: 'tell' };

export interface ReplicaStateStep<P extends PhasePosition = PhasePosition> {
  readonly state: ReplicaState<P>;
  readonly decisions: readonly ReplicaStateDecision<P>[];
}

/** The value after open: the phase openPhase decided, and the saved position. */
export function replicaStateAt<P extends PhasePosition>(phase: ReplicaPhase<P>, position: P | undefined): ReplicaState<P> {
  return { phase, position, failure: undefined, replayTarget: undefined, toldFetchedLog: undefined };
}

const tell = { kind: 'tell' } as const;

/** The next value after `event`, and the shell's duties, in the order it carries them out. */
export function replicaStep<P extends PhasePosition>(state: ReplicaState<P>, event: ReplicaStateEvent<P>): ReplicaStateStep<P> {
  switch (event.kind) {
    case 'failed':
      return { state: { ...state, failure: event.reason }, decisions: [tell] };
    case 'wait-for':
      return { state: { ...state, replayTarget: event.target }, decisions: [] };
    case 'fetched':
      if (event.logNumber === state.toldFetchedLog) return { state, decisions: [] };
      return { state: { ...state, toldFetchedLog: event.logNumber }, decisions: [tell] };
    case 'persisted':
      return persisted(state, event.position);
    case 'invalidated': {
      // The history here is forgotten, its position with it; a handover's wait is void.
      const step = nextPhase(state.phase, event);
      return { state: replicaStateAt(step.phase, undefined), decisions: [...step.decisions, tell] };
    }
    default: {
      const step = nextPhase(state.phase, event);
      const told = step.phase.kind !== state.phase.kind || step.decisions.some((d) => d.kind === 'off-history');
      return { state: { ...state, phase: step.phase }, decisions: told ? [...step.decisions, tell] : step.decisions };
    }
  }
}

/**
 * Replay persisted `position`: the phase may end (the sync's end or the dirty mark
 * reached, or found off the history), a handover's target may be reached, and a new log
 * number is news for log deletion.
 */
function persisted<P extends PhasePosition>(state: ReplicaState<P>, position: P): ReplicaStateStep<P> {
  const step = nextPhase(state.phase, { kind: 'persisted', position });
  const targetReached = state.replayTarget !== undefined && comparePlaces(position, state.replayTarget) >= 0;
  const newLog = state.position?.logNumber !== position.logNumber;
  const phaseNews = step.decisions.some((d) => d.kind === 'now-consistent' || d.kind === 'off-history');
  const decisions: ReplicaStateDecision<P>[] = [...step.decisions];
  if (targetReached || newLog || phaseNews) decisions.push(tell);
  return { state: { ...state, phase: step.phase, position, replayTarget: targetReached ? undefined : state.replayTarget }, decisions };
}
