import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Random } from '../../src/core/random.js';
import { FrameType, type Frame } from '../../src/net/frame.js';
import { decodeHello, encodeHello, Handshake, type InitiatorParams, type ResponderParams } from '../../src/net/handshake.js';
import { run } from './handshake-pump.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const secret = Buffer.from('correct horse battery staple, 32B');
const random = new Random(7);

function initiator(over: Partial<InitiatorParams> = {}): Handshake {
  return Handshake.initiator({ secret, clusterId: 'prod', localHost: 'a', peerHost: 'b', channel: 'meta', nonce: random.bytes(32), ...over });
}

function responder(over: Partial<ResponderParams> = {}): Handshake {
  return Handshake.responder({ secret, clusterId: 'prod', localHost: 'b', nonce: random.bytes(32), ...over });
}

function assertNoSecret(wire: Frame[]): void {
  for (const frame of wire) {
    assert.equal(frame.payload.includes(secret), false, 'the secret itself is never sent');
    assert.equal(frame.payload.includes(Buffer.from(secret.toString('hex'))), false);
  }
}

void test('with the right secret both sides finish, each knowing the other by name', () => {
  const i = initiator();
  const r = responder();
  const wire = run(i, r);
  assert.equal(i.state, 'done');
  assert.equal(r.state, 'done');
  assert.equal(i.peerHost, 'b');
  assert.equal(r.peerHost, 'a');
  assert.equal(r.channel, 'meta');
  assert.deepEqual(wire.map((f) => f.type), [FrameType.helloInitiator, FrameType.helloResponder, FrameType.proof, FrameType.accept]);
  assertNoSecret(wire);
});

void test('a wrong secret is refused on both sides, and the secret never crosses the wire', () => {
  for (const [i, r] of [
    [initiator({ secret: Buffer.from('another secret of enough length') }), responder()],
    [initiator(), responder({ secret: Buffer.from('another secret of enough length') })],
  ] as const) {
    const wire = run(i, r);
    assert.equal(i.state, 'refused');
    assert.equal(r.state, 'refused');
    assert.equal(i.error?.code, 'AUTH_FAILED');
    assert.equal(r.error?.code, 'AUTH_FAILED');
    assert.equal(i.peerHost, undefined);
    assertNoSecret(wire);
  }
});

void test('a different cluster id is refused on both sides', () => {
  const i = initiator({ clusterId: 'staging' });
  const r = responder();
  run(i, r);
  assert.equal(i.error?.code, 'CLUSTER_MISMATCH');
  assert.equal(r.error?.code, 'CLUSTER_MISMATCH');
});

void test('a peer that is not the host we meant to reach is refused on both sides', () => {
  // a dials "b" but reaches c.
  const i = initiator({ peerHost: 'b' });
  const r = responder({ localHost: 'c' });
  run(i, r);
  assert.equal(i.error?.code, 'HOST_MISMATCH');
  assert.equal(r.error?.code, 'HOST_MISMATCH');
});

void test('a responder answering under another name than the one dialled is refused', () => {
  const i = initiator({ peerHost: 'b' });
  i.start();
  const nonce = random.bytes(32);
  const step = i.receive({ type: FrameType.helloResponder, payload: encodeHello({ channel: 'meta', nonce, clusterId: 'prod', from: 'x', to: 'a' }) });
  assert.equal(step.state, 'refused');
  assert.equal(step.error?.code, 'HOST_MISMATCH');
  assert.equal(step.send[0]?.type, FrameType.refuse);
});

void test('a host claiming the responder\'s own name, or one the responder does not accept, is refused on both sides', () => {
  const i1 = initiator({ localHost: 'b' });
  const r1 = responder();
  run(i1, r1);
  assert.equal(r1.error?.code, 'HOST_MISMATCH');
  assert.equal(i1.error?.code, 'HOST_MISMATCH');
  const i2 = initiator({ localHost: 'mallory' });
  const r2 = responder({ acceptPeer: (host) => host !== 'mallory' });
  run(i2, r2);
  assert.equal(r2.error?.code, 'HOST_MISMATCH');
  assert.equal(i2.error?.code, 'HOST_MISMATCH');
});

void test('a proof replayed from an earlier session does not pass (fresh nonces on both sides)', () => {
  const wire = run(initiator(), responder());
  const oldProof = wire.find((f) => f.type === FrameType.proof)!;
  const r = responder();
  const hello = initiator().start()[0]!;
  r.receive(hello);
  const step = r.receive(oldProof);
  assert.equal(step.state, 'refused');
  assert.equal(step.error?.code, 'AUTH_FAILED');
});

void test('different TLS sessions at the two ends (a man in the middle) make the proofs fail', () => {
  const i = initiator({ channelBinding: random.bytes(32) });
  const r = responder({ channelBinding: random.bytes(32) });
  run(i, r);
  assert.equal(i.error?.code, 'AUTH_FAILED');
  assert.equal(r.error?.code, 'AUTH_FAILED');
  const binding = random.bytes(32);
  const i2 = initiator({ channelBinding: binding });
  const r2 = responder({ channelBinding: binding });
  run(i2, r2);
  assert.equal(i2.state, 'done');
  assert.equal(r2.state, 'done');
});

void test('garbage handshake frames never authenticate', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ type: fc.integer({ min: 1, max: 0x10 }), payload: fc.uint8Array({ maxLength: 200 }) }), { minLength: 1, maxLength: 5 }), (frames) => {
      const r = responder();
      for (const f of frames) r.receive({ type: f.type, payload: Buffer.from(f.payload) });
      assert.notEqual(r.state, 'done');
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});

void test('hello messages round-trip and malformed ones are refused', () => {
  const hello = { channel: 'sync' as const, nonce: random.bytes(32), clusterId: 'c1', from: 'host-1', to: 'host.2' };
  assert.deepEqual(decodeHello(encodeHello(hello), false), hello);
  const bytes = encodeHello(hello);
  assert.equal(decodeHello(bytes.subarray(0, bytes.length - 1), false), undefined);
  assert.equal(decodeHello(Buffer.concat([bytes, Buffer.from([0])]), false), undefined);
});
