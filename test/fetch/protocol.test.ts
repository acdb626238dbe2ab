import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeFetchMessage, encodeFetchMessage, FetchError, FetchFrameType, fetchLimits, type FetchMessage } from '../../src/fetch/index.js';
import { formatLogName } from '../../src/log/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

const requestId = fc.nat({ max: 0xffff_ffff });
const bytes = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const resource = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
const logName = fc.tuple(fc.integer({ min: 1, max: 999_999_999 }), fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/)).map(([n, h]) => formatLogName(n, h));
const logInfo = fc.record({ name: logName, durableBytes: bytes, complete: fc.boolean() });

const message: fc.Arbitrary<FetchMessage> = fc.oneof(
  fc.record({ type: fc.constant('list' as const), requestId, resource, fromLogNumber: fc.nat({ max: 0xffff_ffff }) }),
  fc.tuple(requestId, resource, logName, bytes, fc.nat({ max: 1 << 30 })).map(([id, r, n, from, credit]) => ({
    type: 'fetch' as const,
    requestId: id,
    resource: r,
    logName: n,
    fromOffsetBytes: from,
    creditEndBytes: Math.min(Number.MAX_SAFE_INTEGER, from + credit),
  })),
  fc.record({ type: fc.constant('credit' as const), requestId, creditEndBytes: bytes }),
  fc.record({ type: fc.constant('list-reply' as const), requestId, logs: fc.array(logInfo, { maxLength: 20 }), more: fc.boolean() }),
  fc.tuple(requestId, fc.nat({ max: 1 << 40 }), fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat({ max: 1000 })).map(([id, offset, data, extra]) => ({
    type: 'data' as const,
    requestId: id,
    offsetBytes: offset,
    durableBytes: offset + data.length + extra,
    data: Buffer.from(data),
  })),
  fc.record({ type: fc.constant('caught-up' as const), requestId, durableBytes: bytes }),
  fc.record({ type: fc.constant('complete' as const), requestId, finalBytes: bytes }),
  fc.record({
    type: fc.constant('error' as const),
    requestId,
    reason: fc.constantFrom('badRequest' as const, 'noResource' as const, 'noLog' as const, 'beyondDurable' as const, 'sourceDamaged' as const, 'sourceIo' as const),
    message: fc.string({ maxLength: 100 }),
  }),
);

function refused(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    return err instanceof FetchError && err.code === 'FETCH_PROTOCOL';
  }
}

void test('every fetch message decodes to what was encoded', () => {
  fc.assert(
    fc.property(message, (m) => {
      const { type, payload } = encodeFetchMessage(m);
      assert.deepEqual(decodeFetchMessage(type, payload), m);
    }),
    { seed: fcSeed, numRuns: 1000 },
  );
});

void test('every truncation and every trailing byte of a fetch message is refused', () => {
  fc.assert(
    fc.property(message, (m) => {
      const { type, payload } = encodeFetchMessage(m);
      for (let n = 0; n < payload.length; n++) {
        // A DATA message cut inside its data is still a DATA message with less data.
        if (m.type === 'data' && n > 24) continue;
        assert.ok(refused(() => decodeFetchMessage(type, payload.subarray(0, n))), `${m.type} cut to ${n} of ${payload.length} bytes`);
      }
      if (m.type !== 'data') assert.ok(refused(() => decodeFetchMessage(type, Buffer.concat([payload, Buffer.from([0])]))), `${m.type} with a trailing byte`);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('an unknown protocol version, non-zero reserved bytes or an unknown type are refused', () => {
  const { type, payload } = encodeFetchMessage({ type: 'credit', requestId: 7, creditEndBytes: 100 });
  for (const [at, value] of [[0, 2], [1, 1], [3, 1]] as const) {
    const bad = Buffer.from(payload);
    bad[at] = value;
    assert.ok(refused(() => decodeFetchMessage(type, bad)), `byte ${at} = ${value}`);
  }
  assert.ok(refused(() => decodeFetchMessage(0x2f, payload)));
  assert.ok(refused(() => decodeFetchMessage(FetchFrameType.list, Buffer.alloc(3))));
});

void test('bad names, data beyond its durable end and oversized chunks are refused', () => {
  const list = encodeFetchMessage({ type: 'list', requestId: 1, resource: 'r1', fromLogNumber: 0 });
  const badResource = Buffer.from(list.payload);
  badResource[badResource.length - 1] = '/'.charCodeAt(0);
  assert.ok(refused(() => decodeFetchMessage(list.type, badResource)));
  const fetch = encodeFetchMessage({ type: 'fetch', requestId: 1, resource: 'r1', logName: 'log-000000001-alpha', fromOffsetBytes: 0, creditEndBytes: 10 });
  const badLog = Buffer.from(fetch.payload);
  badLog[badLog.length - 7] = 'x'.charCodeAt(0); // log-00000000x-alpha
  assert.ok(refused(() => decodeFetchMessage(fetch.type, badLog)));
  const data = encodeFetchMessage({ type: 'data', requestId: 1, offsetBytes: 10, durableBytes: 14, data: Buffer.alloc(4) });
  const beyond = Buffer.from(data.payload);
  beyond.writeUInt32LE(13, 16); // durable 13 < 10 + 4
  assert.ok(refused(() => decodeFetchMessage(data.type, beyond)));
  const big = Buffer.concat([data.payload.subarray(0, 24), Buffer.alloc(fetchLimits.fetchChunkBytesMax + 1)]);
  big.writeUInt32LE(0, 8);
  big.writeUInt32LE(fetchLimits.fetchChunkBytesMax + 1, 16);
  assert.ok(refused(() => decodeFetchMessage(data.type, big)));
});

void test('the bytes of version 1 are frozen', () => {
  const fetch = encodeFetchMessage({ type: 'fetch', requestId: 0x01020304, resource: 'r1', logName: 'log-000000001-a', fromOffsetBytes: 0x1_0000_0005, creditEndBytes: 0x1_0080_0000 });
  assert.equal(fetch.type, 0x21);
  assert.equal(
    fetch.payload.toString('hex'),
    '01000000' + '04030201' + '0500000001000000' + '0000800001000000' + '02' + Buffer.from('r1').toString('hex') + '0f' + Buffer.from('log-000000001-a').toString('hex'),
  );
  const reply = encodeFetchMessage({ type: 'list-reply', requestId: 9, logs: [{ name: 'log-000000002-b', durableBytes: 300, complete: true }], more: false });
  assert.equal(reply.type, 0x28);
  assert.equal(reply.payload.toString('hex'), '01000000' + '09000000' + '00' + '0100' + '0f' + Buffer.from('log-000000002-b').toString('hex') + '2c01000000000000' + '01');
  const data = encodeFetchMessage({ type: 'data', requestId: 1, offsetBytes: 64, durableBytes: 66, data: Buffer.from([0xaa, 0xbb]) });
  assert.equal(data.type, 0x29);
  assert.equal(data.payload.toString('hex'), '01000000' + '01000000' + '4000000000000000' + '4200000000000000' + 'aabb');
  const error = encodeFetchMessage({ type: 'error', requestId: 2, reason: 'noLog', message: 'no' });
  assert.equal(error.payload.toString('hex'), '01000000' + '02000000' + '03' + '0200' + '6e6f');
});
