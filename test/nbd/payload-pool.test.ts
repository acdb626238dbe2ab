import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PayloadPool } from '../../src/nbd/payload-pool.js';

test('a buffer given back is handed out again for the same length, and only then', () => {
  const pool = new PayloadPool(4 * 1024 * 1024);
  const a = pool.take(1024 * 1024);
  assert.equal(a.length, 1024 * 1024);
  assert.equal(a.byteOffset, 0);
  assert.ok(pool.holds(a) && pool.holds(a.subarray(10, 20)));
  pool.give(a);
  assert.ok(!pool.holds(a));
  const other = pool.take(512 * 1024);
  assert.notEqual(other.buffer, a.buffer, 'a different length gets a new buffer');
  const again = pool.take(1024 * 1024);
  assert.equal(again.buffer, a.buffer);
  assert.deepEqual(pool.stats(), { reused: 1, allocated: 2, kept: 1, dropped: 0, freeBytes: 0 });
});

test('views, foreign buffers and a second give are ignored', () => {
  const pool = new PayloadPool(4 * 1024 * 1024);
  const a = pool.take(256 * 1024);
  pool.give(a.subarray(0, 4096));
  pool.give(Buffer.alloc(256 * 1024));
  assert.equal(pool.stats().kept, 0);
  pool.give(a);
  pool.give(a);
  assert.equal(pool.stats().kept, 1);
  const b = pool.take(256 * 1024);
  const c = pool.take(256 * 1024);
  assert.equal(b.buffer, a.buffer);
  assert.notEqual(c.buffer, a.buffer, 'a buffer given twice is handed out once');
});

test('the free buffers never exceed their limit, and no buffer is out twice at once (property)', () => {
  const lengths = [64 * 1024, 128 * 1024, 1024 * 1024];
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 2 }), fc.nat()), { maxLength: 200 }), (ops) => {
      const limit = 2 * 1024 * 1024;
      const pool = new PayloadPool(limit);
      const out: Buffer[] = [];
      for (const [take, li, pick] of ops) {
        if (take || out.length === 0) {
          const b = pool.take(lengths[li]!);
          assert.equal(b.length, lengths[li]);
          assert.ok(!out.some((o) => o.buffer === b.buffer), 'a buffer still out was handed out again');
          out.push(b);
        } else {
          pool.give(out.splice(pick % out.length, 1)[0]!);
        }
        assert.ok(pool.stats().freeBytes <= limit);
      }
    }),
    { seed: 42, numRuns: 200 },
  );
});
