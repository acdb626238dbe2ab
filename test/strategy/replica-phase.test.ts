/**
 * The secondary's phases as a pure state machine: random opens and event sequences
 * against a plain reference model of when a copy is consistent (seeded: a failure replays).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { comparePlaces, isConsistentPhase, nextPhase, openPhase, type PhasePosition, type ReplicaAtOpen, type ReplicaDecision, type ReplicaEvent, type ReplicaPhase } from '../../src/strategy/index.js';

const seed = 1717;
const host = fc.constantFrom('a', 'b');
const place = fc.record({ logNumber: fc.integer({ min: 1, max: 6 }), logHost: host, offsetBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100) });
const atOpen: fc.Arbitrary<ReplicaAtOpen> = fc
  .record({
    position: fc.option(place, { nil: undefined }),
    sync: fc.option(fc.record({ start: place, end: fc.option(place, { nil: undefined }) }), { nil: undefined }),
    dirtyMark: fc.option(place, { nil: undefined }),
    syncEndLog: fc.option(fc.record({ logHost: host, lengthBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100) }), { nil: undefined }),
    dirtyMarkLog: fc.option(fc.record({ logHost: host, lengthBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100) }), { nil: undefined }),
  })
  .map((at) => ({ ...at, dirtyMarkFile: at.dirtyMark !== undefined }));
const event: fc.Arbitrary<ReplicaEvent> = fc.oneof(
  fc.record({ kind: fc.constant('sync-started' as const), start: place }),
  fc.record({ kind: fc.constant('sync-done' as const), start: place, end: fc.option(place, { nil: undefined }) }),
  fc.record({ kind: fc.constant('persisted' as const), position: place }),
  fc.record({ kind: fc.constant('log-replayed' as const), logNumber: fc.integer({ min: 1, max: 6 }), logHost: host, lengthBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100) }),
  fc.record({ kind: fc.constant('log-replayed' as const), logNumber: fc.integer({ min: 1, max: 6 }), logHost: host, lengthBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100), next: fc.record({ logNumber: fc.integer({ min: 1, max: 7 }), logHost: host }) }),
  fc.constant({ kind: 'invalidated' as const }),
);

const atOrPast = (p: PhasePosition, t: PhasePosition): boolean => comparePlaces(p, t) >= 0;

/** The reference: what must hold before the copy is consistent, as plain flags. */
interface Model {
  syncing: boolean;
  syncStart: PhasePosition | undefined;
  /** Replay must persist the sync's end, on its history (same log number, same origin), before the copy is consistent. */
  syncEnd: PhasePosition | undefined;
  /** ... and the dirty mark. */
  dirty: PhasePosition | undefined;
  /** The sync's end went off the history replay follows: never consistent until invalidate. */
  off: boolean;
}

/** Replay persisted `p`: is the sync's end passed, not yet, or passed on another history? (`log`: the copy of the end's log, for a later log.) */
/** Where `p` stands to a place of one history; with no copy of a later position's place log, a sync's end is off, a dirty mark (an old one) passed. */
function modelVerdict(p: PhasePosition, end: PhasePosition, log: { logHost: string; lengthBytes: number } | 'seen' | undefined, noCopy: 'reached' | 'off' = 'off'): 'before' | 'reached' | 'off' {
  if (p.logNumber < end.logNumber) return 'before';
  if (p.logNumber === end.logNumber) return p.logHost !== end.logHost ? 'off' : p.offsetBytes >= end.offsetBytes ? 'reached' : 'before';
  if (log === 'seen') return 'reached';
  if (log === undefined) return noCopy;
  return log.logHost === end.logHost && log.lengthBytes >= end.offsetBytes ? 'reached' : 'off';
}

/** A finished log of a place's number passes the place only with the place's origin and at least its offset. */
const logPasses = (e: { logNumber: number; logHost: string; lengthBytes: number; next?: { logNumber: number; logHost: string } }, place: PhasePosition | undefined): boolean =>
  place === undefined ||
  ((e.logNumber !== place.logNumber || (e.logHost === place.logHost && e.lengthBytes >= place.offsetBytes)) &&
    // ... and the log replay enters next is not the place's number under another origin.
    (e.next === undefined || e.next.logNumber !== place.logNumber || e.next.logHost === place.logHost));

