/**
 * A syncing member whose sync began again (a new source after a role change, at another
 * log) held copies of the earlier start. Fetch went on from the last of them and asked the
 * new source for a log it no longer held, for ever ("the source no longer holds ..."), and
 * never reached the logs replay needs. The member now drops those copies: every copy at a
 * new start, and at open the copies that all lie before the saved start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planFetch, staleSyncCopies } from '../../src/fetch/fetch-plan.js';
import { LocalCopies } from '../../src/fetch/index.js';
import { formatLogName } from '../../src/log/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { Random } from '../../src/core/random.js';

const log = (n: number, host: string, bytes: number, complete: boolean): { name: string; durableBytes: number; complete: boolean } => ({ name: formatLogName(n, host), durableBytes: bytes, complete });

test('a new start drops every copy; a start read at open drops them only when all lie before its log', () => {
  const copies = [formatLogName(9, 'delta'), formatLogName(10, 'delta')];
  assert.deepEqual(staleSyncCopies(copies, 16, true), copies);
  assert.deepEqual(staleSyncCopies(copies, 16, false), copies);
  // A new start below the copies (a new source that forked at a lower number): they go too.
  assert.deepEqual(staleSyncCopies(copies, 8, true), copies);
  // At open, copies that reach the start's log are this start's: they stay.
  assert.deepEqual(staleSyncCopies(copies, 10, false), []);
  assert.deepEqual(staleSyncCopies(copies, 4, false), []);
  assert.deepEqual(staleSyncCopies([], 16, true), []);
});

test('the stale copy stops fetch for good; without it fetch starts in the log the new start names', () => {
  const source = [log(16, 'delta', 5000, true), log(17, 'delta', 800, false)];
  const stale = { name: formatLogName(10, 'delta'), verifiedBytes: 3000 };
  // What the member did: plan from its last copy, which the source no longer holds.
  assert.equal(planFetch(stale, source, false, 16, [stale.name], 1200, 'delta').action, 'unavailable');
  const left = [stale.name].filter((n) => !staleSyncCopies([stale.name], 16, true).includes(n));
  assert.deepEqual(planFetch(undefined, source, false, 16, left, 1200, 'delta'), { action: 'fetch', logName: formatLogName(16, 'delta'), fromOffsetBytes: 1200, createCopy: true });
});

test('property: all or nothing is dropped, and after the drop the first fetch is the start log whenever the source holds it', () => {
  const names = fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { maxLength: 6 }).map((ns) => ns.sort((a, b) => a - b).map((n) => formatLogName(n, 'alpha')));
  fc.assert(
    fc.property(names, fc.integer({ min: 1, max: 40 }), fc.boolean(), (local, start, isNew) => {
      const dropped = staleSyncCopies(local, start, isNew);
      assert.ok(dropped.length === 0 || dropped.length === local.length);
      if (isNew) assert.equal(dropped.length, local.length);
      const lastNumber = local.length === 0 ? 0 : Number(/log-0*(\d+)-/.exec(local.at(-1)!)![1]);
      if (!isNew) assert.equal(dropped.length > 0, local.length > 0 && lastNumber < start);
      if (dropped.length === local.length) {
        const plan = planFetch(undefined, [log(start, 'beta', 100, false)], false, start, [], 0, 'beta');
        assert.equal(plan.action, 'fetch');
      }
    }),
    { seed: 4401, numRuns: 300 },
  );
});

test('LocalCopies.drop removes the copies, the one being fetched too, and a crash does not bring them back', async () => {
  const storage = new MemStorage();
  const old = [formatLogName(9, 'delta'), formatLogName(10, 'delta')];
  for (const name of old) await (await storage.open(name, 'create')).close();
  await storage.syncDir();
  const copies = await LocalCopies.open(storage);
  assert.equal(copies.last?.name, old[1]);
  await copies.drop(old);
  assert.equal(copies.last, undefined);
  assert.deepEqual(await copies.names(), []);
  storage.crash(new Random(44));
  const after = await LocalCopies.open(storage);
  assert.deepEqual(await after.names(), []);
  await after.close();
});
