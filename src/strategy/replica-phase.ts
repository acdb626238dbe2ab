/**
 * The phases of a secondary's copy of a resource, as one discriminated union, and the
 * transitions between them as a pure function (events in, phase and decisions out). The
 * shell (the daemon's Replica, the simulator's host) measures the events and applies the
 * decisions; nothing here touches a file, a timer or a link.
 *
 *   syncing      a full sync runs (join, invalidate; or no replay position at all); fetch
 *                runs from the sync's start once the source said it; replay waits
 *   replaying    replay runs from its position; the copy is not consistent yet: the sync
 *                ended at `syncEnd`, or before a crash replay wrote the device up to
 *                `dirtyUntil` (the dirty mark), and replay has not persisted past them
 *   consistent   the device is the disk after a prefix of the primary's history
 *   off-history  the device holds writes the primary's history does not have, which no
 *                replay can remove: the sync's end or the dirty mark lies on a history the
 *                primary no longer continues (a `primary --force` cut it short), or this host wrote
 *                its device directly as a primary in emergency mode and another host
 *                became primary (`--force`); only `invalidate` makes it consistent again.
 *                At open nothing is replayed onto such a device (it may hold data the
 *                operator wants to copy out first)
 *
 * Positions compare by log number, then offset (a position at the end of log N and offset
 * 0 of log N+1 are the same place; replay persists the former). The sync's end and the
 * dirty mark are places in one history: each is reached only by replaying the very log it
 * names (same number, same origin) to at least its offset. Replay that enters the place's
 * log number under another origin, or leaves the place's log before the offset (the copy
 * was cut shorter by a `primary --force` elsewhere), went off that history: the device
 * holds blocks of a history the primary no longer continues.
 *
 * The two differ only at open, for a saved position in a later log than the place: a sync's
 * end then needs a copy of its log to prove replay went through it on its history (the
 * sync state stays until it is reached, so no copy means nothing proves it); a dirty mark
 * outlives its crash (it is lowered only at a clean stop, and a primary never touches it),
 * so no copy means an old mark replay passed long ago. Replay never leaves a dirty mark's
 * log before the mark, nor enters its number under another origin (the Replayer stops
 * there, and the mark stays as it is), so a later position is past it.
 */

/** A place in the log (a ReplayPosition, or anything with its order). */
export interface PhasePosition {
  readonly logNumber: number;
  /** The host that wrote the log (its origin). */
  readonly logHost: string;
  readonly offsetBytes: number;
}

/** The local copy of the log a place (the sync's end, the dirty mark) lies in: its origin and length. */
export interface PlaceLog {
  readonly logHost: string;
  readonly lengthBytes: number;
}

/** The local copy of the log the sync's end lies in. */
export type SyncEndLog = PlaceLog;

/** Which place replay must reach: they differ in the reasons given and at open (see above). */
export type PlaceKind = 'sync-end' | 'dirty-mark';

export type PlaceVerdict = { readonly kind: 'before' | 'reached' } | { readonly kind: 'off-history'; readonly reason: string };

export type ReplicaPhase<P extends PhasePosition = PhasePosition> =
  | { readonly kind: 'syncing'; readonly start: P | undefined }
  | { readonly kind: 'replaying'; readonly syncEnd: P | undefined; readonly dirtyUntil: PhasePosition | undefined }
  | { readonly kind: 'consistent' }
  | { readonly kind: 'off-history'; readonly reason: string };

/** What the shell found at open: the saved replay position, the sync state file, the dirty mark. */
export interface ReplicaAtOpen<P extends PhasePosition = PhasePosition> {
  readonly position: P | undefined;
  /** The sync state file, if there is one (and it is of this resource and size). */
  readonly sync: { readonly start: P; readonly end: P | undefined } | undefined;
  /** Whether a dirty mark file exists, and (read only when there is a replay position) the mark. */
  readonly dirtyMarkFile: boolean;
  readonly dirtyMark: PhasePosition | undefined;
  /**
   * The local copy holding the sync end's log number, if any: decides, when the saved
   * position is in a later log, whether replay passed the end on its history.
   */
  readonly syncEndLog?: PlaceLog | undefined;
  /**
   * The local copy holding the dirty mark's log number, if any: decides, when the saved
   * position is in a later log, whether replay passed the mark on its history.
   */
  readonly dirtyMarkLog?: PlaceLog | undefined;
  /** This host's emergency state says it was writing its device directly as primary (mode emergency). */
  readonly directWrites?: boolean;
}

