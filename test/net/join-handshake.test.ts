/**
 * The join variant of the handshake (join-cluster, merge-cluster) and the former
 * identities a responder accepts after merge-cluster.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { decodeHello, encodeHello, Handshake, type ResponderParams } from '../../src/net/handshake.js';
import { run } from './handshake-pump.js';

const secret = Buffer.from('correct horse battery staple, 32B');
const random = new Random(11);

function responder(over: Partial<ResponderParams> = {}): Handshake {
  return Handshake.responder({ secret, clusterId: 'prod', localHost: 'b', nonce: random.bytes(32), ...over });
}

void test('a joiner proves the secret and learns the cluster id and the name of the member it reached', () => {
  const joiner = Handshake.joiner({ secret, localHost: 'new', nonce: random.bytes(32) });
  const member = responder();
  const wire = run(joiner, member);
  assert.equal(joiner.state, 'done');
  assert.equal(member.state, 'done');
  assert.equal(joiner.peerHost, 'b');
  assert.equal(joiner.clusterId, 'prod');
  assert.equal(member.peerHost, 'new');
  assert.equal(member.channel, 'join');
  for (const frame of wire) assert.equal(frame.payload.includes(secret), false);
});

void test('a joiner with a wrong secret is refused on both sides and learns nothing it could use', () => {
  const joiner = Handshake.joiner({ secret: Buffer.from('not the secret of this cluster!!'), localHost: 'new', nonce: random.bytes(32) });
  const member = responder();
  run(joiner, member);
  assert.equal(joiner.state, 'refused');
  assert.equal(joiner.error?.code, 'AUTH_FAILED');
  assert.equal(member.error?.code, 'AUTH_FAILED');
  assert.equal(joiner.clusterId, undefined);
});

void test('a join hello names neither cluster nor responder; other hellos must name both', () => {
  const nonce = Buffer.alloc(32, 1);
  const join = encodeHello({ channel: 'join', nonce, clusterId: '', from: 'new', to: '' });
  assert.notEqual(decodeHello(join, true), undefined);
  assert.equal(decodeHello(encodeHello({ channel: 'join', nonce, clusterId: 'prod', from: 'new', to: 'b' }), true), undefined);
  assert.equal(decodeHello(encodeHello({ channel: 'meta', nonce, clusterId: '', from: 'a', to: '' }), true), undefined);
  assert.throws(() => Handshake.initiator({ secret, clusterId: 'prod', localHost: 'a', peerHost: 'b', channel: 'join', nonce }), /joiner/);
});

void test('after a merge a responder still accepts its former identity, and only that one', () => {
  const former = { clusterId: 'old', secret: Buffer.from('the secret of the old cluster!!!') };
  const laggard = Handshake.initiator({ ...former, localHost: 'a', peerHost: 'b', channel: 'meta', nonce: random.bytes(32) });
  const merged = responder({ formerIdentities: [former] });
  run(laggard, merged);
  assert.equal(laggard.state, 'done');
  assert.equal(merged.clusterId, 'old');
  const stranger = Handshake.initiator({ clusterId: 'old', secret: Buffer.from('guessing the old secret wrongly'), localHost: 'a', peerHost: 'b', channel: 'meta', nonce: random.bytes(32) });
  run(stranger, responder({ formerIdentities: [former] }));
  assert.equal(stranger.error?.code, 'AUTH_FAILED');
  const other = Handshake.initiator({ ...former, clusterId: 'third', localHost: 'a', peerHost: 'b', channel: 'meta', nonce: random.bytes(32) });
  run(other, responder({ formerIdentities: [former] }));
  assert.equal(other.error?.code, 'CLUSTER_MISMATCH');
});
