/**
 * What a forced takeover loses: every byte the old primary is known to hold durable beyond
 * the copy the new primary takes over with, from the old primary's indicator, the other
 * members' indicators (copy ends, version chains) and fetch; exact only when the old
 * primary said its log ends for good; unknown (not 0) when no source gives a figure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { forcedLossOf, knownFromMember, knownFromOldIndicator, mergeKnownLogs, type KnownLog } from '../../src/strategy/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const digest = 'a'.repeat(64);

test('complete logs beyond the copy count whole, the copy\'s own log counts from its end, earlier logs not at all', () => {
  const known: KnownLog[] = [
    { logNumber: 3, origin: 'alpha', durableBytes: 9000, final: true },
    { logNumber: 4, origin: 'alpha', durableBytes: 5000, final: true },
    { logNumber: 5, origin: 'alpha', durableBytes: 700, final: false },
  ];
  assert.deepEqual(forcedLossOf({ logNumber: 4, origin: 'alpha', offsetBytes: 1200 }, known, false), { lostBytes: 3800 + 700, exact: false, known: true, from: [] });
  assert.deepEqual(forcedLossOf(undefined, known, false), { lostBytes: 14700, exact: false, known: true, from: [] });
  // The old primary said where its log ends and no later log is known: exact.
  const ended = [...known.slice(0, 2), { logNumber: 5, origin: 'alpha', durableBytes: 900, final: true }];
  assert.deepEqual(forcedLossOf({ logNumber: 5, origin: 'alpha', offsetBytes: 900 }, ended, true), { lostBytes: 0, exact: true, known: true, from: [] });
  // A copy of another history's log with that number saves nothing of it.
  assert.deepEqual(forcedLossOf({ logNumber: 5, origin: 'beta', offsetBytes: 900 }, ended, true), { lostBytes: 900, exact: true, known: true, from: [] });
});

test('what fetch heard and what the indicator says are merged: the larger durable end of each log counts, with who said it', () => {
  const merged = mergeKnownLogs(
    [{ logNumber: 4, origin: 'alpha', durableBytes: 5000, final: true, from: ["alpha's indicator"] }, { logNumber: 5, origin: 'alpha', durableBytes: 0, final: false, from: [] }],
    [{ logNumber: 4, origin: 'alpha', durableBytes: 4000, final: false, from: ["this host's fetch"] }, { logNumber: 5, origin: 'alpha', durableBytes: 2500, final: false, from: ["this host's fetch"] }],
    [{ logNumber: 5, origin: 'alpha', durableBytes: 2500, final: false, from: ["gamma's copy"] }],
  );
  assert.deepEqual(merged, [
    { logNumber: 4, origin: 'alpha', durableBytes: 5000, final: true, from: ["alpha's indicator"] },
    { logNumber: 5, origin: 'alpha', durableBytes: 2500, final: false, from: ["this host's fetch", "gamma's copy"] },
  ]);
});

test('fetch paused here, the old primary died serving: its published durable end and another member\'s copy give the lower bound, and say so', () => {
  const alpha = { isPrimary: true, logs: [[6, 'alpha', 4096], [7, 'alpha', null]], durableEnd: { logNumber: 7, offsetBytes: 50 * 1024 ** 2 } };
  const gamma = { copyEnd: [7, 'alpha', 64 * 1024 ** 2], version: `${digest},log-000000006-alpha,4096:${digest}` };
  const local = { logNumber: 7, origin: 'alpha', offsetBytes: 1024 ** 2 };
  const onlyAlpha = forcedLossOf(local, mergeKnownLogs(knownFromOldIndicator('alpha', alpha)), false);
  assert.deepEqual(onlyAlpha, { lostBytes: 49 * 1024 ** 2, exact: false, known: true, from: ["alpha's indicator"] });
  const both = forcedLossOf(local, mergeKnownLogs(knownFromOldIndicator('alpha', alpha), knownFromMember('alpha', 'gamma', gamma)), false);
  assert.deepEqual(both, { lostBytes: 63 * 1024 ** 2, exact: false, known: true, from: ["gamma's copy"] });
});

test('nothing known beyond the copy: the loss is unknown, not 0', () => {
  const alpha = { isPrimary: true, logs: [[6, 'alpha', 4096], [7, 'alpha', null]] };
  const local = { logNumber: 7, origin: 'alpha', offsetBytes: 1024 };
  const loss = forcedLossOf(local, mergeKnownLogs(knownFromOldIndicator('alpha', alpha)), false);
  assert.deepEqual(loss, { lostBytes: 0, exact: false, known: false, from: [] });
  assert.equal(forcedLossOf(local, [], false).known, false);
  assert.equal(forcedLossOf(undefined, [], false).known, false);
  // The old primary no longer serves and said where its log ends: exact, even when nothing else is known.
  const stopped = { isPrimary: false, logs: [[7, 'alpha', null]], logEnd: { logNumber: 7, offsetBytes: 1024 } };
  const ended = forcedLossOf(local, mergeKnownLogs(knownFromOldIndicator('alpha', stopped)), true);
  assert.deepEqual(ended, { lostBytes: 0, exact: true, known: true, from: ["alpha's indicator"] });
});

test('members\' reports of other origins, malformed fields and foreign versions count for nothing', () => {
  assert.deepEqual(knownFromMember('alpha', 'gamma', { copyEnd: [7, 'beta', 99], version: `${digest},log-000000006-beta,4096:` }), []);
  assert.deepEqual(knownFromMember('alpha', 'gamma', { copyEnd: [7, 'alpha', -1], version: 'nonsense' }), []);
  assert.deepEqual(knownFromMember('alpha', 'gamma', { copyEnd: 'x', version: 42 }), []);
  assert.deepEqual(knownFromMember('alpha', 'gamma', null), []);
  assert.deepEqual(knownFromOldIndicator('alpha', { logs: [[1, 'alpha'], 'x'], durableEnd: { logNumber: 'x', offsetBytes: 3 }, logEnd: { logNumber: 2, offsetBytes: -5 } }), []);
  assert.deepEqual(knownFromMember('alpha', 'gamma', { version: `${digest},log-000000006-alpha,4096:` }), [{ logNumber: 6, origin: 'alpha', durableBytes: 4096, final: true, from: ["gamma's replayed logs"] }]);
});

/**
 * A model: the old primary's true history (logs with their durable sizes) and sources
 * that each saw a prefix of it (a complete log whole, the live one up to some point).
 */
