/**
 * A sync source starts its compression (lz4's threads) when the target says HELLO, not when
 * the first range is ready to send: starting the threads took 50–200 ms on a busy machine,
 * and the first range waited for them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableCompressions } from '../../src/compress/index.js';
import { lz4Load, stopLz4Threads } from '../../src/compress/lz4-worker.js';
import { lz4ThreadsMax } from '../../src/compress/limits.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { encodeSyncMessage, SyncSourceSession } from '../../src/sync/index.js';
import { deviceWith, MemLink, mib, settle, sourceResource } from './helpers.js';

void test('a sync source starts every lz4 thread on HELLO, before any range is asked for', { skip: !availableCompressions().includes('lz4') }, async () => {
  await stopLz4Threads();
  assert.equal(lz4Load().threads, 0);
  const device = await deviceWith(new MemStorage(), 'device', Buffer.alloc(mib));
  const [sourceEnd] = MemLink.pair();
  const session = new SyncSourceSession(sourceEnd, 'beta', { resolve: () => sourceResource(device, mib), compressions: ['lz4'] });
  const hello = encodeSyncMessage({ kind: 'hello', compressions: ['lz4'] });
  session.frameReceived({ type: hello.type, payload: hello.payload });
  await settle(1); // a job takes its place in the lz4 queue after a microtask
  assert.equal(lz4Load().threads, lz4ThreadsMax, 'the threads start at HELLO');
  await stopLz4Threads();
});
