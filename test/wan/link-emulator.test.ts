/**
 * The link emulator itself (test/support/link-emulator.ts), in-process over loopback: it
 * carries a byte stream unchanged and in order (with jitter), never delivers before the
 * delay or faster than the rate (lower bounds only: a loaded machine is slower, never
 * faster), holds data through a stall (until it ends, or is ended), passes nothing while blackholed, and resets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { Random } from '../../src/core/random.js';
import { LinkEmulator, wanSpec } from '../support/link-emulator.js';
import { waitFor } from '../support/wait.js';

/** An echo-less sink on 127.0.0.2 that collects what arrives. */
async function sink(): Promise<{ server: Server; address: string; received: () => Buffer; sockets: Socket[] }> {
  const chunks: Buffer[] = [];
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
  const a = server.address();
  assert.ok(a !== null && typeof a === 'object');
  return { server, address: `127.0.0.2:${a.port}`, received: () => Buffer.concat(chunks), sockets };
}

async function dial(front: string): Promise<Socket> {
  const [host, port] = front.split(':');
  const socket = connect({ host: host!, port: Number(port), localAddress: '127.0.0.1' });
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  return socket;
}

/** Resolves when the socket closes, whether by an end or a reset. */
function closeOf(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

async function until(what: string, predicate: () => boolean): Promise<void> {
  await waitFor(what, predicate, 20_000, 5);
}

void test('a stream arrives whole and in order, no sooner than the delay and no faster than the rate', async () => {
  const s = await sink();
  const emulator = new LinkEmulator(7, wanSpec(100, 8, 20));
  try {
    const front = await emulator.front(s.address);
    const socket = await dial(front);
    const data = new Random(1).bytes(1024 * 1024);
    const startedMs = performance.now();
    for (let at = 0; at < data.length; at += 8192) socket.write(data.subarray(at, at + 8192));
    await until('the first byte', () => s.received().length > 0);
    const firstMs = performance.now() - startedMs;
    await until('every byte', () => s.received().length >= data.length);
    const allMs = performance.now() - startedMs;
    assert.ok(s.received().equals(data), 'the bytes arrive unchanged and in order');
    assert.ok(firstMs >= 50, `the first byte after the one-way delay (${firstMs.toFixed(0)} ms)`);
    // 1 MiB at 8 Mbit/s takes 1.05 s on the wire.
    assert.ok(allMs >= 1000, `1 MiB at 8 Mbit/s took ${allMs.toFixed(0)} ms`);
    assert.equal(emulator.deliveredBytes('127.0.0.1', '127.0.0.2'), data.length);
    assert.ok(s.sockets[0]!.remoteAddress?.endsWith('127.0.0.1'), 'the front dials from the client address');
    socket.destroy();
  } finally {
    await emulator.close();
    s.server.close();
  }
});

void test('a stall holds data back until it ends; a blackhole passes nothing; a reset cuts the connection', async () => {
  const s = await sink();
  const emulator = new LinkEmulator(8, wanSpec(2, 0));
  try {
    const front = await emulator.front(s.address);
    const socket = await dial(front);
    const link = emulator.link('127.0.0.1', '127.0.0.2');
    link.stall(500);
    const stalledAtMs = performance.now();
    socket.write(Buffer.from('during the stall'));
    await until('the stalled bytes', () => s.received().length === 16);
    assert.ok(performance.now() - stalledAtMs >= 450, 'nothing arrived during the stall');

    // A stall of a minute ended early: what waited arrives then (the wait gives up long before the minute).
    link.stall(60_000);
    socket.write(Buffer.from('held'));
    link.endStall();
    await until('the bytes held by the ended stall', () => s.received().length === 20);
    assert.equal(s.received().subarray(16).toString(), 'held');

    link.setBlackhole(true);
    const closed = closeOf(socket);
    socket.write(Buffer.from('lost'));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(s.received().length, 20, 'nothing passes a blackhole');
    link.setBlackhole(false);
    await closed; // connections that lost bytes are reset when the blackhole ends

    const again = await dial(front);
    const closedAgain = closeOf(again);
    again.write(Buffer.from('!'));
    await until('the new connection to carry a byte', () => s.received().length === 21);
    link.reset();
    await closedAgain;
  } finally {
    await emulator.close();
    s.server.close();
  }
});
