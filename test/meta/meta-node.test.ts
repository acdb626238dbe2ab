import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from './harness.js';
import { MarsError } from '../../src/core/errors.js';
import { clusterScope, desiredKey, hostKey, primaryKey, resourceScope } from '../../src/meta/keys.js';
import { hostRecordValue } from '../../src/meta/host-record.js';
import { tombstonePurgeDelayMs, messageAgeMsMax, clockSkewMsMax } from '../../src/meta/limits.js';
import { liveEntry } from '../../src/meta/entry.js';
import type { MetaMessage } from '../../src/meta/messages.js';

const hosts = ['a', 'b', 'c', 'd'];
const resources = { r1: ['a', 'b'], r2: ['b', 'c', 'd'] };

function cluster(seed = 1): Harness {
  const h = new Harness(hosts, resources, seed);
  h.bootstrap();
  h.converge();
  return h;
}

void test('hosts that met one host learn the whole cluster and the members of their resources', () => {
  const h = cluster();
  for (const node of h.nodes.values()) assert.deepEqual([...node.hosts()].sort(), hosts);
  assert.deepEqual([...(h.node('c').membersOf('r2') ?? [])].sort(), ['b', 'c', 'd']);
  assert.equal(h.node('a').membersOf('r2'), undefined, 'a is not a member of r2');
});

void test('a resource key is pushed to that resource\'s members only', () => {
  const h = cluster();
  const ready = h.node('c').set(desiredKey('r2', 'c'), { attach: true });
  assert.deepEqual(ready.persist, [resourceScope('r2')]);
  assert.deepEqual(ready.send.map((s) => s.to).sort(), ['b', 'd']);
  assert.deepEqual(ready.changed, [desiredKey('r2', 'c')]);
  h.apply('c', ready);
  h.settle();
  assert.deepEqual(h.node('d').get(desiredKey('r2', 'c')), { attach: true });
  assert.equal(h.node('a').get(desiredKey('r2', 'c')), undefined, 'a never sees r2 keys');
  assert.equal(h.node('a').digest(resourceScope('r2')), 0n);
});

void test('a host may not write a key another host owns, nor keys of a resource it is not a member of', () => {
  const h = cluster();
  assert.throws(() => h.node('a').set(desiredKey('r1', 'b'), 1), (e: unknown) => e instanceof MarsError && e.code === 'META_NOT_OWNER');
  assert.throws(() => h.node('a').set(primaryKey('r2'), 'a'), (e: unknown) => e instanceof MarsError && e.code === 'PEER_NOT_MEMBER');
  assert.throws(() => h.node('a').set('nonsense', 1), (e: unknown) => e instanceof MarsError && e.code === 'EINVAL');
});

void test('the designated primary is last-writer-wins by Lamport stamp, the same on every member', () => {
  const h = cluster();
  h.apply('b', h.node('b').set(primaryKey('r2'), 'b'));
  h.clock.advance(1);
  h.apply('d', h.node('d').set(primaryKey('r2'), 'd'));
  h.settle();
  h.converge();
  for (const m of ['b', 'c', 'd']) assert.equal(h.node(m).get(primaryKey('r2')), 'd');
});

void test('entries from a peer that is not a member of the resource are refused before they are stored', () => {
  const h = cluster();
  const message: MetaMessage = {
    type: 'push',
    sentLamport: h.node('a').lamportNow() + 1n,
    entries: [{ key: primaryKey('r2'), entry: liveEntry('a', BigInt(h.clock.nowMs()) * 1000n, 'a') }],
  };
  const ready = h.node('c').receive('a', message);
  assert.deepEqual(ready.persist, []);
  assert.equal(ready.rejected[0]?.code, 'PEER_NOT_MEMBER');
  assert.equal(h.node('c').get(primaryKey('r2')), undefined);
});

void test('an entry of an owned key written by another host is refused', () => {
  const h = cluster();
  const stamp = BigInt(h.clock.nowMs()) * 1000n;
  const ready = h.node('a').receive('b', { type: 'push', sentLamport: stamp, entries: [{ key: hostKey('c'), entry: liveEntry({}, stamp + 5n, 'b') }] });
  assert.equal(ready.rejected[0]?.code, 'META_NOT_OWNER');
  assert.deepEqual(ready.persist, []);
});

