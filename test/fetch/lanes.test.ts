import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeLaneToken, encodeLaneToken, fetchLaneFrameType, fetchSessionFrameType, LaneMerger } from '../../src/fetch/lanes.js';
import { FetchError } from '../../src/fetch/index.js';

void test('SESSION and LANE: the bytes of the format; anything else is FETCH_PROTOCOL', () => {
  const token = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const { type, payload } = encodeLaneToken(fetchSessionFrameType, token);
  assert.equal(type, 0x25);
  assert.equal(encodeLaneToken(fetchLaneFrameType, token).type, 0x26);
  assert.deepEqual(payload, Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), token]));
  assert.deepEqual(decodeLaneToken(payload), token);
  for (const bad of [payload.subarray(0, 23), Buffer.concat([payload, Buffer.from([0])]), Buffer.from(payload).fill(2, 0, 1), Buffer.from(payload).fill(1, 4, 5)]) {
    assert.throws(() => decodeLaneToken(bad), (e: unknown) => e instanceof FetchError && e.code === 'FETCH_PROTOCOL');
  }
});

void test('the merger releases a stream\'s DATA in offset order whatever order the lanes bring it, and CAUGHT_UP/COMPLETE only after the data before them', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 30 }), fc.nat(), (sizes, seed) => {
      const merger = new LaneMerger();
      const from = 4096;
      merger.expect(7, from);
      const chunks: { offsetBytes: number; rawBytes: number }[] = [];
      let at = from;
      for (const rawBytes of sizes) {
        chunks.push({ offsetBytes: at, rawBytes });
        at += rawBytes;
      }
      // Arrival order: a seeded shuffle (lanes overtake each other); the COMPLETE arrives first, an old stream's DATA in between.
      const order = chunks.map((c, i) => ({ c, key: (i * 2654435761 + seed) % 4093 })).sort((a, b) => a.key - b.key).map((x) => x.c);
      const released: string[] = [];
      merger.control(7, at, () => released.push(`complete ${at}`));
      merger.data(6, 0, 10, () => released.push('old'));
      for (const c of order) merger.data(7, c.offsetBytes, c.rawBytes, () => released.push(`data ${c.offsetBytes}`));
      const expected = ['old', ...chunks.map((c) => `data ${c.offsetBytes}`), `complete ${at}`];
      assert.deepEqual(released, expected);
      assert.equal(merger.heldCount, 0);
    }),
    { seed: 14, numRuns: 200 },
  );
});

void test('a new FETCH drops what was held of the previous stream', () => {
  const merger = new LaneMerger();
  const released: string[] = [];
  merger.expect(1, 0);
  merger.data(1, 100, 50, () => released.push('held'));
  merger.control(1, 150, () => released.push('caught-up'));
  assert.equal(released.length, 0, 'held: the data before them is missing');
  merger.expect(2, 0);
  merger.data(2, 0, 100, () => released.push('new'));
  assert.deepEqual(released, ['new']);
  assert.equal(merger.heldCount, 0);
});
