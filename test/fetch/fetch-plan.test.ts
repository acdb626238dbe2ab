import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fetchRestBytes, planFetch, type LogInfo } from '../../src/fetch/index.js';

const l1 = 'log-000000001-alpha';
const l2 = 'log-000000002-alpha';
const l3 = 'log-000000003-alpha';
const log = (name: string, durableBytes: number, complete: boolean): LogInfo => ({ name, durableBytes, complete });

void test('a client with no copy starts at the first log the source lists from its start number', () => {
  const logs = [log(l1, 100, true), log(l2, 50, false)];
  assert.deepEqual(planFetch(undefined, logs, false, 0), { action: 'fetch', logName: l1, fromOffsetBytes: 0, createCopy: true });
  assert.deepEqual(planFetch(undefined, logs, false, 2), { action: 'fetch', logName: l2, fromOffsetBytes: 0, createCopy: true });
  assert.equal(planFetch(undefined, logs, false, 3).action, 'wait');
  assert.deepEqual(planFetch(undefined, logs, true, 3), { action: 'relist', fromLogNumber: 3 });
});

void test('a client resumes its copy from the verified end, and moves to log N+1 only when N is complete and whole', () => {
  const logs = [log(l1, 100, true), log(l2, 50, false)];
  assert.deepEqual(planFetch({ name: l1, verifiedBytes: 60 }, logs, false, 0), { action: 'fetch', logName: l1, fromOffsetBytes: 60, createCopy: false });
  assert.deepEqual(planFetch({ name: l1, verifiedBytes: 100 }, logs, false, 0), { action: 'fetch', logName: l2, fromOffsetBytes: 0, createCopy: true });
  assert.deepEqual(planFetch({ name: l2, verifiedBytes: 50 }, logs, false, 0), { action: 'fetch', logName: l2, fromOffsetBytes: 50, createCopy: false });
  // A source that is behind (another member still fetching): wait at the server for its bytes.
  assert.deepEqual(planFetch({ name: l2, verifiedBytes: 80 }, logs, false, 0), { action: 'fetch', logName: l2, fromOffsetBytes: 80, createCopy: false });
  assert.deepEqual(planFetch({ name: l3, verifiedBytes: 0 }, logs, false, 0).action, 'wait');
});

void test('diverging histories and missing logs stop the plan', () => {
  assert.equal(planFetch({ name: l1, verifiedBytes: 120 }, [log(l1, 100, true)], false, 0).action, 'diverged');
  assert.equal(planFetch({ name: 'log-000000001-beta', verifiedBytes: 10 }, [log(l1, 100, true)], false, 0).action, 'diverged');
  assert.equal(planFetch({ name: l1, verifiedBytes: 100 }, [log(l1, 100, true), log(l3, 5, false)], false, 0).action, 'unavailable');
  assert.equal(planFetch({ name: l1, verifiedBytes: 10 }, [log(l2, 100, true)], false, 0).action, 'unavailable');
});

void test('fetch-rest counts the bytes the source holds that the copies lack', () => {
  const logs = [log(l1, 100, true), log(l2, 50, true), log(l3, 30, false)];
  assert.equal(fetchRestBytes({ name: l2, verifiedBytes: 20 }, logs, 0), 30 + 30);
  assert.equal(fetchRestBytes(undefined, logs, 2), 80);
  assert.equal(fetchRestBytes({ name: l3, verifiedBytes: 30 }, logs, 0), 0);
});
