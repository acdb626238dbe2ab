/**
 * Emergency mode deletes the primary's logs, the frozen live one too, to make room. A
 * member's fetch stream waiting at the live end of that log held it open: the writer
 * still named it as its live file, so the source answered from the writer without looking
 * at the directory, and the deleted file kept its blocks allocated. Found by hand on a
 * 48 MiB log filesystem with a secondary attached: the primary deleted every log and still
 * had 2.7 MiB free, so it could never leave emergency mode by itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFetchMessage, encodeFetchMessage, liveWriterEnd, StorageLogSource, type FetchMessage } from '../../src/fetch/index.js';
import { countingOpens, dialer, Primary, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';

void test('the frozen live log of emergency mode: info looks at the directory, and a stream at its end closes the file once it is deleted', { timeout: 30_000 }, async () => {
  const primary = await Primary.open('alpha', 17);
  await primary.append(20);
  await primary.sync();
  let frozen = false;
  const source = new StorageLogSource({ storage: primary.storage, live: liveWriterEnd({ durablePosition: () => primary.writer.durablePosition(), frozen: () => frozen }, 'alpha') });
  const counted = countingOpens(source);
  const server = await Server.listen('alpha', counted.source);
  const link = await dialer('beta', 'alpha', { port: server.port })();
  const name = primary.logName();
  const durableBytes = primary.durableBytes();
  try {
    const received: FetchMessage[] = [];
    link.attach({ onFrame: (f) => received.push(decodeFetchMessage(f.type, f.payload)), onClose: () => undefined });
    const { type, payload } = encodeFetchMessage({ type: 'fetch', requestId: 1, resource: 'r1', logName: name, fromOffsetBytes: 0, creditEndBytes: 64 * 1024 * 1024 });
    link.send(type, payload);
    await waitFor('the stream to catch up', () => received.some((m) => m.type === 'caught-up'), 10_000, 2);
    assert.equal(counted.open(), 1, 'the stream holds its log file open while it waits at the live end');

    // Frozen but still there: the same answer as before, now from the directory.
    frozen = true;
    assert.deepEqual(await source.info(name), { name, durableBytes, complete: false });
    source.notifyChange();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(counted.open(), 1, 'a frozen log that still exists keeps its stream');
    assert.ok(!received.some((m) => m.type === 'error'), 'no refusal while the frozen log exists');

    // Deleted to make room: the source no longer names it, and the stream ends and closes it.
    await primary.storage.remove(name);
    assert.equal(await source.info(name), undefined, 'a deleted frozen log is gone');
    source.notifyChange();
    await waitFor('the stream to close its file', () => counted.open() === 0, 10_000, 2);
    await waitFor('the refusal', () => received.some((m) => m.type === 'error'), 10_000, 2);
    const refusal = received.find((m) => m.type === 'error');
    assert.ok(refusal?.type === 'error' && refusal.reason === 'noLog', `refused as noLog: ${JSON.stringify(refusal)}`);
  } finally {
    link.close();
    await server.close();
    await primary.writer.close();
  }
});
