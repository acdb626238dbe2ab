/**
 * The snapshot a member hands a joiner, and the digest exchange with `reply` that
 * wait-cluster uses to compare roots.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterDigestOf, clusterScope, hostKey, joinSnapshot, JoinSnapshotReceiver, type DigestMessage } from '../../src/meta/index.js';
import { Harness } from './harness.js';

void test('a joiner gets exactly the live cluster entries and can tell that it got all of them', () => {
  const h = new Harness(['a', 'b', 'c'], { r1: ['a', 'b'] }, 3);
  h.bootstrap();
  h.apply('c', h.node('c').set('cluster/note/c', 'hello'));
  h.apply('c', h.node('c').delete('cluster/note/c'));
  h.settle();
  const snapshot = joinSnapshot(h.node('a').exportScope(clusterScope));
  const receiver = new JoinSnapshotReceiver();
  for (const batch of snapshot.batches) assert.equal(receiver.add(batch), undefined);
  const entries = receiver.finish(snapshot.digest);
  assert.ok(entries !== undefined);
  assert.deepEqual([...entries.keys()].sort(), [hostKey('a'), hostKey('b'), hostKey('c')], 'tombstones stay behind; no resource key');
  assert.equal(clusterDigestOf(entries).root, snapshot.digest.root);

  const short = new JoinSnapshotReceiver();
  short.add((snapshot.batches[0] ?? []).slice(1));
  assert.equal(short.finish(snapshot.digest), undefined, 'a missing entry is noticed');
  assert.match(new JoinSnapshotReceiver().add([{ key: 'resource/r1/primary', entry: { value: 'a', lamport: 1n, owner: 'a', deleted: false, seenBy: [] } }]) ?? '', /not a cluster key/);
});

void test('a digest that asks for a reply is answered with the peer\'s own roots', () => {
  const h = new Harness(['a', 'b'], { r1: ['a', 'b'] }, 5);
  h.bootstrap();
  h.apply('a', h.node('a').exchange('b', true));
  assert.equal(h.inFlight.length, 1);
  const asked = h.inFlight.shift()!;
  assert.equal((JSON.parse(asked.bytes.toString('utf8')) as { reply?: boolean }).reply, true);
  h.deliver(asked);
  const answers = h.inFlight.map((m) => JSON.parse(m.bytes.toString('utf8')) as { type: string });
  const digest = answers.find((m) => m.type === 'digest') as (DigestMessage & { reply?: boolean }) | undefined;
  assert.ok(digest !== undefined, 'b answers with a digest');
  assert.equal(digest.reply, undefined, 'the answer asks for nothing (no ping-pong)');
  assert.deepEqual(digest.scopes.map((s) => s.scope).sort(), ['cluster', 'resource/r1']);
  assert.deepEqual(digest.scopes.map((s) => s.root).sort(), [h.node('a').digest('cluster'), h.node('a').digest('resource/r1')].map((r) => r.toString(16).padStart(16, '0')).sort());
});
