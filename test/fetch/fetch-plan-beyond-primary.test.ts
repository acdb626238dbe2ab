/**
 * A local copy beyond the designated primary's own open log is another history's: after
 * `primary --force` on a member that stopped before the old primary's emergency hole (or
 * whose newest log is below the numbers other members hold), the new primary's next log
 * takes a number below the copies of the old history. Fetch must fail with the advice to
 * invalidate rather than wait for the source to reach those numbers, which it never will;
 * it tries again (a former primary taking over in a planned handover reads the same way
 * until it has fetched the first log written since). A source that is merely behind (not
 * the primary, or the primary still replaying another host's logs) is waited for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planFetch } from '../../src/fetch/fetch-plan.js';
import { formatLogName } from '../../src/log/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

test('a copy beyond the primary\'s own open log is another history: fetch fails with the advice to invalidate (forced member stopped before the old primary\'s hole)', () => {
  // alpha wrote logs 1-4, left a hole at 5 (emergency mode), went on with 6 and 7. beta had
  // replayed only log 3 and was forced: its next log is 4-beta. alpha restarts as a secondary.
  const local = { name: formatLogName(7, 'alpha'), verifiedBytes: 900 };
  const listed = [
    { name: formatLogName(3, 'alpha'), durableBytes: 400, complete: true },
    { name: formatLogName(4, 'beta'), durableBytes: 120, complete: false },
  ];
  // Without knowing the source is the primary, nothing tells it from a source that is behind.
  assert.equal(planFetch(local, listed, false, 6, [formatLogName(6, 'alpha'), local.name]).action, 'wait');
  const plan = planFetch(local, listed, false, 6, [formatLogName(6, 'alpha'), local.name], 0, 'beta');
  // A failure fetch tries again (not a final divergence): a primary still catching up reads the same way.
  assert.equal(plan.action, 'unavailable');
  assert.match(plan.reason, /log-000000007-alpha, beyond log-000000004-beta, the newest log of the primary beta: another history .*invalidate this host/);
});

test('a member with no copy yet whose replay starts beyond the primary\'s open log is told it is on another history', () => {
  // gamma synced from alpha after the hole: its replay starts in log 7; beta's newest is 4-beta.
  const listed = [{ name: formatLogName(4, 'beta'), durableBytes: 120, complete: false }];
  assert.equal(planFetch(undefined, listed, false, 7).action, 'wait');
  assert.equal(planFetch(undefined, listed, false, 7, [], 0, 'beta').action, 'unavailable');
});

test('a list that does not reach the primary\'s newest log yet is paged on, not judged', () => {
  const local = { name: formatLogName(9, 'alpha'), verifiedBytes: 10 };
  const page = [{ name: formatLogName(2, 'alpha'), durableBytes: 400, complete: true }];
  assert.deepEqual(planFetch(local, page, true, 2, [local.name], 0, 'beta'), { action: 'relist', fromLogNumber: 3 });
});

test('a source that is behind is waited for: another host\'s newest log (a new primary still replaying), a rotated log, or no log at all', () => {
  const local = { name: formatLogName(7, 'alpha'), verifiedBytes: 900 };
  const behind = [{ name: formatLogName(6, 'alpha'), durableBytes: 500, complete: false }];
  assert.equal(planFetch(local, behind, false, 6, [local.name], 0, 'beta').action, 'wait', 'beta still replays alpha\'s logs');
  const rotated = [{ name: formatLogName(5, 'beta'), durableBytes: 500, complete: true }];
  assert.equal(planFetch(local, rotated, false, 5, [local.name], 0, 'beta').action, 'wait');
  assert.equal(planFetch(local, [], false, 5, [local.name], 0, 'beta').action, 'wait', 'a primary in emergency mode lists no log');
});

test('copies of the primary\'s own history are never beyond it, whatever part of it either side holds', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('alpha', 'beta'), { minLength: 1, maxLength: 8 }), fc.nat(), fc.nat(), (origins, a, b) => {
      // The primary wrote the last log of the history and still writes it.
      const names = origins.map((o, i) => formatLogName(i + 1, i === origins.length - 1 ? 'primary' : o));
      const theirs = names.slice(b % names.length).map((name, i, all) => ({ name, durableBytes: 100, complete: i < all.length - 1 }));
      const mine = names.slice(a % names.length, Math.max(a % names.length + 1, names.length - (b % 2)));
      const plan = planFetch({ name: mine.at(-1)!, verifiedBytes: 50 }, theirs, false, 1, mine, 0, 'primary');
      assert.ok(plan.action !== 'diverged' && !(plan.action === 'unavailable' && plan.reason.includes('another history')), JSON.stringify(plan));
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});
