/**
 * The secondary's whole state as one value stepped by a pure function: random event
 * sequences against plain reference rules for what it holds and when the indicator is
 * told (seeded: a failure replays).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { comparePlaces, nextPhase, openPhase, replicaStateAt, replicaStep, type PhasePosition, type ReplicaPhase, type ReplicaStateEvent } from '../../src/strategy/index.js';

const seed = 1313;
const host = fc.constantFrom('a', 'b');
const place = fc.record({ logNumber: fc.integer({ min: 1, max: 5 }), logHost: host, offsetBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100) });
const event: fc.Arbitrary<ReplicaStateEvent> = fc.oneof(
  fc.record({ kind: fc.constant('sync-done' as const), start: place, end: fc.option(place, { nil: undefined }) }),
  fc.record({ kind: fc.constant('persisted' as const), position: place }),
  fc.record({ kind: fc.constant('persisted' as const), position: place }),
  fc.record({ kind: fc.constant('log-replayed' as const), logNumber: fc.integer({ min: 1, max: 5 }), logHost: host, lengthBytes: fc.integer({ min: 0, max: 3 }).map((n) => n * 100) }),
  fc.constant({ kind: 'invalidated' as const }),
  fc.record({ kind: fc.constant('failed' as const), reason: fc.constantFrom('sync failed: EIO', 'cannot save the replay position: ENOSPC') }),
  fc.record({ kind: fc.constant('wait-for' as const), target: place }),
  fc.record({ kind: fc.constant('fetched' as const), logNumber: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }) }),
);
const opened = fc
  .record({ position: fc.option(place, { nil: undefined }), dirtyMark: fc.option(place, { nil: undefined }), syncEnd: fc.option(place, { nil: undefined }) })
  .map(({ position, dirtyMark, syncEnd }) => ({
    position,
    phase: openPhase({ position, sync: syncEnd === undefined ? undefined : { start: syncEnd, end: syncEnd }, dirtyMarkFile: dirtyMark !== undefined, dirtyMark }).phase,
  }));

/** The reference: plain fields, updated by plain rules. */
interface Model {
  phase: ReplicaPhase;
  position: PhasePosition | undefined;
  failure: string | undefined;
  target: PhasePosition | undefined;
  told: number | undefined;
}

/** The next model, and whether the indicator must hear of this event. */
function modelStep(m: Model, e: ReplicaStateEvent): { model: Model; tell: boolean } {
  switch (e.kind) {
    case 'failed':
      return { model: { ...m, failure: e.reason }, tell: true };
    case 'wait-for':
      return { model: { ...m, target: e.target }, tell: false };
    case 'fetched':
      return { model: { ...m, told: e.logNumber }, tell: e.logNumber !== m.told };
    case 'invalidated':
      return { model: { phase: { kind: 'syncing', start: undefined }, position: undefined, failure: undefined, target: undefined, told: undefined }, tell: true };
    case 'persisted': {
      const phase = nextPhase(m.phase, e).phase;
      const reached = m.target !== undefined && comparePlaces(e.position, m.target) >= 0;
      const phaseNews = phase.kind !== m.phase.kind && (phase.kind === 'consistent' || phase.kind === 'off-history');
      return { model: { ...m, phase, position: e.position, target: reached ? undefined : m.target }, tell: reached || m.position?.logNumber !== e.position.logNumber || phaseNews };
    }
    default: {
      const phase = nextPhase(m.phase, e).phase;
      return { model: { ...m, phase }, tell: phase.kind !== m.phase.kind };
    }
  }
}

test('the state holds what its events said, and the indicator is told exactly when something it shows changed', () => {
  fc.assert(
    fc.property(opened, fc.array(event, { maxLength: 16 }), (at, events) => {
      let state = replicaStateAt(at.phase, at.position);
      let model: Model = { phase: at.phase, position: at.position, failure: undefined, target: undefined, told: undefined };
      for (const e of events) {
        const step = replicaStep(state, e);
        const next = modelStep(model, e);
        assert.equal(step.decisions.filter((d) => d.kind === 'tell').length, next.tell ? 1 : 0, `told after ${e.kind}`);
        assert.equal(step.decisions.at(-1)?.kind === 'tell', next.tell, 'telling comes last');
        state = step.state;
        model = next.model;
        assert.deepEqual(state, { phase: model.phase, position: model.position, failure: model.failure, replayTarget: model.target, toldFetchedLog: model.told });
      }
    }),
    { seed, numRuns: 400 },
  );
});

test('a handover waiting for a position hears once, at the first persisted position at or past it, never before', () => {
  fc.assert(
    fc.property(opened, place, fc.array(place, { maxLength: 12 }), (at, target, persisted) => {
      let state = replicaStep(replicaStateAt(at.phase, at.position), { kind: 'wait-for', target }).state;
      let heard = false;
      for (const position of persisted) {
        const before = state.replayTarget;
        state = replicaStep(state, { kind: 'persisted', position }).state;
        if (before !== undefined && comparePlaces(position, target) >= 0) {
          assert.equal(state.replayTarget, undefined, 'the wait is over');
          heard = true;
        } else {
          assert.deepEqual(state.replayTarget, heard ? undefined : target, 'still waiting below the target');
        }
      }
      assert.equal(heard, persisted.some((p) => comparePlaces(p, target) >= 0));
    }),
    { seed, numRuns: 300 },
  );
});

test('the sync state is removed only in the step that makes the copy consistent after a sync', () => {
  const start: PhasePosition = { logNumber: 2, logHost: 'a', offsetBytes: 0 };
  const end: PhasePosition = { logNumber: 2, logHost: 'a', offsetBytes: 300 };
  let state = replicaStateAt<PhasePosition>({ kind: 'syncing', start }, undefined);
  const done = replicaStep(state, { kind: 'sync-done', start, end });
  assert.deepEqual(done.decisions.map((d) => d.kind), ['save-position', 'start-replay', 'tell']);
  state = done.state;
  const below = replicaStep(state, { kind: 'persisted', position: start });
  assert.deepEqual(below.decisions.map((d) => d.kind), ['tell'], 'the first position: a new log for the indicator, nothing else');
  const there = replicaStep(below.state, { kind: 'persisted', position: end });
  assert.deepEqual(there.decisions.map((d) => d.kind), ['remove-sync-state', 'now-consistent', 'tell']);
  assert.equal(there.state.phase.kind, 'consistent');
});
