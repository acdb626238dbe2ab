/**
 * The state words of a member, derived once for view and for every member list: examples
 * for each rule, properties over every combination of facts (an unreachable member is
 * never shown healthy, UpToDate and Replicating only when true), and the indicator codec
 * (round trip; any JSON from a peer parses without throwing).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeReplication, holeAheadOf, memberState, parseIndicator, type IndicatorReplication, type MemberFacts } from '../../src/strategy/index.js';
import type { JsonValue } from '../../src/meta/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

const replicating: IndicatorReplication = {
  consistent: true,
  switches: { fetch: true, replay: true, sync: true },
  syncState: null,
  fetchState: 'caught-up',
  replayState: 'caught-up',
  fetchRestBytes: 0,
  replayRestBytes: 0,
  syncDoneBytes: null,
  syncSizeBytes: null,
  lagS: 0,
};
const secondary: MemberFacts = { state: 'serving', designatedPrimary: false, servingAsPrimary: false, emergency: false, replication: replicating, holeAhead: null, reachable: true };
const primary: MemberFacts = { ...secondary, designatedPrimary: true, servingAsPrimary: true, replication: null };
const words = (f: MemberFacts): string => {
  const w = memberState(f);
  return `${w.diskState} ${w.replState}`;
};

void test('a caught-up secondary is UpToDate Replicating; behind, paused or stopped it says so', () => {
  assert.equal(words(secondary), 'UpToDate Replicating');
  assert.equal(words({ ...secondary, replication: { ...replicating, fetchRestBytes: 10, fetchState: 'fetching' } }), 'OutDated Replicating');
  assert.equal(words({ ...secondary, replication: { ...replicating, switches: { fetch: true, replay: false, sync: true }, replayState: 'paused', replayRestBytes: 5 } }), 'OutDated PausedReplay');
  assert.equal(words({ ...secondary, replication: { ...replicating, switches: { fetch: false, replay: true, sync: true } } }), 'UpToDate PausedFetch');
  assert.equal(words({ ...secondary, state: 'detached', replication: null }), 'Detached Stopped');
  assert.equal(words({ ...secondary, state: 'failed', replication: null }), 'Failed Failed');
  assert.equal(words({ ...secondary, replication: { ...replicating, consistent: false, syncState: 'syncing' } }), 'InConsistent Syncing');
});

void test('a secondary that does not know its fetch-rest (it has not heard from its primary) is never UpToDate', () => {
  const unheard = { ...replicating, fetchRestBytes: null };
  assert.equal(words({ ...secondary, replication: { ...unheard, fetchState: 'source-unreachable' } }), 'OutDated PrimaryUnreachable');
  // Even a state word that claims caught-up does not make an unknown rest 0.
  assert.equal(words({ ...secondary, replication: unheard }), 'OutDated Replicating');
});

void test('the indicator codec keeps an unknown fetch-rest (null) and drops a malformed one', () => {
  const unheard = { ...replicating, fetchState: 'source-unreachable', fetchRestBytes: null, lagS: null };
  const parsed = parseIndicator({ state: 'serving', repl: encodeReplication(unheard) });
  assert.deepEqual(parsed.replication, unheard, 'a peer that does not know its fetch-rest is still a replicating member');
  assert.equal(words({ ...secondary, replication: parsed.replication }), 'OutDated PrimaryUnreachable');
  for (const bad of ['0', -1, 1.5, true]) {
    const encoded = { ...(encodeReplication(replicating) as Record<string, JsonValue>), fetchRestBytes: bad };
    assert.equal(parseIndicator({ state: 'serving', repl: encoded }).replication, null, `fetchRestBytes ${JSON.stringify(bad)}`);
  }
  const absent = Object.fromEntries(Object.entries(encodeReplication(replicating) as Record<string, JsonValue>).filter(([field]) => field !== 'fetchRestBytes'));
  assert.equal(parseIndicator({ state: 'serving', repl: absent }).replication, null, 'absent is malformed, not unknown');
});

void test('a secondary at an emergency hole is StoppedAtHole, never Replicating', () => {
  assert.equal(words({ ...secondary, holeAhead: 4 }), 'OutDated StoppedAtHole');
  assert.equal(holeAheadOf({ emergency: true, hole: null, needsLog: 3 }, 3), 4);
  assert.equal(holeAheadOf({ emergency: false, hole: 4, needsLog: 5 }, 3), 4);
  assert.equal(holeAheadOf({ emergency: false, hole: 4, needsLog: 5 }, 5), null);
});

void test('a primary in emergency mode is EmergencyMode NotLogging; a dead one is Unknown Unreachable', () => {
  assert.equal(words(primary), 'UpToDate Replicating');
  assert.equal(words({ ...primary, emergency: true }), 'EmergencyMode NotLogging');
  assert.equal(words({ ...primary, reachable: false }), 'Unknown Unreachable');
  assert.equal(words({ ...primary, servingAsPrimary: false, state: 'failed' }), 'Failed Stopped');
});

const factsArb: fc.Arbitrary<MemberFacts> = fc.record({
  state: fc.constantFrom(null, 'serving', 'recovering', 'failed', 'stopped', 'detached', 'waiting', 'unconfigured', 'bogus'),
  designatedPrimary: fc.boolean(),
  servingAsPrimary: fc.boolean(),
  emergency: fc.boolean(),
  replication: fc.option(
    fc.record({
      consistent: fc.boolean(),
      switches: fc.record({ fetch: fc.boolean(), replay: fc.boolean(), sync: fc.boolean() }),
      syncState: fc.constantFrom(null, 'syncing', 'paused', 'source-unreachable', 'done', 'failed'),
      fetchState: fc.constantFrom('idle', 'source-unreachable', 'fetching', 'caught-up', 'paused', 'paused-no-space', 'failed', 'waiting-for-sync'),
      replayState: fc.constantFrom('idle', 'replaying', 'caught-up', 'paused', 'failed', 'waiting-for-sync'),
      fetchRestBytes: fc.option(fc.nat(), { nil: null }),
      replayRestBytes: fc.nat(),
    }),
    { nil: null },
  ),
  holeAhead: fc.option(fc.integer({ min: 1, max: 100 }), { nil: null }),
  reachable: fc.boolean(),
});

void test('over every combination of facts: unreachable is never healthy, UpToDate and Replicating only when true', () => {
  fc.assert(
    fc.property(factsArb, (f) => {
      const w = memberState(f);
      if (!f.reachable) {
        assert.deepEqual(w, { diskState: 'Unknown', replState: 'Unreachable' });
        return;
      }
      const r = f.replication;
      if (w.diskState === 'UpToDate') {
        const caughtUp = r !== null && r.consistent && r.fetchRestBytes === 0 && r.replayRestBytes === 0 && r.fetchState === 'caught-up' && f.holeAhead === null;
        assert.ok((f.servingAsPrimary && !f.emergency) || caughtUp, JSON.stringify(f));
      }
      if (w.replState === 'Replicating' && !f.servingAsPrimary) {
        assert.ok(r !== null && r.switches.fetch && r.switches.replay && f.holeAhead === null && f.state === 'serving', JSON.stringify(f));
      }
      if (f.servingAsPrimary && f.emergency) assert.equal(w.diskState, 'EmergencyMode');
      if (f.state === 'serving' && !f.servingAsPrimary && r !== null && f.holeAhead !== null) assert.equal(w.replState, 'StoppedAtHole');
    }),
    { seed: fcSeed, numRuns: 2000 },
  );
});

void test('the indicator codec: replication round-trips; any JSON parses without throwing, bad fields as absent', () => {
  const encoded = encodeReplication({ ...replicating, syncState: 'syncing', syncDoneBytes: 5, syncSizeBytes: 10, lagS: 7 });
  assert.deepEqual(parseIndicator({ state: 'serving', repl: encoded }).replication, { ...replicating, syncState: 'syncing', syncDoneBytes: 5, syncSizeBytes: 10, lagS: 7 });
  // An indicator of an older marsd, without the lag in seconds: the lag is unknown, not 0.
  const older = Object.fromEntries(Object.entries(encoded as Record<string, JsonValue>).filter(([field]) => field !== 'lagS'));
  assert.equal(parseIndicator({ state: 'serving', repl: older }).replication?.lagS, null);
  const bad = parseIndicator({ state: 3, isPrimary: 'yes', needsLog: -1, hole: 1.5, nbdClients: ['a', 4], repl: { switches: [true] } });
  assert.deepEqual(bad, { state: null, isPrimary: false, reason: null, consistent: null, needsLog: null, fetchedLog: null, emergency: false, hole: null, nbdClients: ['a'], deviceBytes: null, replication: null });
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      parseIndicator(value as JsonValue);
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});