function modelAtOpen(at: ReplicaAtOpen): Model {
  const verdict = at.sync?.end !== undefined && at.position !== undefined ? modelVerdict(at.position, at.sync.end, at.syncEndLog) : undefined;
  const sync = verdict === 'reached' ? undefined : at.sync;
  if (verdict === 'off') return { syncing: false, syncStart: undefined, syncEnd: at.sync?.end, dirty: undefined, off: true };
  if (at.position === undefined || (sync !== undefined && sync.end === undefined)) return { syncing: true, syncStart: sync?.start, syncEnd: undefined, dirty: undefined, off: false };
  const dirtyVerdict = at.dirtyMark === undefined ? 'reached' : modelVerdict(at.position, at.dirtyMark, at.dirtyMarkLog, 'reached');
  if (dirtyVerdict === 'off') return { syncing: false, syncStart: undefined, syncEnd: sync?.end, dirty: at.dirtyMark, off: true };
  return { syncing: false, syncStart: undefined, syncEnd: sync?.end, dirty: dirtyVerdict === 'before' ? at.dirtyMark : undefined, off: false };
}

function modelStep(m: Model, e: ReplicaEvent): Model {
  switch (e.kind) {
    case 'invalidated':
      return { syncing: true, syncStart: undefined, syncEnd: undefined, dirty: undefined, off: false };
    case 'sync-started':
      return m.syncing && m.syncStart === undefined ? { ...m, syncStart: e.start } : m;
    case 'sync-done': {
      // The start is saved as a persist: a sync ending at its start is consistent then.
      if (!m.syncing) return m;
      return modelStep({ syncing: false, syncStart: undefined, syncEnd: e.end ?? e.start, dirty: undefined, off: false }, { kind: 'persisted', position: e.start });
    }
    case 'log-replayed': {
      if (m.syncing || m.off) return m;
      return logPasses(e, m.syncEnd) && logPasses(e, m.dirty) ? m : { ...m, off: true };
    }
    case 'persisted': {
      if (m.syncing || m.off) return m;
      const verdict = m.syncEnd === undefined ? 'reached' : modelVerdict(e.position, m.syncEnd, 'seen');
      const dirty = m.dirty === undefined ? 'reached' : modelVerdict(e.position, m.dirty, 'seen');
      if (verdict === 'off' || dirty === 'off') return { ...m, off: true };
      return { ...m, syncEnd: verdict === 'reached' ? undefined : m.syncEnd, dirty: dirty === 'reached' ? undefined : m.dirty };
    }
  }
}

const consistentIn = (m: Model): boolean => !m.syncing && !m.off && m.syncEnd === undefined && m.dirty === undefined;

test('consistent exactly when no sync runs and replay persisted past the sync end and the dirty mark, each on its own history', () => {
  fc.assert(
    fc.property(atOpen, fc.array(event, { maxLength: 12 }), (at, events) => {
      let step = openPhase(at);
      let model = modelAtOpen(at);
      assert.equal(isConsistentPhase(step.phase), consistentIn(model), 'at open');
      for (const e of events) {
        const before: ReplicaPhase = step.phase;
        step = nextPhase(before, e);
        // The shell feeds back the save of the sync's start as a persist.
        const saved = step.decisions.find((d): d is Extract<ReplicaDecision, { kind: 'save-position' }> => d.kind === 'save-position');
        if (saved !== undefined) step = { phase: nextPhase(step.phase, { kind: 'persisted', position: saved.position }).phase, decisions: step.decisions };
        model = modelStep(model, e);
        assert.equal(isConsistentPhase(step.phase), consistentIn(model), `after ${e.kind}`);
      }
    }),
    { seed, numRuns: 1000 },
  );
});