export type ReplicaEvent<P extends PhasePosition = PhasePosition> =
  /** The sync's source said where it starts (the state file holds it now). */
  | { readonly kind: 'sync-started'; readonly start: P }
  /** The whole device is copied: consistent once replay from `start` persisted `end`. */
  | { readonly kind: 'sync-done'; readonly start: P; readonly end: P | undefined }
  /** Replay persisted this position (the device holds the log before it, fdatasync'd). */
  | { readonly kind: 'persisted'; readonly position: P }
  /** Replay finished a log: its number, origin and final length, and the log it enters next (its number and origin). */
  | { readonly kind: 'log-replayed'; readonly logNumber: number; readonly logHost: string; readonly lengthBytes: number; readonly next?: { readonly logNumber: number; readonly logHost: string } }
  /** invalidate: the history here is forgotten, a sync follows. */
  | { readonly kind: 'invalidated' };

export type ReplicaDecision<P extends PhasePosition = PhasePosition> =
  | { readonly kind: 'remove-sync-state' }
  /** A dirty mark without a replay position means nothing (no replay ran on this device's present history). */
  | { readonly kind: 'remove-dirty-mark' }
  | { readonly kind: 'forget-history' }
  | { readonly kind: 'start-sync' }
  | { readonly kind: 'start-fetch'; readonly from: P }
  /** The first replay position after a sync is its start: saved before replay runs. */
  | { readonly kind: 'save-position'; readonly position: P }
  | { readonly kind: 'start-replay'; readonly from: P }
  /** The copy became consistent (say so: the indicator, the daemon log). */
  | { readonly kind: 'now-consistent'; readonly after: 'sync' | 'dirty-mark' | 'both' }
  /** The sync's end or the dirty mark went off the history replay follows: say so, with the advice to invalidate (the indicator's failure, the daemon log). */
  | { readonly kind: 'off-history'; readonly reason: string };

export interface PhaseStep<P extends PhasePosition = PhasePosition> {
  readonly phase: ReplicaPhase<P>;
  readonly decisions: readonly ReplicaDecision<P>[];
}

export function comparePlaces(a: PhasePosition, b: PhasePosition): number {
  return a.logNumber !== b.logNumber ? a.logNumber - b.logNumber : a.offsetBytes - b.offsetBytes;
}

function placeName(p: PhasePosition): string {
  return `${p.logNumber}:${p.offsetBytes} of ${p.logHost}`;
}

const directWritesReason = 'this host wrote its device directly as primary in emergency mode, and another host is primary now: the device holds writes no log has; invalidate this member (copy the data out of its device first if it matters)';

function offHistoryReason(of: PlaceKind, place: PhasePosition, found: string): string {
  if (of === 'dirty-mark') {
    return `before a crash replay wrote the device up to ${placeName(place)}, but ${found}: the device may hold writes the primary's history does not have (after primary --force); invalidate this member`;
  }
  return `the sync ended at ${placeName(place)}, but ${found}: the copied blocks may hold writes the primary's history does not have (after primary --force); invalidate this member`;
}

/**
 * Where replay, having persisted `p`, stands to `place` (the sync's end or the dirty mark).
 * For a position in a later log, `placeLog` is the copy of the place's log replay went
 * through ('passed': the shell saw it replayed on the place's history; undefined: no copy
 * is left, which proves nothing for a sync's end and is an old dirty mark's usual case).
 */
