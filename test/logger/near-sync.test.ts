import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualTimers } from '../../src/core/timers.js';
import { asyncMode, NearSyncGate, type LogPoint, type NearSyncState, type SyncMode } from '../../src/logger/near-sync.js';

function setup(mode: SyncMode, durable: LogPoint = { logNumber: 1, endOffsetBytes: 0 }) {
  let nowMs = 0;
  const timers = new ManualTimers(() => nowMs, (d) => (nowMs += d));
  const changes: NearSyncState[] = [];
  const state = { mode, durable };
  const gate = new NearSyncGate({ clock: { nowMs: () => nowMs }, timers, mode: () => state.mode, durableEnd: () => state.durable, onChange: (s) => changes.push(s) });
  return { gate, timers, changes, state };
}

/** Whether the promise has settled after the microtasks queued now have run. */
async function settled(p: Promise<void>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

const nearSync: SyncMode = { mode: 'near-sync', members: 2, timeoutMs: 1000 };

void test('asynchronous: nothing waits', async () => {
  const { gate } = setup(asyncMode);
  assert.equal(await settled(gate.waitFor({ logNumber: 9, endOffsetBytes: 9 })), true);
  assert.equal(gate.status().state, 'off');
});

void test('near-sync: a flush waits until K members acknowledged its end, in any log number order', async () => {
  const { gate } = setup(nearSync);
  const target = { logNumber: 2, endOffsetBytes: 500 };
  const waiting = gate.waitFor(target);
  gate.acknowledge('beta', { logNumber: 2, endOffsetBytes: 499 });
  gate.acknowledge('gamma', { logNumber: 3, endOffsetBytes: 0 });
  assert.equal(await settled(waiting), false, 'one member short of the end');
  assert.equal(gate.status().waiting, 1);
  gate.acknowledge('beta', { logNumber: 2, endOffsetBytes: 500 });
  assert.equal(await settled(waiting), true);
  assert.equal(gate.status().waiting, 0);
  assert.equal(gate.status().fallbacks, 0);
});

void test('near-sync: the timeout answers every waiter, falls back; a full acknowledgement of the durable end returns to near-sync', async () => {
  const { gate, timers, changes, state } = setup(nearSync, { logNumber: 1, endOffsetBytes: 100 });
  const first = gate.waitFor({ logNumber: 1, endOffsetBytes: 50 });
  timers.advance(500);
  const second = gate.waitFor({ logNumber: 1, endOffsetBytes: 100 });
  timers.advance(499);
  assert.equal(await settled(first), false);
  timers.advance(1);
  assert.equal(await settled(first), true);
  assert.equal(await settled(second), true, 'every waiter is answered at the fallback');
  assert.deepEqual(changes, ['fallen-back']);
  assert.equal(gate.status().state, 'fallen-back');
  assert.match(gate.status().reason ?? '', /0 of 2 member\(s\)/);
  assert.equal(await settled(gate.waitFor({ logNumber: 1, endOffsetBytes: 100 })), true, 'fallen back: no waiting');
  state.durable = { logNumber: 1, endOffsetBytes: 200 };
  gate.acknowledge('beta', { logNumber: 1, endOffsetBytes: 200 });
  gate.acknowledge('gamma', { logNumber: 1, endOffsetBytes: 150 });
  assert.equal(gate.status().state, 'fallen-back', 'gamma is still behind the durable end');
  gate.acknowledge('gamma', { logNumber: 1, endOffsetBytes: 200 });
  assert.equal(gate.status().state, 'near-sync');
  assert.deepEqual(changes, ['fallen-back', 'near-sync']);
  assert.equal(await settled(gate.waitFor({ logNumber: 1, endOffsetBytes: 300 })), false, 'waits again');
});

void test('a waiter is answered at the latest by its timeout, and never before K members hold its end (property)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ host: fc.constantFrom('b', 'c', 'd'), logNumber: fc.integer({ min: 1, max: 3 }), endOffsetBytes: fc.nat({ max: 1000 }), advanceMs: fc.nat({ max: 400 }) }), { maxLength: 30 }),
      fc.record({ logNumber: fc.integer({ min: 1, max: 3 }), endOffsetBytes: fc.nat({ max: 1000 }) }),
      async (acks, target) => {
        const { gate, timers } = setup(nearSync);
        const waiting = gate.waitFor(target);
        const best = new Map<string, LogPoint>();
        let elapsedMs = 0;
        for (const a of acks) {
          gate.acknowledge(a.host, a);
          const before = best.get(a.host);
          if (before === undefined || a.logNumber > before.logNumber || (a.logNumber === before.logNumber && a.endOffsetBytes > before.endOffsetBytes)) best.set(a.host, a);
          const holders = [...best.values()].filter((p) => p.logNumber > target.logNumber || (p.logNumber === target.logNumber && p.endOffsetBytes >= target.endOffsetBytes)).length;
          const done = await settled(waiting);
          if (elapsedMs < nearSync.timeoutMs) assert.equal(done, holders >= 2, `holders ${holders} at ${elapsedMs} ms`);
          else assert.equal(done, true);
          timers.advance(a.advanceMs);
          elapsedMs += a.advanceMs;
        }
        timers.advance(nearSync.timeoutMs);
        assert.equal(await settled(waiting), true);
      },
    ),
    { seed: 14, numRuns: 100 },
  );
});
