import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, systemClock } from '../../src/core/clock.js';
import { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import { FrameType } from '../../src/net/frame.js';
import { backoffMsMax, backoffMsMin } from '../../src/net/limits.js';
import { backoffDelayMs, PeerConnection } from '../../src/net/peer-connection.js';
import { PeerServer, dialPeer } from '../../src/net/peer-endpoint.js';
import type { PeerLink } from '../../src/net/peer-link.js';
import { ManualTimers, systemTimers } from '../../src/net/timers.js';
import type { PeerLog } from '../../src/net/refusal-log.js';
import { waitFor } from '../support/wait.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const secret = Buffer.from('a cluster secret of 32 bytes....');

void test('backoff doubles from its minimum up to its cap, jittered within half of each step', () => {
  fc.assert(
    fc.property(fc.nat(60), fc.nat(), (attempt, seed) => {
      const delay = backoffDelayMs(attempt, new Random(seed), backoffMsMin, backoffMsMax);
      const full = Math.min(backoffMsMax, backoffMsMin * 2 ** attempt);
      assert.ok(delay >= Math.floor(full / 2) && delay <= full, `${delay} within [${full / 2}, ${full}]`);
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

void test('a peer that cannot be reached is dialled again and again with growing, capped delays, logged once', async () => {
  const clock = new ManualClock(0);
  const timers = new ManualTimers(() => clock.nowMs(), (d) => clock.advance(d));
  const lines: string[] = [];
  const log: PeerLog = { warn: (fields) => lines.push(String(fields['code'])) };
  const connection = new PeerConnection({
    name: 'b at 127.0.0.2:7777',
    dial: () => Promise.reject(new MarsError('PEER_CLOSED', 'connection refused')),
    clock,
    timers,
    random: new Random(3),
    onFrame: () => undefined,
    log,
  });
  connection.start();
  const delays: number[] = [];
  for (let i = 0; i < 14; i++) {
    await flush();
    assert.equal(connection.state, 'waiting');
    const delay = timers.nextDelayMs()!;
    delays.push(delay);
    timers.advance(delay);
  }
  assert.equal(connection.dials, 15);
  for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! <= backoffMsMax);
  assert.ok(delays[0]! <= backoffMsMin && delays.at(-1)! >= backoffMsMax / 2, delays.join(','));
  assert.ok(lines.length < 14, 'repeated refusals are not logged each time');
  connection.stop();
  assert.equal(timers.count, 0);
  assert.equal(connection.state, 'stopped');
});

void test('a dial that finds nobody is logged at info as unreachable; a peer that refuses us at warn', async () => {
  // A port nobody listens on: taken from a listener that is closed again.
  const listener = await PeerServer.listen({ listenHost: '127.0.0.2', port: 0, auth: { secret, clusterId: 'prod', localHost: 'b' }, onLink: () => undefined });
  const port = listener.port;
  await listener.close();
  const lines: { level: string; code: string; message: string }[] = [];
  const log: PeerLog = {
    warn: (fields, message) => lines.push({ level: 'warn', code: String(fields['code']), message }),
    info: (fields, message) => lines.push({ level: 'info', code: String(fields['code']), message }),
  };
  const dialNobody = new PeerConnection({
    name: 'b at 127.0.0.2',
    dial: () => dialPeer({ host: '127.0.0.2', port, auth: { secret, clusterId: 'prod', localHost: 'a' }, peerHost: 'b', channel: 'meta' }),
    clock: systemClock,
    timers: systemTimers,
    random: new Random(4),
    onFrame: () => undefined,
    log,
  });
  dialNobody.start();
  while (lines.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  dialNobody.stop();
  assert.deepEqual(lines.map((l) => [l.level, l.code]), [['info', 'PEER_CLOSED']]);
  assert.match(lines[0]!.message, /^cannot reach peer: .*ECONNREFUSED/);
  lines.length = 0;
  const refusing = new PeerConnection({
    name: 'c at 127.0.0.3',
    dial: () => Promise.reject(new MarsError('AUTH_FAILED', 'peer refused: wrong secret')),
    clock: systemClock,
    timers: systemTimers,
    random: new Random(5),
    onFrame: () => undefined,
    log,
  });
  refusing.start();
  await flush();
  refusing.stop();
  assert.deepEqual(lines.map((l) => [l.level, l.code]), [['warn', 'AUTH_FAILED']]);
});

void test('a connection comes back by itself after the peer drops it', async () => {
  const serverLinks: PeerLink[] = [];
  let linkArrived: () => void = () => undefined;
  const server = await PeerServer.listen({
    listenHost: '127.0.0.1',
    port: 0,
    auth: { secret, clusterId: 'prod', localHost: 'b' },
    onLink: (link) => {
      serverLinks.push(link);
      link.attach({ onFrame: () => undefined, onClose: () => undefined });
      linkArrived();
    },
  });
  const waitForLink = (count: number): Promise<void> =>
    new Promise((resolve) => {
      linkArrived = () => {
        if (serverLinks.length >= count) resolve();
      };
      linkArrived();
    });
  const opened: string[] = [];
  const received: string[] = [];
  const connection = new PeerConnection({
    name: 'b',
    dial: () => dialPeer({ host: '127.0.0.1', port: server.port, auth: { secret, clusterId: 'prod', localHost: 'a' }, peerHost: 'b', channel: 'meta' }),
    clock: systemClock,
    timers: systemTimers,
    random: new Random(1),
    backoffMsMin: 5,
    backoffMsMax: 50,
    onOpen: (link) => opened.push(link.peerHost),
    onFrame: (frame) => received.push(frame.payload.toString()),
  });
  try {
    connection.start();
    await waitForLink(1);
    serverLinks[0]!.close();
    await waitForLink(2);
    assert.ok(serverLinks[1]!.send(FrameType.meta, Buffer.from('after reconnect')));
    await waitFor('the frame sent after the reconnect', () => received.length > 0, 1_000, 10);
    assert.deepEqual(received, ['after reconnect']);
    assert.deepEqual(opened, ['b', 'b']);
    assert.ok(connection.send(FrameType.meta, Buffer.from('{}')));
  } finally {
    connection.stop();
    for (const link of serverLinks) link.close();
    await server.close();
  }
});
