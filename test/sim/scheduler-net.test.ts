/**
 * The simulator's own parts: virtual time fires timers in order and never for a dead
 * process; a simulated link delivers bytes whole and in order, holds them across a
 * partition and delivers them after the heal; a crashed host's peer sees a reset.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { FrameType } from '../../src/net/index.js';
import { Scheduler } from '../../src/sim/scheduler.js';
import { SimNet } from '../../src/sim/sim-net.js';

test('timers fire in order of due time, then of setting; a killed owner never fires; time jumps', async () => {
  const s = new Scheduler();
  const a = s.timers('a');
  const b = s.timers('b');
  const fired: string[] = [];
  a.setTimeout(() => fired.push('a30'), 30);
  b.setTimeout(() => fired.push('b10'), 10);
  a.setTimeout(() => fired.push('a10'), 10);
  const cancelled = b.setTimeout(() => fired.push('never'), 5);
  b.clearTimeout(cancelled);
  b.setTimeout(() => fired.push('b-dead'), 20);
  await s.runUntil(() => fired.length === 2, 1_000_000);
  b.kill();
  await s.runFor(60_000);
  assert.deepEqual(fired, ['b10', 'a10', 'a30']);
  assert.equal(s.nowMs(), 10 + 60_000);
  assert.equal(s.pendingCount, 0);
});

function netOf(s: Scheduler, seed: number): SimNet {
  return new SimNet(s.timers('net'), s, new Random(seed), { delayMsMin: 1, delayMsMax: 30, resetChance: 0, corruptChance: 0, slowBytesPerMs: 64 }, () => s.timers('host'));
}

test('a link delivers frames whole and in order despite jitter, and holds them across a partition', async () => {
  const s = new Scheduler();
  const net = netOf(s, 7);
  const got: number[] = [];
  net.accept('beta', (link) => link.attach({ onFrame: (f) => got.push(f.payload.readUInt32LE(0)), onClose: () => undefined }));
  let link: Awaited<ReturnType<SimNet['dial']>> | undefined;
  void net.dial('alpha', 'beta').then((l) => (link = l));
  await s.runUntil(() => link !== undefined, 10_000);
  const send = (n: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    assert.ok(link!.send(FrameType.meta, b));
  };
  for (let i = 0; i < 50; i++) send(i);
  await s.runFor(100);
  assert.deepEqual(got, [...Array(50).keys()]);
  net.partition('alpha', 'beta');
  for (let i = 50; i < 60; i++) send(i);
  await s.runFor(5_000);
  assert.equal(got.length, 50, 'nothing crosses a partition');
  net.healAll();
  await s.runFor(100);
  assert.deepEqual(got, [...Array(60).keys()], 'what was sent arrives after the heal, in order');
});

test('a dial across a partition fails; a crashed host resets its peer', async () => {
  const s = new Scheduler();
  const net = netOf(s, 9);
  let closed: string | undefined;
  net.accept('beta', (link) => link.attach({ onFrame: () => undefined, onClose: (e) => (closed = e?.message ?? 'closed') }));
  net.partition('alpha', 'beta');
  let refused: unknown;
  void net.dial('alpha', 'beta').catch((err: unknown) => (refused = err));
  await s.runUntil(() => refused !== undefined, 10_000);
  assert.match(String(refused), /cannot connect/);
  net.healAll();
  let ok = false;
  void net.dial('alpha', 'beta').then(() => (ok = true));
  await s.runUntil(() => ok, 10_000);
  net.killHost('alpha', false);
  await s.runUntil(() => closed !== undefined, 10_000);
  assert.match(closed!, /reset/);
});