void test('a message stamped far in the future is refused and does not drag the clock along', () => {
  const h = cluster();
  const node = h.node('a');
  const future = BigInt(h.clock.nowMs() + 3_600_000) * 1000n;
  const ready = node.receive('b', { type: 'push', sentLamport: future, entries: [{ key: primaryKey('r1'), entry: liveEntry('b', future, 'b') }] });
  assert.equal(ready.rejected[0]?.code, 'META_CLOCK_SKEW');
  assert.equal(node.get(primaryKey('r1')), undefined);
  assert.ok(node.lamportNow() <= BigInt(h.clock.nowMs() + clockSkewMsMax) * 1000n);
  // Once time has caught up, the same write is taken.
  h.clock.advance(3_600_000);
  const later = node.receive('b', { type: 'push', sentLamport: future, entries: [{ key: primaryKey('r1'), entry: liveEntry('b', future, 'b') }] });
  assert.deepEqual(later.rejected, []);
  assert.equal(node.get(primaryKey('r1')), 'b');
});

void test('a stale message (older than messageAgeMsMax) is refused', () => {
  const h = cluster();
  const old = BigInt(h.clock.nowMs() - messageAgeMsMax - 1) * 1000n;
  const ready = h.node('a').receive('b', { type: 'digest', sentLamport: old, scopes: [] });
  assert.equal(ready.rejected[0]?.code, 'META_STALE');
});

void test('an older Lamport stamp never overwrites a newer one', () => {
  const h = cluster();
  h.apply('a', h.node('a').set(primaryKey('r1'), 'new'));
  h.settle();
  const stamp = BigInt(h.clock.nowMs()) * 1000n;
  const ready = h.node('b').receive('a', { type: 'push', sentLamport: stamp + 10n, entries: [{ key: primaryKey('r1'), entry: liveEntry('old', 1n, 'a') }] });
  assert.deepEqual(ready.persist, []);
  assert.equal(h.node('b').get(primaryKey('r1')), 'new');
});

void test('a tombstone reaches every member, then is purged everywhere, and stale copies never bring the key back', () => {
  const h = cluster();
  const key = desiredKey('r2', 'b');
  h.apply('b', h.node('b').set(key, { attach: true }));
  h.settle();
  const staleLive = [...h.history];
  h.clock.advance(1000);
  h.apply('b', h.node('b').delete(key));
  h.settle();
  for (const m of ['b', 'c', 'd']) assert.equal(h.node(m).get(key), undefined);
  assert.equal(h.node('c').entry(key)?.deleted, true);
  // Seen-by sets spread, completion is noticed, and after the purge delay the tombstone goes.
  for (let i = 0; i < 3 + tombstonePurgeDelayMs / 5000; i++) {
    h.clock.advance(5000);
    h.tickAll();
    h.settle();
  }
  for (const m of ['b', 'c', 'd']) assert.equal(h.node(m).entry(key), undefined, `purged on ${m}`);
  for (const item of staleLive) h.deliver(item);
  h.settle();
  for (const m of ['b', 'c', 'd']) assert.equal(h.node(m).get(key), undefined, `not resurrected on ${m}`);
  assert.ok(h.rejections.some((r) => r.code === 'META_STALE'));
});

void test('leaving a resource drops its keys here; joining one brings them', () => {
  const h = cluster();
  h.apply('b', h.node('b').set(primaryKey('r2'), 'b'));
  h.settle();
  const ready = h.node('a').set(hostKey('a'), hostRecordValue({ address: 'a:7777', resources: ['r1', 'r2'] }));
  h.apply('a', ready);
  h.settle();
  h.clock.advance(5000);
  h.tickAll();
  h.settle();
  assert.equal(h.node('a').get(primaryKey('r2')), 'b');
  assert.equal(h.node('a').digest(resourceScope('r2')), h.node('c').digest(resourceScope('r2')));
  const leave = h.node('a').set(hostKey('a'), hostRecordValue({ address: 'a:7777', resources: ['r1'] }));
  assert.ok(leave.persist.includes(resourceScope('r2')));
  assert.equal(h.node('a').get(primaryKey('r2')), undefined);
  assert.equal(h.node('a').digest(clusterScope) !== 0n, true);
});
