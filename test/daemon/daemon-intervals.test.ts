/**
 * MARS_INTERVALS, the daemon's refresh and retry intervals: entries set only what they
 * name, over the defaults; later entries win; every bad entry is one clear EINVAL naming
 * it, never a guess.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MarsError } from '../../src/core/errors.js';
import { daemonIntervalMsMax, daemonIntervalMsMin, defaultDaemonIntervals, parseDaemonIntervals, resizeDeviceWaitMs, type DaemonIntervals } from '../../src/daemon/daemon-intervals.js';

const names = Object.keys(defaultDaemonIntervals) as (keyof DaemonIntervals)[];

function refused(text: string, message: RegExp): void {
  assert.throws(
    () => parseDaemonIntervals(text),
    (err: unknown) => err instanceof MarsError && err.code === 'EINVAL' && message.test(err.message),
    text,
  );
}

test('no entries give the defaults: 5 s each, a silent peer link closed after 6 s, and resize waits one refresh plus 2 s', () => {
  assert.deepEqual(parseDaemonIntervals(''), defaultDaemonIntervals);
  assert.deepEqual(parseDaemonIntervals(' , '), defaultDaemonIntervals);
  assert.deepEqual(defaultDaemonIntervals, { indicatorRefreshMs: 5_000, fetchRetryMs: 5_000, positionPersistIntervalMs: 5_000, peerIdleMs: 6_000 });
  assert.equal(resizeDeviceWaitMs(defaultDaemonIntervals.indicatorRefreshMs), 7_000);
});

test('entries in bounds set what they name and nothing else; the last entry of a name wins', () => {
  const value = fc.integer({ min: daemonIntervalMsMin, max: daemonIntervalMsMax });
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom(...names), value), { maxLength: 6 }), (entries) => {
      const want: Record<string, number> = { ...defaultDaemonIntervals };
      for (const [name, ms] of entries) want[name] = ms;
      assert.deepEqual(parseDaemonIntervals(entries.map(([name, ms]) => `${name}=${ms}`).join(',')), want);
    }),
    { seed: 13, numRuns: 200 },
  );
});

test('an unknown name, a value out of bounds or a malformed entry is refused, naming the entry', () => {
  refused('indicatorRefreshMs=99', /'indicatorRefreshMs=99': indicatorRefreshMs must be 100 to 600000 ms/);
  refused('fetchRetryMs=600001', /'fetchRetryMs=600001': fetchRetryMs must be 100 to 600000 ms/);
  refused('fetchRetryMs=0', /must be 100 to 600000 ms/);
  refused('antiEntropyMs=500', /'antiEntropyMs=500': NAME=MS with NAME one of indicatorRefreshMs, fetchRetryMs, positionPersistIntervalMs/);
  refused('indicatorRefreshMs=1.5', /'indicatorRefreshMs=1\.5'/);
  refused('indicatorRefreshMs=-500', /'indicatorRefreshMs=-500'/);
  refused('indicatorRefreshMs', /'indicatorRefreshMs'/);
  refused('indicatorRefreshMs=500;fetchRetryMs=500', /NAME=MS/);
  refused('indicatorRefreshMs=99999999', /NAME=MS/);
});
