import { test } from 'node:test';
import assert from 'node:assert/strict';
import { windowShares } from '../../bench/profile-windows.js';

/** root -> (idle), (garbage collector), handle (nbd) -> pump (src/fetch/server.js) -> writev (native). */
const nodes = [
  { id: 1, callFrame: { functionName: '(root)', url: '' }, children: [2, 3, 4] },
  { id: 2, callFrame: { functionName: '(idle)', url: '' } },
  { id: 3, callFrame: { functionName: '(garbage collector)', url: '' } },
  { id: 4, callFrame: { functionName: 'handle', url: 'file:///repo/dist/src/nbd/connection.js' }, children: [5] },
  { id: 5, callFrame: { functionName: 'pump', url: 'file:///repo/dist/src/fetch/server.js' }, children: [6] },
  { id: 6, callFrame: { functionName: 'writev', url: '' } },
];

void test('samples are split by window and kind; a native call under fetch code counts as fetch', () => {
  // Samples at 1000 + 100 µs steps: t = 1100, 1200, ..., 2000.
  const samples = [2, 2, 3, 4, 6, 6, 5, 2, 4, 6];
  const profile = { nodes, startTime: 1000, samples, timeDeltas: samples.map(() => 100) };
  const [first, second, empty] = windowShares(profile, [
    { fromUs: 1100, toUs: 1600 },
    { fromUs: 1600, toUs: 2100 },
    { fromUs: 5000, toUs: 6000 },
  ]);
  // First window: idle, idle, gc, rest (handle), fetch (writev): 500 µs.
  assert.equal(first!.sampledMs, 0.5);
  assert.deepEqual(first!.percent, { idle: 40, gc: 20, fetch: 20, rest: 20 });
  // Second: fetch (writev), fetch (pump), idle, rest, fetch (writev).
  assert.deepEqual(second!.percent, { idle: 20, gc: 0, fetch: 60, rest: 20 });
  assert.deepEqual(second!.fetchTop, [
    { name: 'writev ()', percent: 40 },
    { name: 'pump (server.js)', percent: 20 },
  ]);
  assert.deepEqual(empty!.percent, { idle: 0, gc: 0, fetch: 0, rest: 0 });
});
