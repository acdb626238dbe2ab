/**
 * A sync source starts its compression (an lz4 thread) when the target says HELLO, not when
 * the first range is ready to send: starting a thread took 50–200 ms on a busy machine,
 * and the first range waited for it. One thread only: a session compresses one run at a
 * time, and starting a second one cost CPU for nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableCompressions } from '../../src/compress/index.js';
import { lz4Load, lz4Warm, stopLz4Threads } from '../../src/compress/lz4-worker.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { encodeSyncMessage, SyncFrameType, SyncSourceSession, syncLimits } from '../../src/sync/index.js';
import { waitFor } from '../support/wait.js';
import { deviceWith, MemLink, mib, settle, sourceResource } from './helpers.js';

/** A source session over an in-memory link whose queued bytes the test sets; returns the frame types it sends. */
async function coldSource(queuedBytes: number): Promise<{ session: SyncSourceSession; sent: number[]; ask: (offsetBytes: number) => void }> {
  const image = Buffer.alloc(4 * mib, 'compressible '); // compresses well: sent compressed whenever lz4 is asked
  const device = await deviceWith(new MemStorage(), 'device', image);
  const [sourceEnd, targetEnd] = MemLink.pair();
  Object.defineProperty(sourceEnd, 'sendQueuedBytes', { value: queuedBytes });
  const sent: number[] = [];
  targetEnd.attach({ onFrame: (frame) => sent.push(frame.type), onClose: () => undefined });
  const session = new SyncSourceSession(sourceEnd, 'beta', { resolve: () => sourceResource(device, image.length), compressions: ['lz4'] });
  const deliver = (message: Parameters<typeof encodeSyncMessage>[0]): void => {
    const frame = encodeSyncMessage(message);
    session.frameReceived({ type: frame.type, payload: frame.payload });
  };
  deliver({ kind: 'hello', compressions: ['lz4'] });
  deliver({ kind: 'start', resource: 'r0', sizeBytes: image.length, resumeFromBytes: 0 });
  return { session, sent, ask: (offsetBytes) => deliver({ kind: 'copy', offsetBytes, blocks: mib / syncLimits.blockBytes }) };
}

void test('a sync source starts one lz4 thread on HELLO, before any range is asked for, and its ranges all go to that thread', { skip: !availableCompressions().includes('lz4') }, async () => {
  await stopLz4Threads();
  assert.equal(lz4Load().threads, 0);
  const r = await coldSource(0); // HELLO and START, no range asked for yet
  await settle(1); // a job takes its place in the lz4 queue after a microtask
  assert.equal(lz4Load().threads, 1, 'one thread starts at HELLO');
  await waitFor('the lz4 thread answers', () => lz4Warm(), 10_000, 1);
  for (let i = 0; i < 4; i++) {
    r.ask(i * mib);
    await waitFor(`range ${i} answered`, () => r.session.rangesAnswered === i + 1, 10_000, 1);
  }
  await settle();
  assert.equal(r.sent.filter((t) => t === SyncFrameType.blocksCompressed).length, 4, 'every range compressed');
  assert.equal(lz4Load().threads, 1, 'its ranges did not start another thread');
  await stopLz4Threads();
});

void test('a range is sent plain rather than wait for lz4 threads still starting while the link is idle, compressed once they answer', { skip: !availableCompressions().includes('lz4') }, async () => {
  await stopLz4Threads();
  const r = await coldSource(0);
  r.ask(0);
  await waitFor('range 0 answered', () => r.session.rangesAnswered === 1, 10_000, 1);
  assert.ok(!lz4Warm(), 'answered before the threads could start (a thread replies on a later turn)');
  await waitFor('the lz4 threads answer', () => lz4Warm(), 10_000, 1);
  r.ask(mib);
  await waitFor('range 1 answered', () => r.session.rangesAnswered === 2, 10_000, 1);
  await settle();
  const blocks = r.sent.filter((t) => t === SyncFrameType.blocks || t === SyncFrameType.blocksCompressed);
  assert.deepEqual(blocks, [SyncFrameType.blocks, SyncFrameType.blocksCompressed], 'range 0 plain, range 1 compressed');
  await stopLz4Threads();
});

void test('with a range queued on the link a run waits for the lz4 thread still starting (no second one) and goes compressed', { skip: !availableCompressions().includes('lz4') }, async () => {
  await stopLz4Threads();
  const r = await coldSource(syncLimits.coldCompressorPlainQueuedBytesMax);
  r.ask(0);
  await waitFor('range 0 answered', () => r.session.rangesAnswered === 1, 10_000, 1);
  await settle();
  assert.deepEqual(
    r.sent.filter((t) => t === SyncFrameType.blocks || t === SyncFrameType.blocksCompressed),
    [SyncFrameType.blocksCompressed],
  );
  assert.equal(lz4Load().threads, 1, 'it waited for the thread started at HELLO, not for a second one started from scratch');
  await stopLz4Threads();
});