test('decisions: replay never starts while a sync runs; the sync state goes only once replay reached its end; becoming consistent is said once', () => {
  fc.assert(
    fc.property(atOpen, fc.array(event, { maxLength: 12 }), (at, events) => {
      let phase = openPhase(at).phase;
      for (const e of [...events, { kind: 'persisted' as const, position: { logNumber: 99, logHost: 'a', offsetBytes: 0 } }]) {
        const step = nextPhase(phase, e);
        const kinds = step.decisions.map((d) => d.kind);
        if (step.phase.kind === 'syncing') assert.ok(!kinds.includes('start-replay'), 'no replay while syncing');
        if (kinds.includes('remove-sync-state')) {
          assert.equal(phase.kind, 'replaying');
          assert.ok(e.kind === 'persisted' && phase.syncEnd !== undefined && atOrPast(e.position, phase.syncEnd));
        }
        assert.equal(kinds.includes('now-consistent'), !isConsistentPhase(phase) && isConsistentPhase(step.phase), 'said exactly when it became consistent');
        phase = step.phase;
      }
      // Replay past everything ends every phase but a sync, or a sync's end off the history, in consistency.
      if (phase.kind !== 'syncing' && phase.kind !== 'off-history') assert.ok(isConsistentPhase(phase));
    }),
    { seed, numRuns: 1000 },
  );
});

test('open: a joining host syncs (an old dirty mark goes); a host with a position replays; a finished sync state goes', () => {
  const p = (logNumber: number, offsetBytes: number): PhasePosition => ({ logNumber, logHost: 'a', offsetBytes });
  assert.deepEqual(openPhase({ position: undefined, sync: undefined, dirtyMarkFile: true, dirtyMark: undefined }).decisions.map((d) => d.kind), ['remove-dirty-mark', 'start-sync']);
  assert.deepEqual(openPhase({ position: undefined, sync: { start: p(3, 100), end: undefined }, dirtyMarkFile: false, dirtyMark: undefined }), {
    phase: { kind: 'syncing', start: p(3, 100) },
    decisions: [{ kind: 'start-sync' }, { kind: 'start-fetch', from: p(3, 100) }],
  });
  assert.deepEqual(openPhase({ position: p(4, 0), sync: { start: p(3, 100), end: p(3, 300) }, dirtyMarkFile: false, dirtyMark: undefined, syncEndLog: { logHost: 'a', lengthBytes: 300 } }).decisions.map((d) => d.kind), ['remove-sync-state', 'start-fetch', 'start-replay']);
  assert.deepEqual(openPhase({ position: p(3, 200), sync: { start: p(3, 100), end: p(3, 300) }, dirtyMarkFile: true, dirtyMark: p(3, 400) }).phase, { kind: 'replaying', syncEnd: p(3, 300), dirtyUntil: p(3, 400) });
});

test('after primary --force: a sync end in a log the new history writes under another origin is never reached', () => {
  // The sync ended at 5:300 of alpha; beta was forced at the end of log 4 and writes log 5 itself.
  const end: PhasePosition = { logNumber: 5, logHost: 'alpha', offsetBytes: 300 };
  const start: PhasePosition = { logNumber: 4, logHost: 'alpha', offsetBytes: 0 };
  let step = nextPhase<PhasePosition>({ kind: 'syncing', start }, { kind: 'sync-done', start, end });
  step = nextPhase(step.phase, { kind: 'persisted', position: start });
  assert.equal(step.phase.kind, 'replaying');
  // Log 4 ends where both histories agree: no verdict yet.
  step = nextPhase(step.phase, { kind: 'log-replayed', logNumber: 4, logHost: 'alpha', lengthBytes: 900 });
  assert.equal(step.phase.kind, 'replaying');
  step = nextPhase(step.phase, { kind: 'persisted', position: { logNumber: 5, logHost: 'beta', offsetBytes: 400 } });
  assert.equal(step.phase.kind, 'off-history');
  assert.equal(isConsistentPhase(step.phase), false);
  assert.deepEqual(step.decisions.map((d) => d.kind), ['off-history']);
  assert.match(step.phase.reason, /invalidate/);
  // Replay goes on past it: still not consistent; invalidate starts over.
  step = nextPhase(step.phase, { kind: 'persisted', position: { logNumber: 9, logHost: 'beta', offsetBytes: 0 } });
  assert.equal(isConsistentPhase(step.phase), false);
  assert.equal(nextPhase(step.phase, { kind: 'invalidated' }).phase.kind, 'syncing');
});

