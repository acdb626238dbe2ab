/**
 * The secondary's phases as a pure state machine: random opens and event sequences
 * against a plain reference model of when a copy is consistent (seeded: a failure replays).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { comparePlaces, isConsistentPhase, nextPhase, openPhase, type PhasePosition, type ReplicaAtOpen, type ReplicaDecision, type ReplicaEvent, type ReplicaPhase } from '../../src/strategy/index.js';

const seed = 1717;
const place = fc.record({ logNumber: fc.integer({ min: 1, max: 6 }), offsetBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100) });
const atOpen: fc.Arbitrary<ReplicaAtOpen> = fc
  .record({
    position: fc.option(place, { nil: undefined }),
    sync: fc.option(fc.record({ start: place, end: fc.option(place, { nil: undefined }) }), { nil: undefined }),
    dirtyMark: fc.option(place, { nil: undefined }),
  })
  .map((at) => ({ ...at, dirtyMarkFile: at.dirtyMark !== undefined }));
const event: fc.Arbitrary<ReplicaEvent> = fc.oneof(
  fc.record({ kind: fc.constant('sync-started' as const), start: place }),
  fc.record({ kind: fc.constant('sync-done' as const), start: place, end: fc.option(place, { nil: undefined }) }),
  fc.record({ kind: fc.constant('persisted' as const), position: place }),
  fc.constant({ kind: 'invalidated' as const }),
);

const atOrPast = (p: PhasePosition, t: PhasePosition): boolean => comparePlaces(p, t) >= 0;

/** The reference: what must hold before the copy is consistent, as plain flags. */
interface Model {
  syncing: boolean;
  syncStart: PhasePosition | undefined;
  /** Replay must persist this before the copy is consistent (a sync's end, the dirty mark). */
  needs: PhasePosition[];
}

function modelAtOpen(at: ReplicaAtOpen): Model {
  const syncOver = at.sync?.end !== undefined && at.position !== undefined && atOrPast(at.position, at.sync.end);
  const sync = syncOver ? undefined : at.sync;
  if (at.position === undefined || (sync !== undefined && sync.end === undefined)) return { syncing: true, syncStart: sync?.start, needs: [] };
  const needs: PhasePosition[] = [];
  if (sync?.end !== undefined) needs.push(sync.end);
  if (at.dirtyMark !== undefined && !atOrPast(at.position, at.dirtyMark)) needs.push(at.dirtyMark);
  return { syncing: false, syncStart: undefined, needs };
}

function modelStep(m: Model, e: ReplicaEvent): Model {
  switch (e.kind) {
    case 'invalidated':
      return { syncing: true, syncStart: undefined, needs: [] };
    case 'sync-started':
      return m.syncing && m.syncStart === undefined ? { ...m, syncStart: e.start } : m;
    case 'sync-done':
      // The start is saved as a persist: a sync ending at its start is consistent then.
      return m.syncing ? { syncing: false, syncStart: undefined, needs: [e.end ?? e.start].filter((t) => !atOrPast(e.start, t)) } : m;
    case 'persisted':
      return m.syncing ? m : { ...m, needs: m.needs.filter((t) => !atOrPast(e.position, t)) };
  }
}

const consistentIn = (m: Model): boolean => !m.syncing && m.needs.length === 0;

test('consistent exactly when no sync runs and replay persisted past the sync end and the dirty mark', () => {
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
      for (const e of [...events, { kind: 'persisted' as const, position: { logNumber: 99, offsetBytes: 0 } }]) {
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
      // Replay past everything ends every phase but a sync in consistency.
      if (phase.kind !== 'syncing') assert.ok(isConsistentPhase(phase));
    }),
    { seed, numRuns: 1000 },
  );
});

test('open: a joining host syncs (an old dirty mark goes); a host with a position replays; a finished sync state goes', () => {
  const p = (logNumber: number, offsetBytes: number): PhasePosition => ({ logNumber, offsetBytes });
  assert.deepEqual(openPhase({ position: undefined, sync: undefined, dirtyMarkFile: true, dirtyMark: undefined }).decisions.map((d) => d.kind), ['remove-dirty-mark', 'start-sync']);
  assert.deepEqual(openPhase({ position: undefined, sync: { start: p(3, 100), end: undefined }, dirtyMarkFile: false, dirtyMark: undefined }), {
    phase: { kind: 'syncing', start: p(3, 100) },
    decisions: [{ kind: 'start-sync' }, { kind: 'start-fetch', from: p(3, 100) }],
  });
  assert.deepEqual(openPhase({ position: p(4, 0), sync: { start: p(3, 100), end: p(3, 300) }, dirtyMarkFile: false, dirtyMark: undefined }).decisions.map((d) => d.kind), ['remove-sync-state', 'start-fetch', 'start-replay']);
  assert.deepEqual(openPhase({ position: p(3, 200), sync: { start: p(3, 100), end: p(3, 300) }, dirtyMarkFile: true, dirtyMark: p(3, 400) }).phase, { kind: 'replaying', syncEnd: p(3, 300), dirtyUntil: p(3, 400) });
});
