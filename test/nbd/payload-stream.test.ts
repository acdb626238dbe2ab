/**
 * Large WRITE payloads are copied into their pool buffers as the socket delivers them:
 * pipelined requests, cut into socket writes at seeded random points (inside headers,
 * inside payloads, across both), must land byte for byte as a model says.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Random } from '../../src/core/random.js';
import { encodeClientFlags, encodeGoRequest, encodeOption, encodeRequestHeader } from '../../src/nbd/codec.js';
import { socketReadBufferBytes } from '../../src/nbd/limits.js';
import { payloadPool, payloadPoolBytesMin } from '../../src/nbd/payload-pool.js';
import { NbdClientFlag, NbdCommand, NbdOption, NbdReply } from '../../src/nbd/protocol.js';
import { RawConnection, startMemServer } from './helpers.js';

const sizeBytes = 4 * 1024 * 1024;

/** Client flags and a GO for export 'disk'; reads the option replies (magic, option, type, length, data) up to ACK. */
async function enterTransmission(raw: RawConnection): Promise<void> {
  await raw.read(18);
  raw.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
  raw.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'disk', infoRequests: [] })));
  for (let type = 0; type !== NbdReply.ACK; ) {
    const header = await raw.read(20);
    type = header.readUInt32BE(12);
    await raw.read(header.readUInt32BE(16));
  }
}

test('pipelined WRITEs cut at random points land as sent, large ones through the payload pool', async () => {
  for (let seed = 1; seed <= 6; seed++) {
    const random = new Random(seed);
    const s = await startMemServer(sizeBytes);
    const raw = await RawConnection.open(s.port);
    try {
      await enterTransmission(raw);
      const model = Buffer.alloc(sizeBytes);
      const pieces: Buffer[] = [];
      const count = 6 + random.int(6);
      for (let i = 0; i < count; i++) {
        const large = random.chance(0.7);
        const length = large ? payloadPoolBytesMin + random.int(300 * 1024) : 1 + random.int(8000);
        const offset = random.int(sizeBytes - length);
        const data = random.bytes(length);
        data.copy(model, offset);
        pieces.push(encodeRequestHeader({ flags: 0, type: NbdCommand.WRITE, handle: BigInt(i + 1), offsetBytes: offset, lengthBytes: length }), data);
      }
      const stream = Buffer.concat(pieces);
      const allocatedBefore = payloadPool.stats().allocated + payloadPool.stats().reused;
      for (let at = 0; at < stream.length; ) {
        const n = 1 + random.int(random.chance(0.5) ? 100 : 200_000);
        raw.write(stream.subarray(at, at + n));
        at += n;
        if (random.chance(0.5)) await new Promise((resolve) => setImmediate(resolve));
      }
      const replies = await raw.read(16 * count);
      for (let i = 0; i < count; i++) assert.equal(replies.readUInt32BE(16 * i + 4), 0, `seed ${seed}: write ${i + 1} failed`);
      assert.ok(payloadPool.stats().allocated + payloadPool.stats().reused > allocatedBefore, `seed ${seed}: no payload came from the pool`);
      const image = await s.backend.read(0, sizeBytes);
      assert.ok(image.equals(model), `seed ${seed}: the device differs from the writes`);
    } finally {
      raw.destroy();
      await s.close();
    }
  }
});

test('a large payload goes from the socket straight into its buffer: all but what the header read brought is read in place', async () => {
  const random = new Random(7);
  const s = await startMemServer(sizeBytes);
  const raw = await RawConnection.open(s.port);
  try {
    await enterTransmission(raw);
    const model = Buffer.alloc(sizeBytes);
    const writes = [2 * 1024 * 1024, 512 * 1024, 1024 * 1024 - 4096];
    let offset = 0;
    const directBefore = s.server.payloadBytesReadDirect;
    for (const [i, length] of writes.entries()) {
      const data = random.bytes(length);
      data.copy(model, offset);
      raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.WRITE, handle: BigInt(i + 1), offsetBytes: offset, lengthBytes: length }));
      // The payload in seeded pieces, some of them waiting a turn of the event loop.
      for (let at = 0; at < length; ) {
        const n = 1 + random.int(300_000);
        raw.write(data.subarray(at, at + n));
        at += n;
        if (random.chance(0.5)) await new Promise((resolve) => setImmediate(resolve));
      }
      const reply = await raw.read(16);
      assert.equal(reply.readUInt32BE(4), 0, `write ${i + 1} failed`);
      offset += length;
    }
    // Each payload's first bytes may come in the shared buffer with its header; every read after it goes in place.
    const direct = s.server.payloadBytesReadDirect - directBefore;
    const total = writes.reduce((a, b) => a + b, 0);
    assert.ok(direct >= total - writes.length * socketReadBufferBytes, `only ${direct} of ${total} payload bytes were read in place`);
    assert.ok(direct <= total, `${direct} bytes read in place, more than the ${total} payload bytes`);
    assert.ok((await s.backend.read(0, sizeBytes)).equals(model), 'the device differs from the writes');
  } finally {
    raw.destroy();
    await s.close();
  }
});
