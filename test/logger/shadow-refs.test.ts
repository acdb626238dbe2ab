/**
 * The shadow index reports its references to data buffers exactly: after any sequence of
 * inserts (which split and replace extents) and drops, each buffer's count of holds minus
 * drops equals the number of extents that keep it (the buffer or a view of it), and no
 * count ever reaches zero while an extent still keeps the buffer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ShadowIndex, type ShadowRefs } from '../../src/logger/shadow-index.js';

const deviceBytes = 64 * 1024;

class Recorder implements ShadowRefs {
  readonly counts = new Map<ArrayBufferLike, number>();
  /** Buffers whose count reached zero, and whether an extent still kept them then. */
  readonly early: string[] = [];
  constructor(private readonly keptBy: () => Set<ArrayBufferLike>) {}
  hold(data: Buffer): void {
    this.counts.set(data.buffer, (this.counts.get(data.buffer) ?? 0) + 1);
  }
  drop(data: Buffer): void {
    const n = (this.counts.get(data.buffer) ?? 0) - 1;
    assert.ok(n >= 0, 'a drop without a hold');
    if (n === 0) {
      this.counts.delete(data.buffer);
      if (this.keptBy().has(data.buffer)) this.early.push('a buffer retired while an extent still keeps it');
    } else this.counts.set(data.buffer, n);
  }
}

type Op = { kind: 'insert'; offset: number; length: number; zero: boolean } | { kind: 'drop'; back: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record({ offset: fc.integer({ min: 0, max: deviceBytes - 1 }), length: fc.integer({ min: 1, max: 20_000 }), zero: fc.boolean() })
      .map((r) => ({ kind: 'insert' as const, offset: r.offset, length: Math.min(r.length, deviceBytes - r.offset), zero: r.zero && r.length % 7 === 0 })),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 10 }).map((back) => ({ kind: 'drop' as const, back })) },
);

test('holds minus drops equal the extents that keep each buffer (property)', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
      const held: { index?: ShadowIndex } = {};
      const kept = (): Set<ArrayBufferLike> => new Set(held.index!.snapshot().flatMap((e) => (e.data === null ? [] : [e.data.buffer])));
      const refs = new Recorder(kept);
      const index = new ShadowIndex(refs);
      held.index = index;
      let seq = 0;
      for (const op of ops) {
        if (op.kind === 'insert') {
          // Each write's data has an ArrayBuffer of its own, as the payload pool hands out.
          index.insert(op.offset, op.length, op.zero ? null : Buffer.alloc(op.length, seq & 0xff), ++seq);
        } else {
          index.dropThrough(seq - op.back);
        }
        const expected = new Map<ArrayBufferLike, number>();
        for (const e of index.snapshot()) if (e.data !== null) expected.set(e.data.buffer, (expected.get(e.data.buffer) ?? 0) + 1);
        assert.deepEqual(refs.counts, expected);
      }
      assert.deepEqual(refs.early, []);
    }),
    { seed: 7, numRuns: 300 },
  );
});
