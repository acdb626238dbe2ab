/**
 * The fetch plan compares every local copy the source lists, not only the last one: a
 * member that diverged at a later split (its last copy has a number the new primary has not
 * reached yet) is told so at once instead of waiting for the source for ever.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planFetch } from '../../src/fetch/fetch-plan.js';
import { formatLogName } from '../../src/log/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

test('an earlier local copy with another origin than the source\'s log of that number is a divergence, even while the last copy is ahead of the source', () => {
  // beta's history: 10-beta, 11-beta; gamma forced a takeover at 10 and has not reached 11.
  const local = { name: formatLogName(11, 'beta'), verifiedBytes: 300 };
  const logs = [{ name: formatLogName(9, 'beta'), durableBytes: 100, complete: true }, { name: formatLogName(10, 'gamma'), durableBytes: 60, complete: false }];
  assert.equal(planFetch(local, logs, false, 9).action, 'wait', 'the last copy alone cannot tell');
  assert.deepEqual(planFetch(local, logs, false, 9, [formatLogName(9, 'beta'), formatLogName(10, 'beta'), formatLogName(11, 'beta')]), {
    action: 'diverged',
    reason: 'this host holds log-000000010-beta, the source log-000000010-gamma',
  });
});

test('local copies of the source\'s own history never read as a divergence, whatever part of it either holds', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('alpha', 'beta'), { minLength: 2, maxLength: 8 }), fc.nat(), fc.nat(), (origins, a, b) => {
      const names = origins.map((o, i) => formatLogName(i + 1, o));
      const mineFrom = a % names.length;
      const theirsFrom = b % names.length;
      const mine = names.slice(mineFrom);
      const logs = names.slice(theirsFrom).map((name, i, all) => ({ name, durableBytes: 100, complete: i < all.length - 1 }));
      const last = mine.at(-1)!;
      const plan = planFetch({ name: last, verifiedBytes: 50 }, logs, false, 1, mine);
      assert.notEqual(plan.action, 'diverged', JSON.stringify(plan));
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});
