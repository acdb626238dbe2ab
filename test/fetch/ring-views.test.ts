import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LocalCopies, liveWriterEnd, RecentLogBytes, StorageLogSource, TeeLogStorage } from '../../src/fetch/index.js';
import type { RingView } from '../../src/fetch/recent-log-bytes.js';
import { LogWriter } from '../../src/log/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { assertCopiesEqual, dialer, newClient, resource, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

type Op = { kind: 'append'; sizes: number[] } | { kind: 'restart' } | { kind: 'lend'; backBytes: number; lengthBytes: number } | { kind: 'release'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('append' as const), sizes: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'restart' as const }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('lend' as const), backBytes: fc.integer({ min: 1, max: 700 }), lengthBytes: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
);

void test('property: a view of the ring keeps its bytes until it is released, whatever is appended meanwhile, with at most one retired ring', () => {
  const capacityBytes = 512;
  const viewWithinBytes = 256;
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
      const recent = new RecentLogBytes(capacityBytes, viewWithinBytes);
      recent.arm();
      let name = 'log-1';
      let file = Buffer.alloc(0);
      let byte = 1;
      const out: { view: RingView; expected: Buffer; fromBytes: number }[] = [];
      for (const op of ops) {
        if (op.kind === 'append') {
          const parts = op.sizes.map((n) => Buffer.from(Array.from({ length: n }, () => (byte = (byte * 31 + 7) & 0xff))));
          recent.appended(name, parts, file.length);
          file = Buffer.concat([file, ...parts]);
        } else if (op.kind === 'restart') {
          name = `log-${Number(name.slice(4)) + 1}`;
          file = Buffer.alloc(0);
        } else if (op.kind === 'lend') {
          const at = Math.max(0, file.length - op.backBytes);
          const view = recent.lend(name, at, op.lengthBytes);
          if (view !== undefined) {
            assert.ok(at + op.lengthBytes <= file.length, 'only bytes the file holds');
            assert.ok(at >= file.length - viewWithinBytes, 'only near the end');
            assert.deepEqual(view.bytes, file.subarray(at, at + op.lengthBytes));
            out.push({ view, expected: Buffer.from(view.bytes), fromBytes: at });
          }
        } else if (out.length > 0) {
          out.splice(op.pick % out.length, 1)[0]!.view.release();
        }
        // The invariant, after every step: no view's bytes changed while it was out.
        for (const o of out) assert.deepEqual(o.view.bytes, o.expected, `the view from ${o.fromBytes} changed`);
        assert.equal(recent.viewsOut, out.length);
      }
      for (const o of out) o.view.release();
      assert.equal(recent.viewsOut, 0);
    }),
    { seed: fcSeed, numRuns: 400 },
  );
});

void test('an append that would overwrite a lent view retires the ring; no view is lent until the retired ring is free again', () => {
  const recent = new RecentLogBytes(1024, 1024);
  recent.arm();
  recent.appended('log-1', [Buffer.alloc(1024, 1)], 0);
  const view = recent.lend('log-1', 0, 512);
  assert.ok(view !== undefined);
  recent.appended('log-1', [Buffer.alloc(256, 2)], 1024); // overwrites [0, 256): the view's bytes
  assert.equal(recent.retired, 1);
  assert.deepEqual(view.bytes, Buffer.alloc(512, 1), 'the view still holds its bytes');
  assert.equal(recent.lend('log-1', 1024, 256), undefined, 'no view while the retired ring is out');
  const copy = Buffer.alloc(256);
  assert.ok(recent.read('log-1', copy, 1024), 'copies still work');
  assert.deepEqual(copy, Buffer.alloc(256, 2));
  view.release();
  view.release(); // twice is once
  assert.equal(recent.viewsOut, 0);
  const again = recent.lend('log-1', 1024, 256);
  assert.ok(again !== undefined);
  assert.deepEqual(again.bytes, Buffer.alloc(256, 2));
  again.release();
  // Far behind the end (beyond viewWithinBytes) it copies instead of lending.
  const near = new RecentLogBytes(1024, 256);
  near.arm();
  near.appended('log-1', [Buffer.alloc(1024, 3)], 0);
  assert.equal(near.lend('log-1', 0, 100), undefined);
  assert.ok(near.lend('log-1', 768, 100) !== undefined);
});

void test('a stream served from the ring sends views, gives every one back, and the copy arrives exact while the log grows', { timeout: 30_000 }, async () => {
  const storage = new MemStorage();
  const recent = new RecentLogBytes(4 << 20, 4 << 20);
  const writer = await LogWriter.open(new TeeLogStorage(storage, 'alpha', recent), { host: 'alpha', logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 30 });
  const source = new StorageLogSource({ storage, live: liveWriterEnd(writer, 'alpha'), recent });
  recent.arm(); // from the first append on, as when a secondary is attached
  const server = await Server.listen('alpha', source, 0, [], () => new Promise((resolve) => setImmediate(resolve)));
  const local = new MemStorage();
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', server), 41);
  try {
    client.start();
    for (let i = 0; i < 96; i++) {
      await writer.append({ kind: 'write', lamport: BigInt(i + 1), offsetBytes: (i % 64) * 65536, payload: Buffer.alloc(65536, i) });
      if (i % 4 === 3) {
        await writer.sync();
        source.notifyChange();
      }
    }
    await waitFor('the copy reaches the durable end', () => client.status().localBytes === writer.durablePosition().endOffsetBytes, 20_000, 5);
    assert.ok(recent.viewsLent > 0, `${recent.viewsLent} views lent`);
    // The stream is still open (caught up, waiting for more): each view came back once its frame was with the kernel.
    await waitFor('every view sent is given back while the stream stays open', () => recent.viewsOut === 0, 5_000, 5);
    assert.ok(recent.armed, 'the stream still has its file open');
    await assertCopiesEqual(storage, local, `${resource} over ring views`);
  } finally {
    await client.stop();
    await server.close();
  }
  assert.equal(recent.viewsOut, 0);
  recent.disarm();
  await writer.close();
});
