import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFetchMessage, encodeFetchMessage, fetchLimits, LocalCopies, type FetchMessage } from '../../src/fetch/index.js';
import { LogWriter } from '../../src/log/index.js';
import type { PeerLink } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { dialer, newClient, Primary, Server, sleep } from './helpers.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 30_000;

/** A raw fetch link: messages out, every message in. */
async function rawLink(port: number): Promise<{ link: PeerLink; received: FetchMessage[]; send: (m: FetchMessage) => void }> {
  const link = await dialer('beta', 'alpha', { port })();
  const received: FetchMessage[] = [];
  link.attach({ onFrame: (f) => received.push(decodeFetchMessage(f.type, f.payload)), onClose: () => undefined });
  return {
    link,
    received,
    send: (m) => {
      const { type, payload } = encodeFetchMessage(m);
      link.send(type, payload);
    },
  };
}

const dataBytes = (messages: FetchMessage[]): number => messages.reduce((sum, m) => sum + (m.type === 'data' ? m.data.length : 0), 0);

void test('the server never sends beyond the credit the client gave, in chunks of at most fetchChunkBytesMax', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 41);
  await primary.append(400, 16384);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const { link, received, send } = await rawLink(server.port);
  try {
    const creditEndBytes = fetchLimits.fetchChunkBytesMax + 1000;
    send({ type: 'fetch', requestId: 1, resource: 'r1', logName: primary.logName(), fromOffsetBytes: 0, creditEndBytes });
    await waitFor('the credit is used', () => dataBytes(received) === creditEndBytes, 10_000, 5);
    await sleep(100);
    assert.equal(dataBytes(received), creditEndBytes, 'nothing beyond the credit');
    assert.ok(received.every((m) => m.type !== 'data' || m.data.length <= fetchLimits.fetchChunkBytesMax));
    send({ type: 'credit', requestId: 1, creditEndBytes: primary.durableBytes() + 1 });
    await waitFor('caught up once the credit allows', () => received.some((m) => m.type === 'caught-up'), 10_000, 5);
    assert.equal(dataBytes(received), primary.durableBytes());
    send({ type: 'list', requestId: 2, resource: 'nope', fromLogNumber: 0 });
    await waitFor('an error for an unknown resource', () => received.some((m) => m.type === 'error' && m.requestId === 2), 10_000, 5);
    const refusal = received.find((m) => m.type === 'error');
    assert.ok(refusal?.type === 'error' && refusal.reason === 'noResource');
  } finally {
    link.close();
    await server.close();
  }
});

void test('a damaged record in the durable prefix of the source is not shipped: fetch fails with FETCH_SOURCE_DAMAGED', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 42);
  await primary.append(50, 1000);
  await primary.sync();
  const name = primary.logName();
  const damageAtBytes = Math.floor(primary.durableBytes() / 2);
  primary.storage.flipBit(name, damageAtBytes * 8);
  const server = await Server.listen('alpha', primary.source);
  const local = new MemStorage();
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', server), 43);
  try {
    client.start();
    await waitFor('failed', () => client.status().state === 'failed', 10_000, 5);
    assert.equal(client.status().error?.code, 'FETCH_SOURCE_DAMAGED');
    const copy = local.image(name)!;
    assert.ok(copy.length <= damageAtBytes && copy.equals(primary.storage.image(name)!.subarray(0, copy.length)), 'only records before the damage');
  } finally {
    await client.stop();
    await server.close();
  }
});

void test('a local copy longer than the complete log at the source is a diverged history: fetch stops', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 44);
  await primary.append(5, 100);
  await primary.writer.rotate();
  primary.source.notifyChange();
  const local = new MemStorage();
  const other = await LogWriter.open(local, { host: 'alpha', logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 20 });
  for (let i = 0; i < 10; i++) await other.append({ kind: 'write', lamport: 1n, offsetBytes: 0, payload: Buffer.alloc(200, i) });
  await other.close();
  const server = await Server.listen('alpha', primary.source);
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', server), 45);
  try {
    client.start();
    await waitFor('failed', () => client.status().state === 'failed', 10_000, 5);
    assert.equal(client.status().error?.code, 'FETCH_DIVERGED');
    assert.equal(server.streamStarts.length, 0, 'nothing fetched');
  } finally {
    await client.stop();
    await server.close();
  }
});
