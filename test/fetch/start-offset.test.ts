/**
 * A member that joined by sync fetches its first log from the sync's start, not from its
 * first byte: the bytes it receives are bounded by what the log holds after that point,
 * the copy holds the source's bytes from there on (a hole before it, and the file as long
 * as the source's), and reopened it is verified from where replay starts, never cut.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalCopies } from '../../src/fetch/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { dialer, hookWrites, newClient, Primary, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';

void test('the first copy begins at the sync start: only the bytes after it are fetched, and a reopened copy is verified from there', { timeout: 30_000 }, async () => {
  const primary = await Primary.open('alpha', 71);
  await primary.append(80);
  await primary.sync();
  // The sync starts here: a record boundary, with the seq of the next record.
  const start = primary.writer.durablePosition();
  await primary.append(30);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const local = new MemStorage();
  const name = primary.logName(1);
  let written = 0;
  const watched = hookWrites(local, (file, endBytes) => {
    if (file === name) written = Math.max(written, endBytes);
  });
  let receivedBytes = 0;
  const copies = await LocalCopies.open(watched);
  const client = newClient(copies, dialer('beta', 'alpha', server), 72, { startLogNumber: 1, startOffsetBytes: start.endOffsetBytes, startNextSeq: start.nextSeq });
  const appended = copies.append.bind(copies);
  copies.append = async (parts, nextSeq) => {
    receivedBytes += parts.reduce((sum, p) => sum + p.length, 0);
    return appended(parts, nextSeq);
  };
  try {
    client.start();
    await waitFor('the copy reaches the durable end', () => client.status().localBytes === primary.durableBytes(), 10_000, 5);
    assert.equal(server.streamStarts[0]?.fromOffsetBytes, start.endOffsetBytes, 'the stream starts at the sync start');
    assert.equal(receivedBytes, primary.durableBytes() - start.endOffsetBytes, 'only the bytes after the sync start travel');
    assert.equal(client.status().fetchRestBytes, 0);
    const source = (await primary.storage.readAll(name))!;
    const copy = (await local.readAll(name))!;
    assert.equal(copy.length, source.length, 'the copy is as long as the source: the same history in every report');
    assert.ok(copy.subarray(start.endOffsetBytes).equals(source.subarray(start.endOffsetBytes)), 'the bytes from the sync start on are the source\'s');
    assert.ok(written <= source.length);
  } finally {
    await client.stop();
    await server.close();
  }
  // Reopened: verified from the sync start, nothing cut.
  const reopened = await LocalCopies.open(local, () => ({ name, offsetBytes: start.endOffsetBytes, nextSeq: start.nextSeq }));
  assert.deepEqual([reopened.lastCheck?.cutBytes, reopened.last?.verifiedBytes], [0, primary.durableBytes()]);
  await reopened.close();
});
