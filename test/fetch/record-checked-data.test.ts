import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { decodeFetchMessage, encodeFetchMessage, FetchFeature, FetchFrameType, fetchDataHeaderBytes, LocalCopies, type FetchMessage } from '../../src/fetch/index.js';
import { encodeFrame, FrameDecoder, frameHeaderBytes } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { assertCopiesEqual, dialer, newClient, Primary, Server } from './helpers.js';
import { LoopbackProxy } from './proxy.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 30_000;
const fcSeed = Number(process.env['FC_SEED'] ?? 1);

/**
 * A loopback proxy between a fetch client and its server that forwards the server's bytes
 * verbatim (parsing only the frame headers, to record each frame's checked field) and can
 * flip one bit in the chunk of the n-th DATA frame; client frames are passed on, the HELLO
 * stripped of its feature ids when `olderClient` is set (what a client from before the
 * feature sends).
 */
class TapProxy extends LoopbackProxy {
  /** The checked field (bytes 6..7) of every server frame, by frame type. */
  readonly checked: { type: number; checkedBytes: number }[] = [];
  flipInDataFrame: number | undefined;
  flipped = 0;

  private constructor(readonly olderClient: boolean) {
    super();
  }

  static async listen(targetPort: number, olderClient: boolean): Promise<TapProxy> {
    const proxy = new TapProxy(olderClient);
    await proxy.listenOn(() => targetPort);
    return proxy;
  }

  protected forward(downstream: Socket, upstream: Socket): void {
    const fromClient = new FrameDecoder();
    downstream.on('data', (chunk: Buffer) => {
      for (const frame of fromClient.push(chunk)) upstream.write(encodeFrame(frame.type, this.olderClient && frame.type === FetchFrameType.hello ? withoutFeatures(frame.payload) : frame.payload));
    });
    let pending = Buffer.alloc(0);
    let dataFrames = 0;
    upstream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= frameHeaderBytes && pending.length >= frameHeaderBytes + pending.readUInt32LE(8)) {
        const length = frameHeaderBytes + pending.readUInt32LE(8);
        const frame = Buffer.from(pending.subarray(0, length));
        pending = pending.subarray(length);
        const type = frame.readUInt8(5);
        this.checked.push({ type, checkedBytes: frame.readUInt16LE(6) });
        if (type === FetchFrameType.data && this.flipInDataFrame !== undefined && dataFrames++ === this.flipInDataFrame) {
          // A bit of the first record's payload: after the frame header, the DATA header and the record header.
          frame[frameHeaderBytes + fetchDataHeaderBytes + 64 + 7]! ^= 0x01;
          this.flipInDataFrame = undefined;
          this.flipped++;
        }
        downstream.write(frame);
      }
    });
  }
}

/** A HELLO payload as a client that predates the feature list sends it: compression ids only. */
function withoutFeatures(payload: Buffer): Buffer {
  const count = payload.readUInt8(8);
  const ids = [...payload.subarray(9, 9 + count)].filter((id) => id < FetchFeature.recordCheckedData);
  return Buffer.concat([payload.subarray(0, 8), Buffer.from([ids.length, ...ids])]);
}

async function primaryWithLog(seed: number): Promise<Primary> {
  const primary = await Primary.open('alpha', seed);
  for (let round = 0; round < 8; round++) await primary.append(40, 64 * 1024);
  await primary.sync();
  return primary;
}

async function fetchThrough(primary: Primary, olderClient: boolean, flipInDataFrame?: number): Promise<{ proxy: TapProxy; server: Server }> {
  const server = await Server.listen('alpha', primary.source);
  const proxy = await TapProxy.listen(server.port, olderClient);
  proxy.flipInDataFrame = flipInDataFrame;
  const local = new MemStorage();
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', proxy), 21);
  try {
    client.start();
    await waitFor('the copy reaches the durable end', () => client.status().localBytes === primary.durableBytes(), 20_000, 5);
    await assertCopiesEqual(primary.storage, local, 'after fetching');
  } finally {
    await client.stop();
    await server.close();
    await proxy.close();
  }
  return { proxy, server };
}

void test('DATA to a client that verifies the records itself is checksummed over its DATA header only, and the copy arrives exact', { timeout: testTimeoutMs }, async () => {
  const primary = await primaryWithLog(31);
  const { proxy } = await fetchThrough(primary, false);
  const data = proxy.checked.filter((f) => f.type === FetchFrameType.data);
  assert.ok(data.length >= 5, `${data.length} DATA frames`);
  assert.deepEqual(new Set(data.map((f) => f.checkedBytes)), new Set([fetchDataHeaderBytes]));
  assert.deepEqual(
    proxy.checked.filter((f) => f.type !== FetchFrameType.data && f.checkedBytes !== 0),
    [],
    'every other frame is checked whole',
  );
});

void test('a client that does not list the feature (an older one) gets every frame checked whole, as a version-1 decoder requires', { timeout: testTimeoutMs }, async () => {
  const primary = await primaryWithLog(32);
  const { proxy } = await fetchThrough(primary, true);
  assert.ok(proxy.checked.filter((f) => f.type === FetchFrameType.data).length >= 5);
  assert.deepEqual(
    proxy.checked.filter((f) => f.checkedBytes !== 0),
    [],
    'bytes 6..7 of every frame are zero',
  );
});

void test('a bit flipped in the unchecked chunk of a DATA frame is caught by the record checks and the range is fetched again', { timeout: testTimeoutMs }, async () => {
  const primary = await primaryWithLog(33);
  const { proxy, server } = await fetchThrough(primary, false, 1);
  assert.equal(proxy.flipped, 1);
  assert.deepEqual(new Set(proxy.checked.filter((f) => f.type === FetchFrameType.data).map((f) => f.checkedBytes)), new Set([fetchDataHeaderBytes]), 'no frame checksum could catch it');
  assert.ok(server.streamStarts.length >= 2, `the stream started again after the damage (${server.streamStarts.length} starts)`);
  assert.ok(server.streamStarts.at(-1)!.fromOffsetBytes > 0, 'from the verified end, not from the start');
});

void test('HELLO features round-trip beside compressions; feature ids a host does not know are ignored', () => {
  fc.assert(
    fc.property(fc.subarray(['deflate', 'brotli', 'lz4'] as const), fc.boolean(), fc.array(fc.integer({ min: 0x81, max: 0xff }), { maxLength: 4 }), (compressions, feature, unknownIds) => {
      const m: FetchMessage = feature ? { type: 'hello', requestId: 0, compressions: [...compressions], features: ['recordCheckedData'] } : { type: 'hello', requestId: 0, compressions: [...compressions] };
      const { type, payload } = encodeFetchMessage(m);
      assert.deepEqual(decodeFetchMessage(type, payload), m);
      const count = payload.readUInt8(8);
      const future = Buffer.concat([payload.subarray(0, 8), Buffer.from([count + unknownIds.length, ...payload.subarray(9), ...unknownIds])]);
      assert.deepEqual(decodeFetchMessage(type, future), m);
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});