test('after primary --force: a sync end beyond where the new history cut the end\'s log is never reached', () => {
  // The forced member cut its copy of alpha's log 5 at 200 and started log 6; the sync ended at 5:300.
  const end: PhasePosition = { logNumber: 5, logHost: 'alpha', offsetBytes: 300 };
  const replaying: ReplicaPhase = { kind: 'replaying', syncEnd: end, dirtyUntil: undefined };
  const step = nextPhase(replaying, { kind: 'log-replayed', logNumber: 5, logHost: 'alpha', lengthBytes: 200 });
  assert.equal(step.phase.kind, 'off-history');
  // Without the log's verdict, positions alone would pass it: 6:0 is past 5:300.
  assert.ok(comparePlaces({ logNumber: 6, logHost: 'beta', offsetBytes: 0 }, end) > 0);
  assert.equal(nextPhase(step.phase, { kind: 'persisted', position: { logNumber: 6, logHost: 'beta', offsetBytes: 0 } }).phase.kind, 'off-history');
  // On its own history the same log passes the end.
  const onHistory = nextPhase(replaying, { kind: 'log-replayed', logNumber: 5, logHost: 'alpha', lengthBytes: 300 });
  assert.equal(onHistory.phase.kind, 'replaying');
  assert.equal(nextPhase(onHistory.phase, { kind: 'persisted', position: { logNumber: 6, logHost: 'beta', offsetBytes: 0 } }).phase.kind, 'consistent');
});

test('open after primary --force: the copy of the end\'s log decides a saved position in a later log', () => {
  const end: PhasePosition = { logNumber: 5, logHost: 'alpha', offsetBytes: 300 };
  const at = (syncEndLog: ReplicaAtOpen['syncEndLog']): ReplicaAtOpen => ({ position: { logNumber: 6, logHost: 'beta', offsetBytes: 0 }, sync: { start: { logNumber: 4, logHost: 'alpha', offsetBytes: 0 }, end }, dirtyMarkFile: false, dirtyMark: undefined, syncEndLog });
  assert.equal(openPhase(at({ logHost: 'alpha', lengthBytes: 300 })).phase.kind, 'consistent');
  assert.equal(openPhase(at({ logHost: 'alpha', lengthBytes: 200 })).phase.kind, 'off-history');
  assert.equal(openPhase(at({ logHost: 'beta', lengthBytes: 900 })).phase.kind, 'off-history');
  // No copy left to tell: not consistent (invalidate is the safe way out).
  const unknown = openPhase(at(undefined));
  assert.equal(unknown.phase.kind, 'off-history');
  assert.ok(!unknown.decisions.some((d) => d.kind === 'remove-sync-state'), 'the sync state stays, so every open says it again');
});

test('open: a former primary that stopped in emergency mode (another host took over) holds writes no log has: off the history, nothing replayed', () => {
  const position: PhasePosition = { logNumber: 7, logHost: 'alpha', offsetBytes: 4096 };
  const opened = openPhase({ position, sync: undefined, dirtyMarkFile: false, dirtyMark: undefined, directWrites: true });
  assert.equal(opened.phase.kind, 'off-history');
  assert.equal(isConsistentPhase(opened.phase), false);
  // Its device is left as it is: no fetch, no replay onto the writes the operator may want to copy out.
  assert.deepEqual(opened.decisions.map((d) => d.kind), ['off-history']);
  assert.match(opened.phase.reason, /emergency mode.*invalidate/);
  // Without the emergency state the same host replays and is consistent.
  assert.equal(openPhase({ position, sync: undefined, dirtyMarkFile: false, dirtyMark: undefined }).phase.kind, 'consistent');
  assert.equal(nextPhase(opened.phase, { kind: 'invalidated' }).phase.kind, 'syncing');
});

