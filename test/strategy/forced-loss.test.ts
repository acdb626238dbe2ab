/**
 * What a forced takeover loses: every byte the old primary is known to hold durable beyond
 * the copy the new primary takes over with, from its indicator and from fetch; exact only
 * when the old primary said its log ends for good.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { forcedLossOf, mergeKnownLogs, type KnownLog } from '../../src/strategy/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

test('complete logs beyond the copy count whole, the copy\'s own log counts from its end, earlier logs not at all', () => {
  const known: KnownLog[] = [
    { logNumber: 3, origin: 'alpha', durableBytes: 9000, final: true },
    { logNumber: 4, origin: 'alpha', durableBytes: 5000, final: true },
    { logNumber: 5, origin: 'alpha', durableBytes: 700, final: false },
  ];
  assert.deepEqual(forcedLossOf({ logNumber: 4, origin: 'alpha', offsetBytes: 1200 }, known, false), { lostBytes: 3800 + 700, exact: false });
  assert.deepEqual(forcedLossOf(undefined, known, false), { lostBytes: 14700, exact: false });
  // The old primary said where its log ends and no later log is known: exact.
  const ended = [...known.slice(0, 2), { logNumber: 5, origin: 'alpha', durableBytes: 900, final: true }];
  assert.deepEqual(forcedLossOf({ logNumber: 5, origin: 'alpha', offsetBytes: 900 }, ended, true), { lostBytes: 0, exact: true });
  // A copy of another history's log with that number saves nothing of it.
  assert.deepEqual(forcedLossOf({ logNumber: 5, origin: 'beta', offsetBytes: 900 }, ended, true), { lostBytes: 900, exact: true });
});

test('what fetch heard and what the indicator says are merged: the larger durable end of each log counts', () => {
  const merged = mergeKnownLogs(
    [{ logNumber: 4, origin: 'alpha', durableBytes: 5000, final: true }, { logNumber: 5, origin: 'alpha', durableBytes: 0, final: false }],
    [{ logNumber: 4, origin: 'alpha', durableBytes: 4000, final: false }, { logNumber: 5, origin: 'alpha', durableBytes: 2500, final: false }],
  );
  assert.deepEqual(merged, [
    { logNumber: 4, origin: 'alpha', durableBytes: 5000, final: true },
    { logNumber: 5, origin: 'alpha', durableBytes: 2500, final: false },
  ]);
});

test('more knowledge never lowers the count, and a longer copy never raises it', () => {
  const log = fc.record({ logNumber: fc.integer({ min: 1, max: 6 }), origin: fc.constantFrom('alpha', 'beta'), durableBytes: fc.nat(10_000), final: fc.boolean() });
  fc.assert(
    fc.property(fc.array(log, { maxLength: 6 }), fc.array(log, { maxLength: 6 }), fc.integer({ min: 1, max: 6 }), fc.nat(10_000), fc.nat(10_000), (a, b, n, x, y) => {
      const local = { logNumber: n, origin: 'alpha', offsetBytes: Math.min(x, y) };
      const longer = { ...local, offsetBytes: Math.max(x, y) };
      const some = forcedLossOf(local, mergeKnownLogs(a), false).lostBytes;
      assert.ok(forcedLossOf(local, mergeKnownLogs(a, b), false).lostBytes >= some);
      assert.ok(forcedLossOf(longer, mergeKnownLogs(a), false).lostBytes <= some);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});
