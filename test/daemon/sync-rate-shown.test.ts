/**
 * The sync rate `view` shows is measured, over a window, in the unit its limit counts
 * (bytes on the link), and so never exceeds the limit by more than the measuring error:
 * what the token bucket lets through at once (its burst and the ranges in flight) spread
 * over the window. Simulated with a manual clock: a target asks for ranges as the bucket
 * allows, answers arrive after a latency and are charged on arrival, and the meter is fed
 * once a second as the replica feeds it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { RateMeter, rateWindowS } from '../../src/daemon/rate-meter.js';
import { TokenBucket } from '../../src/sync/token-bucket.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const KiB = 1024;

interface Run {
  readonly limitBytesPerS: number;
  readonly burstBytes: number;
  readonly rangeBytes: number;
  readonly inFlightMax: number;
  readonly latencyMs: number;
}

/** The rates shown once a second over `seconds`. */
function shownRates(r: Run, seconds: number): number[] {
  const clock = new ManualClock(1_000_000);
  const bucket = new TokenBucket(clock, r.limitBytesPerS, r.burstBytes);
  const meter = new RateMeter(clock, rateWindowS);
  const arrivals: number[] = [];
  let wireBytes = 0;
  let fedBytes = 0;
  const shown: number[] = [];
  const stepMs = 5;
  for (let t = 0; t <= seconds * 1000; t += stepMs) {
    while (arrivals.length > 0 && arrivals[0]! <= clock.nowMs()) {
      arrivals.shift();
      bucket.take(r.rangeBytes);
      wireBytes += r.rangeBytes;
    }
    while (arrivals.length < r.inFlightMax && bucket.delayMs() === 0) arrivals.push(clock.nowMs() + r.latencyMs);
    if (t % 1000 === 0 && t > 0) {
      meter.add(wireBytes - fedBytes);
      fedBytes = wireBytes;
      shown.push(meter.rateBytesPerS());
    }
    clock.advance(stepMs);
  }
  return shown;
}

void test('the sync rate shown never exceeds its limit by more than what the limiter lets through at once, spread over the window', () => {
  fc.assert(
    fc.property(
      fc.record({
        limitBytesPerS: fc.integer({ min: 256 * KiB, max: 64 * 1024 * KiB }),
        burstBytes: fc.constantFrom(512 * KiB, 2048 * KiB),
        rangeBytes: fc.constantFrom(64 * KiB, 1024 * KiB),
        inFlightMax: fc.integer({ min: 1, max: 16 }),
        latencyMs: fc.integer({ min: 1, max: 300 }),
      }),
      (r) => {
        const errorBytesPerS = (r.burstBytes + r.inFlightMax * r.rangeBytes) / rateWindowS;
        const shown = shownRates(r, 30);
        for (const [i, rate] of shown.entries()) {
          assert.ok(rate <= r.limitBytesPerS + errorBytesPerS, `second ${i + 1}: ${rate} B/s shown, limit ${r.limitBytesPerS} + error ${errorBytesPerS}`);
        }
        return true;
      },
    ),
    { seed: fcSeed, numRuns: 60 },
  );
});

void test('a steady sync under its limit shows the limit once the window is full: the figure is measured, not clamped', () => {
  const r: Run = { limitBytesPerS: 1024 * KiB, burstBytes: 2048 * KiB, rangeBytes: 64 * KiB, inFlightMax: 4, latencyMs: 20 };
  const shown = shownRates(r, 30);
  for (const rate of shown.slice(rateWindowS + 1)) assert.ok(Math.abs(rate - r.limitBytesPerS) <= r.limitBytesPerS * 0.1, `${rate} B/s shown for a limit of ${r.limitBytesPerS}`);
  // The first seconds ramp up: the window counts the time before the start as nothing moved.
  assert.ok(shown[0]! < r.limitBytesPerS, `${shown[0]} B/s in the first second`);
  const unlimited = new RateMeter(new ManualClock(0));
  assert.equal(unlimited.rateBytesPerS(), 0);
});
