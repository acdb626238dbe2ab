/**
 * The log-deletion hold and the choice of files: property tests over random members and
 * log listings (seeded, so a failure replays).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { logDeleteHold, logsToDelete, type MemberNeed } from '../../src/strategy/index.js';

const seed = 1313;
const member = fc.record({
  host: fc.constantFrom('a', 'b', 'c', 'd'),
  needsLog: fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }),
  fetchedLog: fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }),
  dead: fc.boolean(),
});
const logFiles = fc.uniqueArray(fc.integer({ min: 1, max: 30 }), { maxLength: 12 }).map((ns) => ns.sort((x, y) => x - y).map((n) => ({ logNumber: n, name: `log-${n}` })));

test('log-delete never deletes a log a member still needs, nor the last, nor at or above its own need', () => {
  fc.assert(
    fc.property(fc.array(member, { maxLength: 5 }), fc.integer({ min: 0, max: 30 }), logFiles, fc.option(fc.integer({ min: 1, max: 31 }), { nil: undefined }), (members, hole, files, own) => {
      const hold = logDeleteHold(members, hole, 'replayed');
      const deleted = logsToDelete(files, own, hold?.logNumber);
      const last = Math.max(0, ...files.map((f) => f.logNumber));
      for (const f of deleted) {
        assert.ok(own !== undefined && f.logNumber < own, 'below its own need');
        assert.ok(f.logNumber < last, 'never the last log');
        for (const m of members) if (m.needsLog !== undefined && m.needsLog >= hole) assert.ok(f.logNumber < m.needsLog, `${m.host} needs log ${m.needsLog}, ${f.logNumber} deleted`);
      }
      // Not vacuous: everything that may go goes.
      const floor = Math.min(own ?? 0, ...members.filter((m) => m.needsLog !== undefined && m.needsLog >= hole).map((m) => m.needsLog!));
      assert.deepEqual(
        deleted.map((f) => f.logNumber),
        files.filter((f) => f.logNumber < floor && f.logNumber < last).map((f) => f.logNumber),
      );
    }),
    { seed, numRuns: 500 },
  );
});

test('under space pressure a live member holds back only what it has not fetched; a dead one and one stuck before the hole hold nothing', () => {
  fc.assert(
    fc.property(fc.array(member, { maxLength: 5 }), fc.integer({ min: 0, max: 30 }), (members: MemberNeed[], hole) => {
      const hold = logDeleteHold(members, hole, 'live-fetched');
      const holding = members.filter((m) => m.needsLog !== undefined && m.needsLog >= hole && m.dead !== true);
      if (holding.length === 0) return assert.equal(hold, undefined);
      const want = Math.min(...holding.map((m) => m.fetchedLog ?? m.needsLog!));
      assert.equal(hold?.logNumber, want);
      assert.ok(holding.some((m) => m.host === hold.host && (m.fetchedLog ?? m.needsLog) === want));
    }),
    { seed, numRuns: 500 },
  );
});

test("a sync this primary served holds back its start until the member reports its own need", () => {
  assert.deepEqual(logDeleteHold([{ host: 'b', needsLog: 9 }], 0, 'replayed', [['c', 4]]), { host: 'c', logNumber: 4 });
  assert.deepEqual(logDeleteHold([{ host: 'b', needsLog: 3 }], 0, 'replayed', [['c', 4]]), { host: 'b', logNumber: 3 });
  assert.equal(logDeleteHold([{ host: 'b', needsLog: 3 }], 5, 'replayed'), undefined);
});
