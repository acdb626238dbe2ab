import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { ManualTimers, repeatEvery } from '../../src/core/timers.js';

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
