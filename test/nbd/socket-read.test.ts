import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import type { BlockBackend } from '../../src/nbd/backend.js';
import { NbdClient } from '../../src/nbd/client.js';
import { socketReadBufferBytes } from '../../src/nbd/limits.js';
import { withReusableReadBuffer } from '../../src/nbd/socket-read.js';
import { HOST, startServer, within, WAIT_MS_MAX } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Seeded generator (mulberry32): the same writes on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

void test('an accepted socket reads into the given buffer: views of it, in order, then end; writes still work', async () => {
  const buffer = Buffer.alloc(4 * KiB);
  const received: Buffer[] = [];
  let sameMemory = true;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  try {
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const client = net.connect((server.address() as net.AddressInfo).port, HOST);
    const [socket] = await within(accepted, WAIT_MS_MAX, 'accept');
    const adopted = withReusableReadBuffer(socket, buffer, (view) => {
      if (view.buffer !== buffer.buffer) sameMemory = false;
      received.push(Buffer.from(view)); // the test keeps copies: the view is rewritten by the next read
    });
    assert.ok(adopted !== undefined, 'this Node lets an accepted socket read into a buffer of ours');
    assert.equal(socket.destroyed, true, 'the socket it came from is let go');
    const sent = Buffer.alloc(100 * KiB);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + 3) & 0xff;
    const ended = once(adopted, 'end');
    adopted.resume();
    client.end(sent);
    await within(ended, WAIT_MS_MAX, 'end of the client stream');
    assert.ok(sameMemory, 'every view lies in the given buffer');
    assert.ok(received.length >= Math.ceil(sent.length / buffer.length), 'no read larger than the buffer');
    assert.deepEqual(Buffer.concat(received), sent);
    const echoed = once(client, 'data') as Promise<[Buffer]>;
    const closed = once(adopted, 'close');
    adopted.end(Buffer.from('bye'));
    assert.equal((await within(echoed, WAIT_MS_MAX, 'reply'))[0].toString(), 'bye');
    await within(closed, WAIT_MS_MAX, 'close');
    client.destroy();
  } finally {
    server.close();
  }
});

/** Keeps every payload it is given, as the logger does until writeback, and answers at once. */
class KeepingBackend implements BlockBackend {
  readonly canMultiConn = true;
  readonly kept: { offsetBytes: number; data: Buffer }[] = [];
  constructor(readonly sizeBytes: number) {}
  read(_offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return Promise.resolve(Buffer.alloc(lengthBytes));
  }
  write(offsetBytes: number, data: Buffer): Promise<void> {
    this.kept.push({ offsetBytes, data });
    return Promise.resolve();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  trim(): Promise<void> {
    return Promise.resolve();
  }
  writeZeroes(): Promise<void> {
    return Promise.resolve();
  }
}

void test('payloads the backend keeps are never rewritten by later reads into the shared buffer (four connections at once)', async () => {
  const sizeBytes = 64 * MiB;
  const backend = new KeepingBackend(sizeBytes);
  const s = await startServer({ disk: backend });
  const next = random(9);
  // Lengths around the read buffer's size and the payload pool's threshold, small ones between.
  const lengths = [1, 27, 4 * KiB, 64 * KiB - 1, 64 * KiB, 100 * KiB, socketReadBufferBytes - 5, socketReadBufferBytes + 3, MiB];
  const sent = new Map<number, Buffer>();
  let offset = 0;
  const clients = await Promise.all([0, 1, 2, 3].map(() => NbdClient.connect({ host: HOST, port: s.port, exportName: 'disk' })));
  try {
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 160; i++) {
      const lengthBytes = lengths[Math.floor(next() * lengths.length)]!;
      const data = Buffer.allocUnsafe(lengthBytes);
      for (let j = 0; j < lengthBytes; j++) data[j] = Math.floor(next() * 256);
      if (offset + lengthBytes > sizeBytes) offset = 0;
      sent.set(offset, Buffer.from(data));
      // Several in flight on every connection, so that reads carry a payload's end and the next header.
      writes.push(clients[i % clients.length]!.write(offset, data));
      offset += lengthBytes;
    }
    await within(Promise.all(writes), 30_000, 'the writes');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await s.close();
  }
  assert.equal(backend.kept.length, sent.size);
  for (const { offsetBytes, data } of backend.kept) {
    const expected = sent.get(offsetBytes);
    assert.ok(expected !== undefined, `a write at ${offsetBytes} that was never sent`);
    assert.ok(data.equals(expected), `the payload of ${data.length} bytes at ${offsetBytes} changed after it was handed over`);
  }
});
