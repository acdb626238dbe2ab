/**
 * Split brain from the members' reports (pure): one log number with two origins, or a
 * member whose fetch found its copy at odds with the source. Examples for each verdict,
 * and a property: the verdict does not depend on the order the members are listed in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { detectSplitBrain, historyOf, resolutionOf, type MemberHistory } from '../../src/strategy/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

test('one history, however far each member is, is no split brain', () => {
  const members: MemberHistory[] = [
    { host: 'alpha', logs: [[3, 'alpha', 100], [4, 'beta', 50], [5, 'beta', null]] },
    { host: 'beta', logs: [[4, 'beta', 50], [5, 'beta', null]] },
    { host: 'gamma', logs: [[3, 'alpha', 100]] },
  ];
  assert.equal(detectSplitBrain(members), undefined);
});

test('a log number written by two hosts splits the members into sides; the loss counts a former primary\'s final log', () => {
  const members: MemberHistory[] = [
    { host: 'alpha', logs: [[6, 'alpha', 1000], [7, 'alpha', null]], logEnd: { logNumber: 7, offsetBytes: 5000 } },
    { host: 'beta', logs: [[6, 'alpha', 1000], [7, 'beta', 300], [8, 'beta', null]] },
    { host: 'gamma', logs: [[6, 'alpha', 1000], [7, 'beta', null]] },
    { host: 'delta', logs: [[5, 'alpha', 10]] },
  ];
  const s = detectSplitBrain(members);
  assert.deepEqual(s, {
    atLog: 7,
    atOffsetBytes: 0,
    sides: [
      { origin: 'alpha', hosts: ['alpha'], lossBytes: 5000 },
      { origin: 'beta', hosts: ['beta', 'gamma'], lossBytes: 300 },
    ],
    undecided: ['delta'],
    reports: [],
  });
});

test('a fetch that found diverging copies is a split brain even without a second origin', () => {
  const s = detectSplitBrain([
    { host: 'alpha', logs: [[6, 'alpha', null]], diverged: "the local copy of log-000000006-alpha has 900 bytes, more than the source's complete log of 800 bytes" },
    { host: 'beta', logs: [[6, 'alpha', 800], [7, 'beta', null]] },
  ]);
  assert.ok(s !== undefined);
  assert.equal(s.atLog, 0);
  assert.deepEqual(s.reports.map((r) => r.host), ['alpha']);
});

test('the old primary wrote on after a failover to a shorter copy of its last log: split inside that log, with both sides', () => {
  // alpha wrote log 5 to 1000 bytes; beta took over with 800 of them and wrote log 6; gamma had fetched 900.
  const members: MemberHistory[] = [
    { host: 'alpha', logs: [[4, 'alpha', 50], [5, 'alpha', null]], logEnd: { logNumber: 5, offsetBytes: 1000 } },
    { host: 'beta', logs: [[4, 'alpha', 50], [5, 'alpha', 800], [6, 'beta', 300], [7, 'beta', null]] },
    { host: 'gamma', logs: [[4, 'alpha', 50], [5, 'alpha', 900]] },
    { host: 'delta', logs: [[4, 'alpha', 50], [5, 'alpha', 800]] },
  ];
  const s = detectSplitBrain(members);
  assert.deepEqual(s, {
    atLog: 5,
    atOffsetBytes: 800,
    sides: [
      { origin: 'alpha', hosts: ['alpha', 'gamma'], lossBytes: 200 },
      { origin: 'beta', hosts: ['beta'], lossBytes: 300 },
    ],
    undecided: ['delta'],
    reports: [],
  });
  assert.deepEqual(resolutionOf(s, 'r1', 'beta'), [
    { keep: 'alpha', lossBytes: 300, steps: [{ host: 'alpha', command: 'marsadm primary r1 --force --yes' }, { host: 'beta', command: 'marsadm invalidate r1' }] },
    { keep: 'beta', lossBytes: 200, steps: [{ host: 'alpha', command: 'marsadm invalidate r1' }, { host: 'gamma', command: 'marsadm invalidate r1' }] },
  ]);
  // A planned handover ends the log at the same length everywhere: no split.
  assert.equal(detectSplitBrain([members[1]!, { host: 'alpha', logs: [[5, 'alpha', null]], logEnd: { logNumber: 5, offsetBytes: 800 } }]), undefined);
});

test('indicators from peers: malformed entries are ignored, never trusted', () => {
  const h = historyOf('x', { logs: [[1, 'a', 5], ['2', 'b', 1], [3, 7, 1], [4, 'c', -1], 'junk'], diverged: 5, logEnd: { logNumber: 4, offsetBytes: 'many' } });
  assert.deepEqual(h, { host: 'x', logs: [[1, 'a', 5], [4, 'c', null]] });
  assert.deepEqual(historyOf('y', null), { host: 'y', logs: [] });
});

test('the verdict does not depend on the order of the members or of their logs', () => {
  const member = fc.record({
    host: fc.constantFrom('a', 'b', 'c', 'd'),
    logs: fc.uniqueArray(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.constantFrom('a', 'b'), fc.option(fc.nat(1000), { nil: null })), { selector: (l) => l[0], maxLength: 4 }),
  });
  fc.assert(
    fc.property(fc.uniqueArray(member, { selector: (m) => m.host, maxLength: 4 }), fc.nat(), (raw, shift) => {
      const members: MemberHistory[] = raw.map((m) => ({ host: m.host, logs: [...m.logs].sort((x, y) => x[0] - y[0]) }));
      const rotated = members.map((_, i) => members[(i + shift) % members.length]!);
      assert.deepEqual(detectSplitBrain(rotated), detectSplitBrain(members));
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});
