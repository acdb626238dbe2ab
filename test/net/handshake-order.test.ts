/**
 * Who proves first, and the host keys bound into the handshake: a caller that has not
 * proved the secret learns nothing computed from it, and holding the secret is not
 * enough to authenticate under a name whose key is pinned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { FrameType } from '../../src/net/frame.js';
import { computeProof, decodeHello, encodeHello, Handshake, type ChannelName, type InitiatorParams, type ResponderParams } from '../../src/net/handshake.js';
import { run } from './handshake-pump.js';
import { testSigningKey } from '../../src/meta/signing.js';

const secret = Buffer.from('correct horse battery staple, 32B');
const random = new Random(23);
const keyA = testSigningKey('a');
const keyB = testSigningKey('b');
const pinned: Record<string, string> = { a: keyA.publicKeyText, b: keyB.publicKeyText };

function initiator(over: Partial<InitiatorParams> = {}): Handshake {
  return Handshake.initiator({ secret, clusterId: 'prod', localHost: 'a', peerHost: 'b', channel: 'meta', nonce: random.bytes(32), signingKey: keyA, peerKey: (h) => pinned[h], ...over });
}

function responder(over: Partial<ResponderParams> = {}): Handshake {
  return Handshake.responder({ secret, clusterId: 'prod', localHost: 'b', nonce: random.bytes(32), signingKey: keyB, peerKey: (h) => pinned[h], ...over });
}

/** Every proof a responder named `b` could compute for a caller that chose its own nonce. */
function responderProofs(channel: ChannelName, from: string, nonceInitiator: Buffer, nonceResponder: Buffer): Buffer[] {
  return [1, 2].map((role) =>
    computeProof({ secret, role: role as 1 | 2, clusterId: 'prod', initiator: from, responder: 'b', channel, nonceInitiator, nonceResponder, channelBinding: Buffer.alloc(0) }),
  );
}

for (const channel of ['join', 'meta'] as const) {
  void test(`the responder never proves first (${channel} channel): a caller with a wrong proof gets nothing computed from the secret`, () => {
    const r = responder();
    const nonce = Buffer.alloc(32, 0x5a); // the stranger's chosen nonce
    const hello = encodeHello({ channel, nonce, clusterId: channel === 'join' ? '' : 'prod', from: 'stranger', to: channel === 'join' ? '' : 'b' });
    const first = r.receive({ type: FrameType.helloInitiator, payload: hello });
    assert.equal(first.send.length, 1);
    assert.equal(first.send[0]!.type, FrameType.helloResponder);
    const answer = decodeHello(first.send[0]!.payload, false);
    assert.ok(answer !== undefined, 'HELLO_R carries nonce and names only');
    const sent = [...first.send];
    const bad = r.receive({ type: FrameType.proof, payload: Buffer.alloc(channel === 'join' ? 32 : 96, 1) });
    sent.push(...bad.send);
    assert.equal(r.state, 'refused');
    assert.deepEqual(bad.send.map((f) => f.type), [FrameType.refuse]);
    for (const proof of responderProofs(channel, 'stranger', nonce, answer.nonce)) {
      for (const frame of sent) assert.equal(frame.payload.includes(proof), false, 'no proof over the stranger\'s nonce');
    }
  });
}

void test('both sides prove and sign; each knows the other once done', () => {
  const i = initiator();
  const r = responder();
  const wire = run(i, r);
  assert.equal(i.state, 'done');
  assert.equal(r.state, 'done');
  assert.deepEqual(wire.map((f) => f.type), [FrameType.helloInitiator, FrameType.helloResponder, FrameType.proof, FrameType.accept]);
});

void test('a secret holder that claims a name whose key is pinned, without that key, is refused', () => {
  const forger = initiator({ signingKey: testSigningKey('m') });
  const r = responder();
  run(forger, r);
  assert.equal(r.state, 'refused');
  assert.equal(r.error?.code, 'HOST_MISMATCH');
  assert.match(r.error.message, /pinned/);
  assert.notEqual(forger.state, 'done');
});

void test('a responder that holds the secret but not the pinned key of the host dialled is refused by the caller', () => {
  const i = initiator();
  const impostor = responder({ signingKey: testSigningKey('m') });
  run(i, impostor);
  assert.equal(i.state, 'refused');
  assert.equal(i.error?.code, 'HOST_MISMATCH');
});

void test('a name without a pinned key is taken with any key (a new member), and a join needs no host key', () => {
  const fresh = initiator({ localHost: 'new', signingKey: testSigningKey('new') });
  const r = responder();
  run(fresh, r);
  assert.equal(r.state, 'done');
  const joiner = Handshake.joiner({ secret, localHost: 'late', nonce: random.bytes(32) });
  const member = responder();
  run(joiner, member);
  assert.equal(joiner.state, 'done');
  assert.equal(joiner.peerHost, 'b');
});