export function placeVerdict(p: PhasePosition, place: PhasePosition, placeLog: PlaceLog | 'passed' | undefined, of: PlaceKind): PlaceVerdict {
  if (p.logNumber < place.logNumber) return { kind: 'before' };
  if (p.logNumber === place.logNumber) {
    if (p.logHost !== place.logHost) return { kind: 'off-history', reason: offHistoryReason(of, place, `replay is in log ${p.logNumber} of ${p.logHost}`) };
    return { kind: p.offsetBytes >= place.offsetBytes ? 'reached' : 'before' };
  }
  if (placeLog === 'passed') return { kind: 'reached' };
  if (placeLog === undefined) {
    if (of === 'dirty-mark') return { kind: 'reached' };
    return { kind: 'off-history', reason: offHistoryReason(of, place, `replay is past log ${place.logNumber} and no copy of it tells which history it replayed`) };
  }
  return logVerdict(place, placeLog, of);
}

/** Where replay, having persisted `p`, stands to the sync's end `end` (placeVerdict for a sync's end). */
export function syncEndVerdict(p: PhasePosition, end: PhasePosition, endLog: PlaceLog | 'passed' | undefined): PlaceVerdict {
  return placeVerdict(p, end, endLog, 'sync-end');
}

/** Whether a finished copy of the place's log (same number) passes the place on its history. */
export function logVerdict(place: PhasePosition, log: PlaceLog, of: PlaceKind): { readonly kind: 'reached' } | { readonly kind: 'off-history'; readonly reason: string } {
  if (log.logHost !== place.logHost) return { kind: 'off-history', reason: offHistoryReason(of, place, `log ${place.logNumber} replayed here was written by ${log.logHost}`) };
  if (log.lengthBytes < place.offsetBytes) return { kind: 'off-history', reason: offHistoryReason(of, place, `log ${place.logNumber} replayed here ends at ${log.lengthBytes}`) };
  return { kind: 'reached' };
}

/** The phase after open, and what to do first. */
export function openPhase<P extends PhasePosition>(at: ReplicaAtOpen<P>): PhaseStep<P> {
  const decisions: ReplicaDecision<P>[] = [];
  let sync = at.sync;
  // A sync whose end replay has passed is over: its state file goes. One whose end replay
  // passed on another history stays (it says so at every open) until invalidate.
  const verdict = sync?.end !== undefined && at.position !== undefined ? syncEndVerdict(at.position, sync.end, at.syncEndLog) : undefined;
  if (verdict?.kind === 'reached') {
    decisions.push({ kind: 'remove-sync-state' });
    sync = undefined;
  }
  const offReason = at.directWrites === true ? directWritesReason : verdict?.kind === 'off-history' ? verdict.reason : undefined;
  if (offReason !== undefined) {
    decisions.push({ kind: 'off-history', reason: offReason });
    return { phase: { kind: 'off-history', reason: offReason }, decisions };
  }
  if (at.position === undefined || (sync !== undefined && sync.end === undefined)) {
    if (at.position === undefined && at.dirtyMarkFile) decisions.push({ kind: 'remove-dirty-mark' });
    const start = sync?.start;
    decisions.push({ kind: 'start-sync' });
    if (start !== undefined) decisions.push({ kind: 'start-fetch', from: start });
    return { phase: { kind: 'syncing', start }, decisions };
  }
  const position = at.position;
  // Below the mark the device may hold records beyond the position (from before a crash);
  // a position past the mark's log on another history never gets rid of them.
  const dirty = at.dirtyMark === undefined ? undefined : placeVerdict(position, at.dirtyMark, at.dirtyMarkLog, 'dirty-mark');
  if (dirty?.kind === 'off-history') {
    decisions.push({ kind: 'off-history', reason: dirty.reason });
    return { phase: { kind: 'off-history', reason: dirty.reason }, decisions };
  }
  const dirtyUntil = dirty?.kind === 'before' ? at.dirtyMark : undefined;
  const syncEnd = sync?.end;
  decisions.push({ kind: 'start-fetch', from: position }, { kind: 'start-replay', from: position });
  if (syncEnd === undefined && dirtyUntil === undefined) return { phase: { kind: 'consistent' }, decisions };
  return { phase: { kind: 'replaying', syncEnd, dirtyUntil }, decisions };
}