const truthArb = fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 1, maxLength: 5 });
const sightArb = fc.record({ log: fc.nat(4), share: fc.double({ min: 0, max: 1, noNaN: true }), complete: fc.boolean() });

function sightsOf(truth: readonly number[], sights: readonly { log: number; share: number; complete: boolean }[], source: string): KnownLog[] {
  return sights.flatMap((s) => {
    const i = Math.min(s.log, truth.length - 1);
    const live = i === truth.length - 1;
    const whole = s.complete && !live;
    return [{ logNumber: i + 1, origin: 'alpha', durableBytes: whole ? truth[i]! : Math.floor(truth[i]! * s.share), final: whole, from: [source] }];
  });
}

test('the count never exceeds the true loss, more knowledge never lowers it, a longer copy never raises it, and unknown only without figures', () => {
  fc.assert(
    fc.property(truthArb, fc.array(sightArb, { maxLength: 6 }), fc.array(sightArb, { maxLength: 6 }), fc.nat(4), fc.double({ min: 0, max: 1, noNaN: true }), (truth, a, b, copyLog, copyShare) => {
      const n = Math.min(copyLog, truth.length - 1);
      const local = { logNumber: n + 1, origin: 'alpha', offsetBytes: Math.floor(truth[n]! * copyShare) };
      const trueLoss = truth[n]! - local.offsetBytes + truth.slice(n + 1).reduce((x, y) => x + y, 0);
      const some = forcedLossOf(local, mergeKnownLogs(sightsOf(truth, a, 'a')), false);
      const more = forcedLossOf(local, mergeKnownLogs(sightsOf(truth, a, 'a'), sightsOf(truth, b, 'b')), false);
      assert.ok(some.lostBytes <= trueLoss && more.lostBytes <= trueLoss);
      assert.ok(more.lostBytes >= some.lostBytes);
      assert.ok(!some.known || some.lostBytes >= 0);
      assert.equal(some.known, a.some((s) => Math.min(s.log, truth.length - 1) >= n));
      if (!some.known) assert.equal(some.lostBytes, 0);
      const longer = { ...local, offsetBytes: truth[n]! };
      assert.ok(forcedLossOf(longer, mergeKnownLogs(sightsOf(truth, a, 'a')), false).lostBytes <= some.lostBytes);
      assert.equal(some.exact, false);
    }),
    { seed: fcSeed, numRuns: 400 },
  );
});
