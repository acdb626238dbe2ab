/**
 * Every split brain is named, whatever log each member's history begins at: a model of
 * one history with a fork (a forced failover at the start of a log, or after a shorter copy
 * of it), members holding windows of either branch (a member that joined by sync holds only
 * logs from its sync's log on), and the detector must name exactly that split, with
 * exactly the members on each side. Without a fork, no window of the history is a split.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { detectSplitBrain, detectSplitBrains, partingOf, type MemberHistory } from '../../src/strategy/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

type Log = readonly [number, string, number];

/** A member's report of logs [from, to] of a branch: complete logs with their lengths, the last one live. */
function windowOf(host: string, branch: readonly Log[], from: number, to: number): MemberHistory {
  const logs = branch.filter(([n]) => n >= from && n <= to).map(([n, origin, bytes], i, all) => [n, origin, i === all.length - 1 ? null : bytes] as [number, string, number | null]);
  return { host, logs };
}

const lineage = fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.nat(4096)), { minLength: 4, maxLength: 9 }).map((xs) => xs.map(([origin, bytes], i): Log => [i + 1, origin, bytes]));

test('members holding windows of one history, begun at any log, are never a split brain', () => {
  fc.assert(
    fc.property(lineage, fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 5 }), (history, windows) => {
      const members = windows.map(([x, y], i) => {
        const from = 1 + (x % history.length);
        const to = from + (y % (history.length - from + 1));
        return windowOf(`h${i}`, history, from, to);
      });
      assert.deepEqual(detectSplitBrains(members), []);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

/** A fork at log n of `root`: the new branch writes log n itself ('origins'), or goes on after a shorter copy of it ('ends'). */
interface Fork {
  readonly root: readonly Log[];
  readonly branch: readonly Log[];
  readonly n: number;
  readonly offsetBytes: number;
}

const fork = lineage.chain((root) =>
  fc.record({ n: fc.integer({ min: 2, max: root.length - 1 }), ends: fc.boolean(), cut: fc.nat(), extra: fc.integer({ min: 1, max: 3 }) }).map(({ n, ends, cut, extra }): Fork => {
    const rootN = root[n - 1]!;
    // 'ends' needs a log n with bytes to cut; a log of 0 bytes forks at its start instead.
    const shortBytes = ends && rootN[2] > 0 ? cut % rootN[2] : undefined;
    const kept = root.filter(([x]) => x < n);
    const own = Array.from({ length: root.length - n + extra }, (_, i): Log => [n + 1 + i, 'z', 100 + i]);
    const branch: Log[] = shortBytes === undefined ? [...kept, [n, 'z', 50], ...own] : [...kept, [n, rootN[1], shortBytes], ...own];
    return { root, branch, n, offsetBytes: shortBytes ?? 0 };
  }),
);

test('a fork is named once, at its log and byte, with exactly the members of each branch as its sides, however far back each history begins', () => {
  const starts = fc.array(fc.nat(), { minLength: 1, maxLength: 3 });
  fc.assert(
    fc.property(fork, starts, starts, fc.array(fc.nat(), { maxLength: 2 }), ({ root, branch, n, offsetBytes }, onRoot, onBranch, behind) => {
      // Each side's members hold log n and the next: they know the fork; each begins at a log <= n.
      const rootMembers = onRoot.map((s, i) => windowOf(`r${i}`, root, 1 + (s % n), n + 1 + (s % (root.length - n))));
      const branchMembers = onBranch.map((s, i) => windowOf(`s${i}`, branch, 1 + (s % n), n + 1 + (s % (branch.length - n))));
      // Behind the fork: their last log is before n.
      const behindMembers = behind.map((s, i) => windowOf(`u${i}`, root, 1, 1 + (s % (n - 1))));
      const members = [...branchMembers, ...behindMembers, ...rootMembers];
      const splits = detectSplitBrains(members);
      assert.equal(splits.length, 1, JSON.stringify(splits));
      const s = splits[0]!;
      assert.deepEqual([s.atLog, s.atOffsetBytes], [n, offsetBytes]);
      const sideHosts = s.sides.map((side) => side.hosts).sort((x, y) => (x[0]! < y[0]! ? -1 : 1));
      assert.deepEqual(sideHosts, [rootMembers.map((m) => m.host).sort(), branchMembers.map((m) => m.host).sort()]);
      assert.deepEqual(s.undecided, behindMembers.map((m) => m.host).sort());
      assert.deepEqual(s.sides.find((side) => side.hosts.includes('s0'))?.origin, 'z');
      assert.deepEqual(detectSplitBrain(members), s);
      for (const side of s.sides) assert.ok(side.lossBytes >= 0);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

test('every split brain is named, not only the earliest: a second forced failover on the winning side', () => {
  // alpha wrote log 7 alone (the first split); beta's history went on and gamma forced a
  // takeover at log 10 (the second); delta holds only log 5 and 6; epsilon joined by sync at log 9.
  const members: MemberHistory[] = [
    { host: 'alpha', logs: [[6, 'beta', 400], [7, 'alpha', null]], logEnd: { logNumber: 7, offsetBytes: 700 } },
    { host: 'beta', logs: [[6, 'beta', 400], [7, 'beta', 300], [8, 'beta', 200], [9, 'beta', 100], [10, 'beta', null]], logEnd: { logNumber: 10, offsetBytes: 900 } },
    { host: 'gamma', logs: [[6, 'beta', 400], [7, 'beta', 300], [8, 'beta', 200], [9, 'beta', 100], [10, 'gamma', 60], [11, 'gamma', null]] },
    { host: 'delta', logs: [[5, 'beta', 10], [6, 'beta', null]] },
    { host: 'epsilon', logs: [[9, 'beta', 100], [10, 'gamma', 60], [11, 'gamma', null]] },
  ];
  assert.deepEqual(detectSplitBrains(members), [
    {
      atLog: 7,
      atOffsetBytes: 0,
      sides: [
        { origin: 'alpha', hosts: ['alpha'], lossBytes: 700 },
        { origin: 'beta', hosts: ['beta', 'gamma'], lossBytes: 1500 },
      ],
      undecided: ['delta'],
      reports: [],
    },
    {
      atLog: 10,
      atOffsetBytes: 0,
      sides: [
        { origin: 'beta', hosts: ['beta'], lossBytes: 900 },
        { origin: 'gamma', hosts: ['epsilon', 'gamma'], lossBytes: 60 },
      ],
      // delta is behind both splits; alpha parted from both sides earlier: it is on neither.
      undecided: ['delta'],
      reports: [],
    },
  ]);
  // Members that hold no log in common cannot be compared: no parting between them.
  assert.equal(partingOf(members[3]!, members[4]!), undefined);
});

test('a member whose history begins at a fresh, empty log after a sync is compared from there on', () => {
  // gamma synced while alpha's log 4 was new and empty; beta forced a takeover after its copy of log 4 ended at 0 bytes.
  const alpha: MemberHistory = { host: 'alpha', logs: [[3, 'alpha', 5000], [4, 'alpha', null]], logEnd: { logNumber: 4, offsetBytes: 800 } };
  const beta: MemberHistory = { host: 'beta', logs: [[3, 'alpha', 5000], [4, 'alpha', 0], [5, 'beta', null]] };
  const gamma: MemberHistory = { host: 'gamma', logs: [[4, 'alpha', 800], [5, 'alpha', null]] };
  const [s, ...more] = detectSplitBrains([alpha, beta, gamma]);
  assert.deepEqual(more, []);
  assert.deepEqual(s, {
    atLog: 4,
    atOffsetBytes: 0,
    sides: [
      { origin: 'alpha', hosts: ['alpha', 'gamma'], lossBytes: 800 },
      { origin: 'beta', hosts: ['beta'], lossBytes: 0 },
    ],
    undecided: [],
    reports: [],
  });
});

test('every pair of members that parts is named: a split at that place with the two on different sides; the verdicts do not depend on the order of the members', () => {
  const member = fc.record({
    host: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
    logs: fc.uniqueArray(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.constantFrom('a', 'b', 'c'), fc.option(fc.nat(1000), { nil: null })), { selector: (l) => l[0], maxLength: 5 }),
  });
  fc.assert(
    fc.property(fc.uniqueArray(member, { selector: (m) => m.host, maxLength: 5 }), fc.nat(), (raw, shift) => {
      const members: MemberHistory[] = raw.map((m) => ({ host: m.host, logs: [...m.logs].sort((x, y) => x[0] - y[0]) }));
      const splits = detectSplitBrains(members);
      for (const a of members) {
        for (const b of members) {
          const p = a.host < b.host ? partingOf(a, b) : undefined;
          if (p === undefined) continue;
          const s = splits.find((x) => x.atLog === p.atLog && x.atOffsetBytes === p.atOffsetBytes && x.sides.some((side) => side.hosts.includes(a.host)) && x.sides.some((side) => side.hosts.includes(b.host)));
          assert.ok(s !== undefined, `${a.host} and ${b.host} part at ${p.atLog}:${p.atOffsetBytes}: ${JSON.stringify(splits)}`);
          assert.ok(!s.sides.some((side) => side.hosts.includes(a.host) && side.hosts.includes(b.host)), `${a.host} and ${b.host} on one side: ${JSON.stringify(s)}`);
        }
      }
      const rotated = members.map((_, i) => members[(i + shift) % members.length]!);
      assert.deepEqual(detectSplitBrains(rotated), splits);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});
