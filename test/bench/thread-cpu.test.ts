import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupOf, groupPercents, parseTaskStat, threadTimes, type ThreadTimes } from '../../bench/thread-cpu.js';

void test('a task stat line gives the thread name and user + system seconds, whatever the name holds', () => {
  // Fields after the name: state(3) ... utime(14)=250 stime(15)=50, in USER_HZ ticks.
  const line = '4242 (V8 Default) Worker)) S 1 2 3 0 -1 4194368 100 0 0 0 250 50 0 0 20 0 11 0 12345 1000 200';
  assert.deepEqual(parseTaskStat(line), { comm: 'V8 Default) Worker)', cpuS: 3 });
  assert.throws(() => parseTaskStat('garbage'));
});

void test('threads are grouped: the main thread by its id, the rest by name', () => {
  assert.equal(groupOf(10, 10, 'node'), 'main');
  assert.equal(groupOf(10, 11, 'libuv-worker'), 'pool');
  assert.equal(groupOf(10, 12, 'V8 DefaultWorke'), 'v8');
  assert.equal(groupOf(10, 13, 'node'), 'other');
});

void test('percent of a core per group between two readings; a thread born meanwhile counts from zero', () => {
  const before: ThreadTimes = new Map([
    [10, { group: 'main', cpuS: 1 }],
    [11, { group: 'other', cpuS: 2 }],
  ]);
  const after: ThreadTimes = new Map([
    [10, { group: 'main', cpuS: 1.5 }],
    [11, { group: 'other', cpuS: 2.25 }],
    [12, { group: 'pool', cpuS: 0.25 }],
  ]);
  assert.deepEqual(groupPercents(before, after, 1000), { main: 50, pool: 25, v8: 0, other: 25, total: 100 });
});

void test("this process's own threads are read, its main thread among them", async () => {
  const times = await threadTimes(process.pid);
  assert.equal(times.get(process.pid)?.group, 'main');
  assert.equal((await threadTimes(0x7fffffff)).size, 0, 'a process that is gone reads as no threads');
});
