/**
 * A client with no copy yet starts in the log its replay starts in. A source that lists
 * later logs but not that one has passed it (deleted it, or joined by a sync after it):
 * fetching a later log would fill copies that replay never reaches, and fetch would say
 * caught-up while replay waits for ever. The plan says the log is unavailable instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planFetch } from '../../src/fetch/fetch-plan.js';
import { formatLogName } from '../../src/log/index.js';

const log = (n: number, host: string, bytes: number, complete: boolean): { name: string; durableBytes: number; complete: boolean } => ({ name: formatLogName(n, host), durableBytes: bytes, complete });

test('no copy yet, the source lacks the start log but holds later ones: unavailable, not a later log', () => {
  const plan = planFetch(undefined, [log(5, 'beta', 900, true), log(6, 'beta', 100, false)], false, 4, [], 300);
  assert.equal(plan.action, 'unavailable');
});

test('no copy yet, the source holds the start log: fetched from the start offset; a source that has not reached it is waited for', () => {
  assert.deepEqual(planFetch(undefined, [log(4, 'beta', 900, true), log(5, 'beta', 100, false)], false, 4, [], 300), { action: 'fetch', logName: formatLogName(4, 'beta'), fromOffsetBytes: 300, createCopy: true });
  assert.equal(planFetch(undefined, [log(3, 'beta', 900, false)], false, 4, [], 0).action, 'wait');
});
