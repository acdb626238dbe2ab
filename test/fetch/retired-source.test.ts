/**
 * A resource deleted on the serving host while a member's fetch stream waits at the live
 * end: the stream must end and close its log file. Before, the stream waited for a source
 * that never came back; once nothing referenced it, the garbage collector closed its file
 * ("Closing file descriptor … on garbage collection", a warning on stderr that is no JSON).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFetchMessage, encodeFetchMessage, SwitchableLogSource, type FetchMessage } from '../../src/fetch/index.js';
import { countingOpens, dialer, Primary, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';

void test('a stream waiting on a resource that stops and is then deleted ends and closes its file', { timeout: 30_000 }, async () => {
  const primary = await Primary.open('alpha', 91);
  await primary.append(20);
  await primary.sync();
  const counted = countingOpens(primary.source);
  const served = new SwitchableLogSource();
  served.set(counted.source);
  const server = await Server.listen('alpha', served);
  const link = await dialer('beta', 'alpha', { port: server.port })();
  try {
    const received: FetchMessage[] = [];
    link.attach({ onFrame: (f) => received.push(decodeFetchMessage(f.type, f.payload)), onClose: () => undefined });
    const { type, payload } = encodeFetchMessage({ type: 'fetch', requestId: 1, resource: 'r1', logName: primary.logName(), fromOffsetBytes: 0, creditEndBytes: 64 * 1024 * 1024 });
    link.send(type, payload);
    await waitFor('the stream to catch up', () => received.some((m) => m.type === 'caught-up'), 10_000, 2);
    assert.equal(counted.open(), 1, 'the stream holds its log file open while it waits at the live end');

    // The resource stops (as before a role change): the stream pauses and keeps its file.
    served.set(undefined);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(counted.open(), 1, 'a stopped resource pauses the stream; it may start again');
    assert.ok(!received.some((m) => m.type === 'error'), 'no refusal while the resource only stopped');

    // Deleted for good: the stream ends with a refusal and closes its file.
    served.close();
    await waitFor('the stream to close its file', () => counted.open() === 0, 10_000, 2);
    await waitFor('the refusal', () => received.some((m) => m.type === 'error'), 10_000, 2);
    const refusal = received.find((m) => m.type === 'error');
    assert.ok(refusal?.type === 'error' && refusal.reason === 'noLog', `refused as noLog: ${JSON.stringify(refusal)}`);
    served.set(counted.source);
    assert.equal(await served.info(primary.logName()), undefined, 'a closed source stays closed');
  } finally {
    link.close();
    await server.close();
  }
});
