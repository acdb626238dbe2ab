import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { doublingDelayMs, ManualTimers, repeatEvery } from '../../src/core/timers.js';

void test('repeatEvery fires once per interval on the given timers, and never after stop', () => {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(() => clock.nowMs(), (d) => clock.advance(d));
  const fired: number[] = [];
  const every = repeatEvery(timers, 1000, () => fired.push(clock.nowMs()));
  timers.advance(999);
  assert.deepEqual(fired, []);
  timers.advance(2501);
  assert.deepEqual(fired, [1000, 2000, 3000]);
  every.stop();
  assert.equal(timers.count, 0, 'stop cancels the pending timeout');
  timers.advance(5000);
  assert.deepEqual(fired, [1000, 2000, 3000]);
});

test('a doubling delay starts at its minimum, doubles with each attempt and stays at its maximum', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 1_000].map((attempt) => doublingDelayMs(attempt, 100, 2_000)), [100, 200, 400, 800, 1_600, 2_000, 2_000]);
});
