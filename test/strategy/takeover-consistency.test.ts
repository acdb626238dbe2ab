/**
 * `marsadm primary` and a member's own consistency: the refusal names the real reason
 * (below the dirty mark, an unfinished sync, off the history), `--force
 * --allow-inconsistent` overrides only the dirty mark, and a member off the history is
 * refused whatever the flags, with the way out (invalidate) in the message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { takeoverConsistency, type TakeoverConsistencyFacts } from '../../src/strategy/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

const consistent: TakeoverConsistencyFacts = {
  host: 'beta',
  resource: 'r1',
  force: false,
  allowInconsistent: false,
  consistent: true,
  synced: true,
  dirtyUntil: undefined,
  persistedPosition: { logNumber: 3, logHost: 'alpha', offsetBytes: 4096 },
  offHistory: undefined,
};
const mark = { logNumber: 3, logHost: 'alpha', offsetBytes: 1314816 };
const belowMark: TakeoverConsistencyFacts = { ...consistent, consistent: false, dirtyUntil: mark };
/** The replica's reason when replay left the mark's log before the mark (src/strategy/replica-phase.ts). */
const offReason = "before a crash replay wrote the device up to 3:1314816 of alpha, but log 3 replayed here ends at 8192: the device may hold writes the primary's history does not have (after primary --force); invalidate this member";
/** Off the history the phase has no dirty mark and no sync: only the reason tells. */
const offHistory: TakeoverConsistencyFacts = { ...consistent, consistent: false, offHistory: offReason };

void test('a consistent member may take over, with or without --force', () => {
  assert.deepEqual(takeoverConsistency(consistent), { kind: 'allowed', overridden: false });
  assert.deepEqual(takeoverConsistency({ ...consistent, force: true, allowInconsistent: true }), { kind: 'allowed', overridden: false });
});

void test('below its dirty mark: refused naming the point; --force --allow-inconsistent takes over with that disk', () => {
  const refused = takeoverConsistency({ ...belowMark, force: true });
  assert.deepEqual(refused, {
    kind: 'refused',
    reason: 'beta is not consistent for r1: before a crash its replay wrote the device up to 3:1314816 of alpha, and replay must get there again (from 3:4096); refusing to make it primary (primary --force --allow-inconsistent takes over with that disk)',
  });
  assert.deepEqual(takeoverConsistency({ ...belowMark, force: true, allowInconsistent: true }), { kind: 'allowed', overridden: true });
  assert.equal(takeoverConsistency({ ...belowMark, allowInconsistent: true }).kind, 'refused', '--allow-inconsistent only with --force');
});

void test('an unfinished sync is refused, also with --force --allow-inconsistent', () => {
  const syncing: TakeoverConsistencyFacts = { ...consistent, consistent: false, synced: false };
  const expected = { kind: 'refused', reason: 'beta is not consistent for r1 (its sync or the replay after it is unfinished): refusing to make it primary' };
  assert.deepEqual(takeoverConsistency(syncing), expected);
  assert.deepEqual(takeoverConsistency({ ...syncing, force: true, allowInconsistent: true }), expected);
  assert.deepEqual(takeoverConsistency({ ...syncing, dirtyUntil: mark, force: true, allowInconsistent: true }).kind, 'refused', 'a dirty mark on an unfinished sync is no way round it');
});

void test('off the history: refused with --force --allow-inconsistent too, naming why and that invalidate is the way out', () => {
  const reason = `beta cannot become primary of r1: its device holds writes the current history does not have (${offReason}); no replay removes them and primary --force --allow-inconsistent does not take over with them: run marsadm invalidate r1 on beta (copy data out of its device first if it matters), or make a consistent member primary`;
  for (const flags of [{}, { force: true }, { force: true, allowInconsistent: true }]) {
    assert.deepEqual(takeoverConsistency({ ...offHistory, ...flags }), { kind: 'refused', reason }, JSON.stringify(flags));
  }
  assert.doesNotMatch(reason, /sync or the replay after it is unfinished/, 'not the generic words');
});

void test('over every combination: allowed only when consistent, or below a dirty mark of a finished sync with both flags; never off the history', () => {
  const place = fc.record({ logNumber: fc.integer({ min: 1, max: 9 }), logHost: fc.constantFrom('alpha', 'gamma'), offsetBytes: fc.nat({ max: 1 << 20 }) });
  const facts: fc.Arbitrary<TakeoverConsistencyFacts> = fc.record({
    host: fc.constant('beta'),
    resource: fc.constant('r1'),
    force: fc.boolean(),
    allowInconsistent: fc.boolean(),
    consistent: fc.boolean(),
    synced: fc.boolean(),
    dirtyUntil: fc.option(place, { nil: undefined }),
    persistedPosition: fc.option(place, { nil: undefined }),
    offHistory: fc.option(fc.constant(offReason), { nil: undefined }),
  });
  fc.assert(
    fc.property(facts, (f) => {
      const verdict = takeoverConsistency(f);
      const overridable = f.force && f.allowInconsistent && f.dirtyUntil !== undefined && f.synced;
      const allowed = f.offHistory === undefined && ((f.consistent && f.dirtyUntil === undefined) || overridable);
      assert.equal(verdict.kind, allowed ? 'allowed' : 'refused', JSON.stringify(f));
      if (verdict.kind === 'refused') assert.match(verdict.reason, /^beta (is not consistent for|cannot become primary of) r1\b/);
      if (verdict.kind === 'refused' && f.offHistory !== undefined) assert.match(verdict.reason, /marsadm invalidate r1 on beta/);
    }),
    { seed: fcSeed, numRuns: 1000 },
  );
});
