/**
 * A client that asks for a large credit and then stops reading its socket must not make
 * the server queue the log in memory: the server's link holds at most sendBufferBytesMax
 * plus one frame, checked at every frame the server hands to the link (not once after a
 * sleep), and when the reader resumes it gets every byte in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { decodeFetchMessage, encodeFetchMessage, type FetchMessage } from '../../src/fetch/index.js';
import { netLimits } from '../../src/net/index.js';
import { dialer, Primary, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 60_000;
/** What the server's link may hold: the send buffer limit, and the one frame that may go past it. */
const recordPayloadBytes = 1024 * 1024;
const recordsCount = 40;
const queuedBytesMax = netLimits.sendBufferBytesMax + netLimits.frameBytesMax + 64;

void test('a stalled reader with a large credit: the server queues at most the send buffer limit plus one frame', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 77);
  // 40 MiB of durable log, more than the send buffer limit and the kernel's socket buffers: 1 MiB writes, each record's bytes its own.
  for (let i = 0; i < recordsCount; i++) {
    const payload = Buffer.alloc(recordPayloadBytes, i & 0xff);
    payload.writeUInt32LE(i, 0);
    await primary.writer.append({ kind: 'write', lamport: BigInt(i + 1), offsetBytes: 0, payload });
    if (i % 8 === 7) await primary.sync(); // the writer holds a bounded number of unsynced bytes
  }
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const link = await dialer('beta', 'alpha', { port: server.port })();
  try {
    const socket = (link as unknown as { socket: Socket }).socket;
    const received: FetchMessage[] = [];
    link.attach({ onFrame: (f) => received.push(decodeFetchMessage(f.type, f.payload)), onClose: () => undefined });
    socket.pause();
    // Checked at every frame the server sends: the most it ever held.
    let queuedPeak = 0;
    await waitFor('the server link', () => server.links.length === 1, 10_000, 5);
    const serverLink = server.links[0]!;
    const sendParts = serverLink.sendParts.bind(serverLink);
    serverLink.sendParts = (type: number, parts: readonly Buffer[]): boolean => {
      const sent = sendParts(type, parts);
      queuedPeak = Math.max(queuedPeak, serverLink.sendQueuedBytes);
      assert.ok(serverLink.sendQueuedBytes <= queuedBytesMax, `the server link holds ${serverLink.sendQueuedBytes} bytes`);
      return sent;
    };
    const logName = primary.logName();
    const durableBytes = (await primary.source.info(logName))!.durableBytes;
    const { type, payload } = encodeFetchMessage({ type: 'fetch', requestId: 1, resource: 'r1', logName, fromOffsetBytes: 0, creditEndBytes: 1024 * 1024 * 1024 });
    link.send(type, payload);
    await waitFor('the server to fill its send buffer', () => serverLink.sendQueuedBytes >= netLimits.sendBufferBytesMax, 20_000, 2);
    assert.ok(queuedPeak <= queuedBytesMax);
    socket.resume();
    const dataBytes = (): number => received.reduce((sum, m) => sum + (m.type === 'data' ? m.data.length : 0), 0);
    await waitFor('every durable byte', () => dataBytes() === durableBytes, 30_000, 5);
    const image = (await primary.storage.readAll(logName))!;
    let at = 0;
    for (const m of received) {
      if (m.type !== 'data') continue;
      assert.equal(m.offsetBytes, at, 'DATA in order, without gaps');
      assert.ok(m.data.equals(image.subarray(at, at + m.data.length)), `the bytes at ${at} are the log's`);
      at += m.data.length;
    }
    assert.ok(queuedPeak >= netLimits.sendBufferBytesMax, 'the server did fill its send buffer (the check saw the full state)');
    assert.ok(queuedPeak <= queuedBytesMax, `peak ${queuedPeak} bytes queued`);
  } finally {
    link.close();
    await server.close();
  }
});
