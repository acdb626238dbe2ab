/**
 * Fetch serving must not hold the primary's event loop: with its log in memory a stream
 * could verify, checksum and write a whole credit window in one turn while NBD requests
 * wait. Measured at every frame the server sends (not once after a sleep): the most DATA
 * bytes sent since the event loop last ran a turn stay within fetchSendBurstBytesMax plus
 * one chunk (and a frame header's worth).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFetchMessage, encodeFetchMessage, fetchLimits, FetchFrameType, type FetchMessage } from '../../src/fetch/index.js';
import { dialer, Primary, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 60_000;
const recordPayloadBytes = 1024 * 1024;
const recordsCount = 24;
const burstBytesMax = fetchLimits.fetchSendBurstBytesMax + fetchLimits.fetchChunkBytesMax;

void test('a stream served from memory sends at most one burst of DATA per turn of the event loop', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 78);
  for (let i = 0; i < recordsCount; i++) {
    await primary.writer.append({ kind: 'write', lamport: BigInt(i + 1), offsetBytes: 0, payload: Buffer.alloc(recordPayloadBytes, i & 0xff) });
    if (i % 8 === 7) await primary.sync();
  }
  await primary.sync();
  const server = await Server.listen('alpha', primary.source, 0, [], () => new Promise((resolve) => setImmediate(resolve)));
  const link = await dialer('beta', 'alpha', { port: server.port })();
  // A turn of the event loop resets the count; a stream that never yields keeps adding to it.
  let sinceTurnBytes = 0;
  let peakBytes = 0;
  let ticking = true;
  const tick = (): void => {
    sinceTurnBytes = 0;
    if (ticking) setImmediate(tick);
  };
  tick();
  try {
    const received: FetchMessage[] = [];
    link.attach({ onFrame: (f) => received.push(decodeFetchMessage(f.type, f.payload)), onClose: () => undefined });
    await waitFor('the server link', () => server.links.length === 1, 10_000, 5);
    const serverLink = server.links[0]!;
    const sendParts = serverLink.sendParts.bind(serverLink);
    serverLink.sendParts = (type: number, parts: readonly Buffer[], onWritten?: () => void): boolean => {
      const sent = sendParts(type, parts, onWritten);
      if (sent && type === FetchFrameType.data) {
        sinceTurnBytes += parts.reduce((sum, p) => sum + p.length, 0);
        peakBytes = Math.max(peakBytes, sinceTurnBytes);
      }
      return sent;
    };
    const logName = primary.logName();
    const durableBytes = (await primary.source.info(logName))!.durableBytes;
    const { type, payload } = encodeFetchMessage({ type: 'fetch', requestId: 1, resource: 'r1', logName, fromOffsetBytes: 0, creditEndBytes: 1024 * 1024 * 1024 });
    link.send(type, payload);
    const dataBytes = (): number => received.reduce((sum, m) => sum + (m.type === 'data' ? m.data.length : 0), 0);
    await waitFor('every durable byte', () => dataBytes() === durableBytes, 30_000, 5);
    assert.ok(peakBytes >= fetchLimits.fetchChunkBytesMax, `the check saw whole chunks (peak ${peakBytes})`);
    assert.ok(peakBytes <= burstBytesMax + 4096, `peak ${peakBytes} bytes of DATA in one turn`);
  } finally {
    ticking = false;
    link.close();
    await server.close();
  }
});
