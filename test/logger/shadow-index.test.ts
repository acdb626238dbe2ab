import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ShadowIndex, extentOverheadBytes } from '../../src/logger/shadow-index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const spaceBytes = 256;

type Op = { kind: 'write'; offset: number; length: number; fill: number } | { kind: 'zero'; offset: number; length: number } | { kind: 'drop'; back: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('write' as const), offset: fc.nat(spaceBytes - 1), length: fc.integer({ min: 1, max: 64 }), fill: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('zero' as const), offset: fc.nat(spaceBytes - 1), length: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('drop' as const), back: fc.nat(5) }),
);

/** The dumb model: per byte, the seq and value of the newest write still shadowed. */
interface ModelByte {
  seq: number;
  value: number;
}

test('the shadow index reads back exactly what a byte-array model holds, through inserts, splits and drops', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const index = new ShadowIndex();
      let model: (ModelByte | undefined)[] = Array.from({ length: spaceBytes + 64 }, () => undefined);
      let seq = 0;
      for (const op of ops) {
        if (op.kind === 'drop') {
          const through = Math.max(0, seq - op.back);
          index.dropThrough(through);
          model = model.map((b) => (b !== undefined && b.seq <= through ? undefined : b));
          continue;
        }
        seq++;
        const data = op.kind === 'write' ? Buffer.alloc(op.length, op.fill) : null;
        index.insert(op.offset, op.length, data, seq);
        for (let i = op.offset; i < op.offset + op.length; i++) model[i] = { seq, value: op.kind === 'write' ? op.fill : 0 };
      }
      const device = Buffer.alloc(spaceBytes + 64, 0xee);
      index.overlay(0, device);
      let coveredBytes = 0;
      for (let i = 0; i < device.length; i++) {
        const expected = model[i]?.value ?? 0xee;
        assert.equal(device[i], expected, `byte ${i}`);
        if (model[i] !== undefined) coveredBytes++;
      }
      const extents = index.snapshot();
      for (let i = 1; i < extents.length; i++) {
        assert.ok(extents[i - 1]!.offsetBytes + extents[i - 1]!.lengthBytes <= extents[i]!.offsetBytes, 'extents overlap or are unsorted');
      }
      const dataBytes = extents.reduce((s, e) => s + (e.data === null ? 0 : e.lengthBytes), 0);
      assert.equal(index.bytes, dataBytes + extents.length * extentOverheadBytes);
      assert.equal(extents.reduce((s, e) => s + e.lengthBytes, 0), coveredBytes);
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});

test('covers is true exactly when every byte of the range is shadowed', () => {
  const index = new ShadowIndex();
  index.insert(0, 10, Buffer.alloc(10, 1), 1);
  index.insert(10, 5, null, 2);
  index.insert(20, 5, Buffer.alloc(5, 3), 3);
  assert.equal(index.covers(0, 15), true);
  assert.equal(index.covers(5, 10), true);
  assert.equal(index.covers(0, 16), false);
  assert.equal(index.covers(15, 5), false);
  assert.equal(index.covers(20, 5), true);
});

test('an insert older than the extent it overlaps is a broken invariant', () => {
  const index = new ShadowIndex();
  index.insert(0, 10, Buffer.alloc(10, 1), 5);
  assert.throws(() => index.insert(5, 10, Buffer.alloc(10, 2), 4), /out of sequence order/);
});