test('after primary --force: a dirty mark beyond where the new history cut the mark\'s log is never reached', () => {
  // Before a crash replay wrote the device up to 7:400 of alpha and saved 7:100; the copy
  // kept 200 bytes. The forced member had alpha's log 7 up to 250 and writes log 8 itself.
  const mark: PhasePosition = { logNumber: 7, logHost: 'alpha', offsetBytes: 400 };
  const opened = openPhase({ position: { logNumber: 7, logHost: 'alpha', offsetBytes: 100 }, sync: undefined, dirtyMarkFile: true, dirtyMark: mark });
  assert.deepEqual(opened.phase, { kind: 'replaying', syncEnd: undefined, dirtyUntil: mark });
  let step = nextPhase(opened.phase, { kind: 'persisted', position: { logNumber: 7, logHost: 'alpha', offsetBytes: 250 } });
  assert.equal(step.phase.kind, 'replaying');
  step = nextPhase(step.phase, { kind: 'log-replayed', logNumber: 7, logHost: 'alpha', lengthBytes: 250 });
  assert.equal(step.phase.kind, 'off-history');
  assert.deepEqual(step.decisions.map((d) => d.kind), ['off-history']);
  assert.match(step.phase.reason, /before a crash replay wrote the device up to 7:400 of alpha, but log 7 replayed here ends at 250.*invalidate/);
  // By number alone 8:0 is past 7:400: the device would count as consistent while it holds alpha's 250..400.
  assert.ok(comparePlaces({ logNumber: 8, logHost: 'beta', offsetBytes: 0 }, mark) > 0);
  assert.equal(nextPhase(step.phase, { kind: 'persisted', position: { logNumber: 8, logHost: 'beta', offsetBytes: 0 } }).phase.kind, 'off-history');
  assert.equal(nextPhase(step.phase, { kind: 'invalidated' }).phase.kind, 'syncing');
  // On its own history the same log passes the mark.
  const onHistory = nextPhase(opened.phase, { kind: 'log-replayed', logNumber: 7, logHost: 'alpha', lengthBytes: 400 });
  assert.equal(onHistory.phase.kind, 'replaying');
  const consistent = nextPhase(onHistory.phase, { kind: 'persisted', position: { logNumber: 8, logHost: 'beta', offsetBytes: 0 } });
  assert.equal(consistent.phase.kind, 'consistent');
  assert.deepEqual(consistent.decisions, [{ kind: 'now-consistent', after: 'dirty-mark' }]);
});

test('after primary --force: a position in the dirty mark\'s log number under another origin is off the history', () => {
  const mark: PhasePosition = { logNumber: 7, logHost: 'alpha', offsetBytes: 400 };
  const replaying: ReplicaPhase = { kind: 'replaying', syncEnd: undefined, dirtyUntil: mark };
  // Replay finished log 6 (both histories agree on it) and enters the new primary's log 7.
  assert.equal(nextPhase(replaying, { kind: 'log-replayed', logNumber: 6, logHost: 'alpha', lengthBytes: 900, next: { logNumber: 7, logHost: 'beta' } }).phase.kind, 'off-history');
  assert.equal(nextPhase(replaying, { kind: 'log-replayed', logNumber: 6, logHost: 'alpha', lengthBytes: 900, next: { logNumber: 7, logHost: 'alpha' } }).phase.kind, 'replaying');
  assert.equal(nextPhase(replaying, { kind: 'persisted', position: { logNumber: 7, logHost: 'beta', offsetBytes: 900 } }).phase.kind, 'off-history');
  assert.equal(nextPhase(replaying, { kind: 'log-replayed', logNumber: 7, logHost: 'beta', lengthBytes: 900 }).phase.kind, 'off-history');
  const at = { position: { logNumber: 7, logHost: 'beta', offsetBytes: 900 }, sync: undefined, dirtyMarkFile: true, dirtyMark: mark };
  const opened = openPhase(at);
  assert.equal(opened.phase.kind, 'off-history');
  assert.deepEqual(opened.decisions.map((d) => d.kind), ['off-history'], 'nothing replayed onto it');
});

test('open: the copy of the dirty mark\'s log decides a saved position in a later log; without a copy the mark is an old one, passed', () => {
  const mark: PhasePosition = { logNumber: 7, logHost: 'alpha', offsetBytes: 400 };
  const at = (dirtyMarkLog: ReplicaAtOpen['dirtyMarkLog']): ReplicaAtOpen => ({ position: { logNumber: 8, logHost: 'beta', offsetBytes: 0 }, sync: undefined, dirtyMarkFile: true, dirtyMark: mark, dirtyMarkLog });
  assert.equal(openPhase(at({ logHost: 'alpha', lengthBytes: 400 })).phase.kind, 'consistent');
  assert.equal(openPhase(at({ logHost: 'alpha', lengthBytes: 250 })).phase.kind, 'off-history');
  assert.equal(openPhase(at({ logHost: 'gamma', lengthBytes: 900 })).phase.kind, 'off-history');
  // A mark left by a crash long ago (a primary's logs since, the copy deleted): consistent.
  assert.equal(openPhase(at(undefined)).phase.kind, 'consistent');
});
