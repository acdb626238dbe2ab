import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { Random } from '../../src/core/random.js';
import { ManualTimers } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { SyncSourceSession, SyncTarget, syncLimits } from '../../src/sync/index.js';
import { deviceWith, MemLink, mib, settle, sourceResource } from './helpers.js';

const size = 32 * mib;
const rateBytesPerS = mib;
const stepMs = 50;
const manualMsMax = 120_000;
/** Frame headers and small messages of one range, on top of its data. */
const rangeOverheadBytes = 4096;

/** A sync over an in-memory link whose time is moved by hand; returns the target and its clock. */
async function rateLimitedSync(rangesInFlight: number): Promise<{ target: SyncTarget; clock: ManualClock; timers: ManualTimers }> {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(() => clock.nowMs(), (d) => clock.advance(d));
  const sourceStorage = new MemStorage();
  const targetStorage = new MemStorage();
  const sourceDevice = await deviceWith(sourceStorage, 'device', new Random(21).bytes(size));
  const targetDevice = await deviceWith(targetStorage, 'device', Buffer.alloc(size));
  const [sourceEnd, targetEnd] = MemLink.pair();
  SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(sourceDevice, size) });
  const target = await SyncTarget.open({ resource: 'r0', device: targetDevice, storage: targetStorage, clock, timers, rateBytesPerS, rangesInFlight });
  target.attach(targetEnd);
  return { target, clock, timers };
}

for (const rangesInFlight of [1, syncLimits.rangesInFlightMax]) {
  void test(`the rate limit holds at every moment of manual time (${rangesInFlight} ranges in flight)`, { timeout: 30_000 }, async () => {
    const { target, clock, timers } = await rateLimitedSync(rangesInFlight);
    // What may have moved by time t: the burst, the rate, and the ranges asked for before the debt showed.
    const allowance = (ms: number): number => syncLimits.rateBurstBytes + (rateBytesPerS * ms) / 1000 + rangesInFlight * (syncLimits.rangeBytesMax + rangeOverheadBytes);
    let checks = 0;
    while (target.state !== 'done') {
      await settle(20);
      const p = target.progress();
      const moved = p.sentBytes + p.receivedBytes;
      assert.ok(moved <= allowance(clock.nowMs()), `${moved} bytes moved by ${clock.nowMs()} ms, allowed ${allowance(clock.nowMs())}`);
      checks++;
      assert.ok(clock.nowMs() < manualMsMax, 'the sync finishes');
      timers.advance(stepMs);
    }
    const p = target.progress();
    const moved = p.sentBytes + p.receivedBytes;
    assert.ok(moved > size, 'everything moved');
    // Finishing needs at least the time the rate allows for what moved beyond the burst and the last ranges.
    const minMs = ((moved - allowance(0)) * 1000) / rateBytesPerS;
    assert.ok(clock.nowMs() >= minMs, `finished at ${clock.nowMs()} ms, not before ${minMs}`);
    assert.ok(clock.nowMs() <= minMs + 4000, `and not much later (${clock.nowMs()} ms)`);
    assert.ok(checks > 100);
    await target.close();
  });
}

void test('without a rate limit the same sync needs no time at all', { timeout: 30_000 }, async () => {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(() => clock.nowMs(), (d) => clock.advance(d));
  const storage = new MemStorage();
  const sourceDevice = await deviceWith(storage, 'source', new Random(22).bytes(size));
  const targetDevice = await deviceWith(storage, 'target', Buffer.alloc(size));
  const [sourceEnd, targetEnd] = MemLink.pair();
  SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(sourceDevice, size) });
  const target = await SyncTarget.open({ resource: 'r0', device: targetDevice, storage, clock, timers });
  target.attach(targetEnd);
  await target.whenDone();
  assert.equal(clock.nowMs(), 0);
  assert.ok(storage.image('target')!.equals(storage.image('source')!));
});