/** The next phase after `event`, and what the shell does about it. */
export function nextPhase<P extends PhasePosition>(phase: ReplicaPhase<P>, event: ReplicaEvent<P>): PhaseStep<P> {
  switch (event.kind) {
    case 'invalidated':
      return { phase: { kind: 'syncing', start: undefined }, decisions: [{ kind: 'forget-history' }, { kind: 'start-sync' }] };
    case 'sync-started':
      if (phase.kind !== 'syncing' || phase.start !== undefined) return { phase, decisions: [] };
      return { phase: { kind: 'syncing', start: event.start }, decisions: [{ kind: 'start-fetch', from: event.start }] };
    case 'sync-done': {
      if (phase.kind !== 'syncing') return { phase, decisions: [] };
      const decisions: ReplicaDecision<P>[] = [];
      if (phase.start === undefined) decisions.push({ kind: 'start-fetch', from: event.start });
      // The start is saved as the first replay position; that save is a persist like any
      // other, so a sync whose end is its start (nothing written meanwhile) is consistent
      // with it. A sync without an end (none recorded) counts as ending at its start.
      decisions.push({ kind: 'save-position', position: event.start }, { kind: 'start-replay', from: event.start });
      return { phase: { kind: 'replaying', syncEnd: event.end ?? event.start, dirtyUntil: undefined }, decisions };
    }
    case 'log-replayed': {
      if (phase.kind !== 'replaying') return { phase, decisions: [] };
      // Replay leaves the log of the sync's end or of the dirty mark: on their history only if
      // that very log reaches them; and it must not enter their number under another origin.
      const next = event.next;
      const verdicts = (place: PhasePosition | undefined, of: PlaceKind): (PlaceVerdict | undefined)[] =>
        place === undefined
          ? []
          : [event.logNumber === place.logNumber ? logVerdict(place, event, of) : undefined, next === undefined ? undefined : placeVerdict({ ...next, offsetBytes: 0 }, place, 'passed', of)];
      const verdict = [...verdicts(phase.syncEnd, 'sync-end'), ...verdicts(phase.dirtyUntil, 'dirty-mark')].find((v) => v?.kind === 'off-history');
      if (verdict?.kind !== 'off-history') return { phase, decisions: [] };
      return { phase: { kind: 'off-history', reason: verdict.reason }, decisions: [{ kind: 'off-history', reason: verdict.reason }] };
    }
    case 'persisted': {
      if (phase.kind !== 'replaying') return { phase, decisions: [] };
      // In a later log than the place's: replay went through the place's log, and its
      // 'log-replayed' would have said if that was off the place's history.
      const verdict = phase.syncEnd === undefined ? undefined : placeVerdict(event.position, phase.syncEnd, 'passed', 'sync-end');
      const dirty = phase.dirtyUntil === undefined ? undefined : placeVerdict(event.position, phase.dirtyUntil, 'passed', 'dirty-mark');
      const off = verdict?.kind === 'off-history' ? verdict : dirty?.kind === 'off-history' ? dirty : undefined;
      if (off !== undefined) return { phase: { kind: 'off-history', reason: off.reason }, decisions: [{ kind: 'off-history', reason: off.reason }] };
      const pastSync = verdict?.kind === 'reached';
      const pastDirty = dirty?.kind === 'reached';
      const syncEnd = pastSync ? undefined : phase.syncEnd;
      const dirtyUntil = pastDirty ? undefined : phase.dirtyUntil;
      const decisions: ReplicaDecision<P>[] = pastSync ? [{ kind: 'remove-sync-state' }] : [];
      if (syncEnd === undefined && dirtyUntil === undefined) {
        decisions.push({ kind: 'now-consistent', after: pastSync && pastDirty ? 'both' : pastSync ? 'sync' : 'dirty-mark' });
        return { phase: { kind: 'consistent' }, decisions };
      }
      return { phase: { kind: 'replaying', syncEnd, dirtyUntil }, decisions };
    }
  }
}

/** `is-consistent`: the device is the disk after a prefix of the history. */
export function isConsistentPhase(phase: ReplicaPhase): boolean {
  return phase.kind === 'consistent';
}
