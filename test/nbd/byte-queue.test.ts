import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ByteQueue } from '../../src/nbd/byte-queue.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 42);

void test('take returns a view inside one chunk and a copy across chunks', () => {
  const queue = new ByteQueue();
  const first = Buffer.from('abcdef');
  queue.push(first);
  const second = Buffer.from('ghij');
  queue.push(second);
  const view = queue.take(3);
  assert.equal(view.toString(), 'abc');
  first[0] = 0x41;
  assert.equal(view.toString(), 'Abc', 'a view shares the chunk');
  const across = queue.take(5);
  assert.equal(across.toString(), 'defgh');
  assert.equal(queue.lengthBytes, 2);
  const owned = queue.takeCopy(2);
  assert.equal(owned.toString(), 'ij');
  owned[0] = 0x49;
  assert.equal(second.toString(), 'ghij', 'a copy does not share the chunk');
  assert.equal(queue.lengthBytes, 0);
});

void test('skip discards at most what is queued and says how much', () => {
  const queue = new ByteQueue();
  queue.push(Buffer.alloc(10));
  queue.push(Buffer.alloc(5));
  assert.equal(queue.skip(12), 12);
  assert.equal(queue.skip(100), 3);
  assert.equal(queue.lengthBytes, 0);
  assert.throws(() => queue.take(1));
});

type QueueOp = { kind: 'push'; length: number } | { kind: 'take' | 'peek' | 'copy' | 'skip'; length: number };

void test('any mix of pushes, takes, peeks and skips reads the bytes in order', () => {
  const opArb: fc.Arbitrary<QueueOp> = fc.oneof(
    fc.record({ kind: fc.constant('push' as const), length: fc.integer({ min: 0, max: 300 }) }),
    fc.record({ kind: fc.constantFrom('take' as const, 'peek' as const, 'copy' as const, 'skip' as const), length: fc.integer({ min: 0, max: 400 }) }),
  );
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
      const queue = new ByteQueue();
      let produced = 0;
      let consumed = 0;
      const byteAt = (i: number): number => (i * 7 + 3) & 0xff;
      for (const op of ops) {
        if (op.kind === 'push') {
          queue.push(Buffer.from(Array.from({ length: op.length }, (_, i) => byteAt(produced + i))));
          produced += op.length;
          continue;
        }
        const n = Math.min(op.length, produced - consumed);
        if (op.kind === 'skip') {
          assert.equal(queue.skip(op.length), n);
          consumed += n;
          continue;
        }
        const got = op.kind === 'peek' ? queue.peek(n) : op.kind === 'take' ? queue.take(n) : queue.takeCopy(n);
        assert.deepEqual([...got], Array.from({ length: n }, (_, i) => byteAt(consumed + i)));
        if (op.kind !== 'peek') consumed += n;
        assert.equal(queue.lengthBytes, produced - consumed);
      }
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});

void test('a borrowed chunk: what is unread when the reader is done survives the reuse of its memory', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ length: fc.integer({ min: 0, max: 64 }), reads: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 4 }) }), { minLength: 1, maxLength: 40 }),
      (steps) => {
        // One read buffer for every "socket read", as with a socket's onread buffer.
        const shared = Buffer.alloc(64);
        const queue = new ByteQueue();
        const sent: number[] = [];
        const received: number[] = [];
        let next = 0;
        for (const step of steps) {
          for (let i = 0; i < step.length; i++) shared[i] = next++ & 0xff;
          sent.push(...shared.subarray(0, step.length));
          queue.pushBorrowed(shared.subarray(0, step.length));
          for (const n of step.reads) if (queue.lengthBytes >= n) received.push(...queue.take(n));
          queue.keepBorrowed();
          shared.fill(0xee); // the next read rewrites the buffer
        }
        received.push(...queue.takeCopy(queue.lengthBytes));
        assert.deepEqual(received, sent);
      },
    ),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('keepBorrowed must come before the next borrowed chunk', () => {
  const queue = new ByteQueue();
  queue.pushBorrowed(Buffer.from('ab'));
  assert.throws(() => queue.pushBorrowed(Buffer.from('cd')), /keepBorrowed/);
  queue.keepBorrowed();
  queue.pushBorrowed(Buffer.from('cd'));
  queue.keepBorrowed();
  assert.equal(queue.takeCopy(4).toString(), 'abcd');
});
