import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Admission } from '../../src/logger/admission.js';

test('writes wait in arrival order while the budget is spent, and enter as it is freed', async () => {
  const gate = new Admission(100, 10);
  await gate.acquire(60);
  const order: string[] = [];
  const big = gate.acquire(50).then(() => order.push('big'));
  const small = gate.acquire(10).then(() => order.push('small'));
  await Promise.resolve();
  assert.deepEqual(order, [], 'nothing may enter while the budget is spent');
  assert.equal(gate.waiting, 2);
  gate.release(60);
  await Promise.all([big, small]);
  assert.deepEqual(order, ['big', 'small'], 'first come, first served');
  assert.equal(gate.used, 60);
});

test('shadow bytes count against the budget until writeback drops them', async () => {
  const gate = new Admission(100, 10);
  gate.setShadowBytes(90);
  let entered = false;
  const p = gate.acquire(20).then(() => {
    entered = true;
  });
  await Promise.resolve();
  assert.equal(entered, false);
  gate.setShadowBytes(0);
  await p;
  assert.equal(entered, true);
});

test('a request larger than the whole budget enters once nothing else is held', async () => {
  const gate = new Admission(100, 10);
  await gate.acquire(500);
  assert.equal(gate.used, 500);
});

test('closing rejects the waiting writes and every later one', async () => {
  const gate = new Admission(10, 10);
  await gate.acquire(10);
  const waiting = gate.acquire(5);
  gate.close(new Error('shutting down'));
  await assert.rejects(waiting, /shutting down/);
  await assert.rejects(gate.acquire(1), /shutting down/);
});
