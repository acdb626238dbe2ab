/**
 * A rival history found by fetch or replay: a member mid-sync (or replaying towards its
 * sync's end) has no consistent data and resyncs from the primary, a bounded number of
 * times in a row; a consistent member, or one replaying back to its dirty mark after a
 * crash, reports the split brain. A change of the designated primary makes a member
 * that is not consistent since its sync start that sync again with a clean slate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isConsistentPhase, onPrimaryChange, onRivalHistory, rivalResyncsMax, type ReplicaPhase } from '../../src/strategy/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const at = (logNumber: number, offsetBytes: number): { logNumber: number; logHost: string; offsetBytes: number } => ({ logNumber, logHost: 'alpha', offsetBytes });

test('a member in the middle of its full sync resyncs; a consistent one reports the split brain', () => {
  assert.equal(onRivalHistory({ kind: 'syncing', start: at(3, 100) }, 0).kind, 'resync');
  assert.equal(onRivalHistory({ kind: 'syncing', start: undefined }, 0).kind, 'resync');
  assert.equal(onRivalHistory({ kind: 'replaying', syncEnd: at(4, 0), dirtyUntil: undefined }, 0).kind, 'resync');
  assert.equal(onRivalHistory({ kind: 'replaying', syncEnd: at(4, 0), dirtyUntil: at(4, 10) }, 0).kind, 'resync');
  assert.equal(onRivalHistory({ kind: 'consistent' }, 0).kind, 'split-brain');
  // Consistent before a crash, replaying back to where it had written the device: a history of its own.
  assert.equal(onRivalHistory({ kind: 'replaying', syncEnd: undefined, dirtyUntil: at(5, 0) }, 0).kind, 'split-brain');
  // Off the history (it may hold direct writes of its own as a former primary): the operator decides, never a silent resync.
  assert.equal(onRivalHistory({ kind: 'off-history', reason: 'r' }, 0).kind, 'split-brain');
  assert.equal(onPrimaryChange({ kind: 'off-history', reason: 'r' }).kind, 'redial');
});

test('after rivalResyncsMax resyncs in a row the member stops and reports the split brain', () => {
  const syncing: ReplicaPhase = { kind: 'syncing', start: undefined };
  for (let i = 0; i < rivalResyncsMax; i++) assert.equal(onRivalHistory(syncing, i).kind, 'resync');
  const last = onRivalHistory(syncing, rivalResyncsMax);
  assert.equal(last.kind, 'split-brain');
  assert.match(last.why, /resynced 3 times in a row/);
});

const place = fc.record({ logNumber: fc.integer({ min: 1, max: 9 }), logHost: fc.constantFrom('alpha', 'beta'), offsetBytes: fc.nat(1000) });
const phaseArb: fc.Arbitrary<ReplicaPhase> = fc.oneof(
  fc.record({ kind: fc.constant('syncing' as const), start: fc.option(place, { nil: undefined }) }),
  fc.record({ kind: fc.constant('replaying' as const), syncEnd: fc.option(place, { nil: undefined }), dirtyUntil: fc.option(place, { nil: undefined }) }),
  fc.constant({ kind: 'consistent' as const }),
);

test('a member with a consistent history of its own never resyncs by itself; one without resyncs only within the limit', () => {
  fc.assert(
    fc.property(phaseArb, fc.nat(10), (phase, before) => {
      const d = onRivalHistory(phase, before);
      const hasOwnHistory = isConsistentPhase(phase) || (phase.kind === 'replaying' && phase.syncEnd === undefined);
      assert.equal(d.kind === 'resync', !hasOwnHistory && before < rivalResyncsMax);
      assert.ok(d.why.length > 0);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

test('a new primary: a member mid-sync or replaying towards its sync\'s end syncs again; a consistent one (or one past a crash) carries on', () => {
  assert.equal(onPrimaryChange({ kind: 'syncing', start: at(3, 100) }).kind, 'resync');
  assert.equal(onPrimaryChange({ kind: 'syncing', start: undefined }).kind, 'resync');
  assert.equal(onPrimaryChange({ kind: 'replaying', syncEnd: at(4, 0), dirtyUntil: undefined }).kind, 'resync');
  assert.equal(onPrimaryChange({ kind: 'replaying', syncEnd: undefined, dirtyUntil: at(4, 0) }).kind, 'redial');
  assert.equal(onPrimaryChange({ kind: 'consistent' }).kind, 'redial');
  fc.assert(
    fc.property(phaseArb, (phase) => {
      // Exactly the members a rival history would resync (below the limit) resync on a new primary.
      assert.equal(onPrimaryChange(phase).kind === 'resync', onRivalHistory(phase, 0).kind === 'resync');
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});
