import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compareVersions, liveEntry, mergeEntry, tombstone, withSeenBy, type Entry } from '../../src/meta/entry.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const hostArb = fc.constantFrom('a', 'b', 'c', 'd');

// Few stamps, owners and values, so that ties on every part of the order occur.
const entryArb: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({ lamport: fc.bigInt(1n, 4n), owner: hostArb, value: fc.oneof(fc.constantFrom('x', 'y'), fc.integer({ min: 0, max: 2 }), fc.constant(null)) }).map((r) => liveEntry(r.value, r.lamport, r.owner)),
  fc.record({ lamport: fc.bigInt(1n, 4n), owner: hostArb, seenBy: fc.subarray(['a', 'b', 'c', 'd']) }).map((r) => tombstone(r.lamport, r.owner, [r.owner, ...r.seenBy])),
);

void test('merge is commutative', () => {
  fc.assert(
    fc.property(entryArb, entryArb, (a, b) => {
      assert.deepEqual(mergeEntry(a, b), mergeEntry(b, a));
    }),
    { seed: fcSeed, numRuns: 2000 },
  );
});

void test('merge is associative', () => {
  fc.assert(
    fc.property(entryArb, entryArb, entryArb, (a, b, c) => {
      assert.deepEqual(mergeEntry(mergeEntry(a, b), c), mergeEntry(a, mergeEntry(b, c)));
    }),
    { seed: fcSeed, numRuns: 2000 },
  );
});

void test('merge is idempotent, and merging a version already held changes nothing', () => {
  fc.assert(
    fc.property(entryArb, entryArb, (a, b) => {
      assert.deepEqual(mergeEntry(a, a), a);
      const ab = mergeEntry(a, b);
      assert.deepEqual(mergeEntry(ab, b), ab);
      assert.deepEqual(mergeEntry(ab, a), ab);
    }),
    { seed: fcSeed, numRuns: 2000 },
  );
});

void test('an older Lamport stamp never wins over a newer one', () => {
  fc.assert(
    fc.property(entryArb, entryArb, (a, b) => {
      fc.pre(a.lamport !== b.lamport);
      const newer = a.lamport > b.lamport ? a : b;
      assert.equal(compareVersions(mergeEntry(a, b), newer), 0);
    }),
    { seed: fcSeed, numRuns: 1000 },
  );
});

void test('a tombstone beats the value it deletes, and seen-by sets only grow', () => {
  fc.assert(
    fc.property(entryArb, hostArb, (e, host) => {
      const t = tombstone(e.lamport + 1n, e.owner, [e.owner]);
      assert.equal(mergeEntry(e, t), t);
      const seen = withSeenBy(t, host);
      assert.ok(seen.seenBy.includes(host));
      assert.ok(t.seenBy.every((h) => seen.seenBy.includes(h)));
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});
