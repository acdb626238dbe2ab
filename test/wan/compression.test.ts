/**
 * Compression of log shipping (src/compress, the fetch channel's HELLO and DATA_Z):
 * codecs round-trip, the messages round-trip, the pair picks the sender's best common
 * algorithm, and over real TCP in-process a compressible log travels compressed, random
 * data travels plain, a peer without a common compression gets plain DATA, and a
 * compressed frame damaged under a valid frame checksum is refused and fetched again,
 * never applied.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Random } from '../../src/core/random.js';
import { availableCompressions, Compressor, decompress, pickCompression, compressionNames, type CompressionName } from '../../src/compress/index.js';
import { decodeFetchMessage, encodeFetchMessage, LocalCopies, type FetchMessage } from '../../src/fetch/index.js';
import { encodeFetchMessageParts } from '../../src/fetch/protocol.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { assertCopiesEqual, dialer, newClient, Primary, Server } from '../fetch/helpers.js';
import { waitFor } from '../support/wait.js';
import { FaultyProxy } from '../fetch/proxy.js';
import { decodeSyncMessage, encodeSyncMessage, type SyncMessage } from '../../src/sync/codec.js';
import { SyncSourceSession, SyncTarget } from '../../src/sync/index.js';
import { deviceWith, SourceHost, sourceResource } from '../sync/helpers.js';

const can = availableCompressions();

/** Half random, half zeroes per 4 KiB block: what fio's buffer_compress_percentage=50 writes. */
function halfCompressible(random: Random, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += 4096) random.bytes(Math.min(2048, bytes - at)).copy(out, at);
  return out;
}

void test('this host can do at least the built-in compressions, best first', () => {
  assert.ok(can.includes('deflate') && can.includes('brotli'), can.join(','));
  assert.deepEqual(can, ['lz4', 'brotli', 'deflate'].filter((n) => can.includes(n as CompressionName)));
});

void test('every codec round-trips; a chunk that inflates to another length or not at all is refused', async () => {
  for (const name of can) {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 8192, max: 200_000 }), async (seed, bytes) => {
        const data = halfCompressible(new Random(seed), bytes);
        const packed = await new Compressor(name).compress(data);
        assert.ok(packed !== undefined && packed.length < data.length, `${name} compresses half-zero data`);
        assert.ok((await decompress(name, packed, data.length)).equals(data));
        await assert.rejects(decompress(name, packed, data.length - 1), /does not|decompresses to|size/);
        const damaged = Buffer.from(packed);
        damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
        const result = await decompress(name, damaged, data.length).catch(() => undefined);
        assert.ok(result === undefined || !result.equals(data) || result.length === data.length, 'damage never yields a wrong length');
      }),
      { numRuns: 10 },
    );
  }
});

void test('random data is sent plain, and the compressor then stops trying for a while', async () => {
  const c = new Compressor(can[0]!);
  const random = new Random(3);
  assert.equal(await c.compress(random.bytes(64 * 1024)), undefined);
  assert.equal(c.missed, 1);
  assert.equal(await c.compress(halfCompressible(random, 64 * 1024)), undefined, 'skipped right after a miss');
  assert.equal(c.missed, 1);
});

void test('the pair uses the first of the sender\'s preferences the receiver has, else none', () => {
  const names = fc.subarray(compressionNames.filter((n) => n !== 'none'));
  fc.assert(
    fc.property(names, names, (ours, theirs) => {
      const picked = pickCompression(ours, theirs);
      const common = ours.filter((n) => theirs.includes(n));
      assert.equal(picked, common[0] ?? 'none');
    }),
  );
});

void test('HELLO, HELLO_REPLY and DATA_Z round-trip; unknown algorithms in a HELLO are ignored', () => {
  const messages: FetchMessage[] = [
    { type: 'hello', requestId: 0, compressions: ['zstd', 'deflate'] },
    { type: 'hello-reply', requestId: 0, compression: 'lz4' },
    { type: 'hello-reply', requestId: 0, compression: 'none' },
    { type: 'data-z', requestId: 7, offsetBytes: 4096, durableBytes: 9000, compression: 'brotli', rawBytes: 4000, data: Buffer.from('compressed') },
  ];
  for (const m of messages) {
    const { type, payload } = encodeFetchMessage(m);
    assert.deepEqual(decodeFetchMessage(type, payload), m);
    const parts = encodeFetchMessageParts(m);
    assert.deepEqual(decodeFetchMessage(parts.type, Buffer.concat(parts.parts)), m);
  }
  const { type, payload } = encodeFetchMessage({ type: 'hello', requestId: 0, compressions: ['zstd'] });
  const future = Buffer.concat([payload.subarray(0, 8), Buffer.from([2, 99, 4])]);
  assert.deepEqual(decodeFetchMessage(type, future), { type: 'hello', requestId: 0, compressions: ['zstd'] });
  const z = encodeFetchMessage(messages[3]!);
  const unknown = Buffer.from(z.payload);
  unknown[24] = 99;
  assert.throws(() => decodeFetchMessage(z.type, unknown), /unknown compression|no known compression/);
});

async function compressiblePrimary(seed: number, records: number): Promise<Primary> {
  const primary = await Primary.open('alpha', seed);
  const random = new Random(seed);
  for (let i = 0; i < records; i++) {
    await primary.writer.append({ kind: 'write', lamport: BigInt(i + 1), offsetBytes: random.int(64) * 4096, payload: halfCompressible(random, 64 * 1024) });
  }
  await primary.sync();
  return primary;
}

void test('a compressible log travels compressed and arrives exact; a client offering nothing in common gets plain DATA', async () => {
  const primary = await compressiblePrimary(11, 64);
  for (const [serverSide, clientSide, expect] of [
    [can, can, can[0]],
    [['deflate'], can, 'deflate'],
    [can, [], 'none'],
    [['brotli'], ['deflate'], 'none'],
  ] as [CompressionName[], CompressionName[], CompressionName][]) {
    const server = await Server.listen('alpha', primary.source, 0, serverSide);
    const local = new MemStorage();
    const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', server), 12, { compressions: clientSide });
    try {
      client.start();
      await waitFor('the copy is complete', () => client.status().localBytes === primary.durableBytes(), 10_000, 5);
      assert.equal(client.status().compression, expect, `server ${serverSide.join(',')} / client ${clientSide.join(',')}`);
      await assertCopiesEqual(primary.storage, local, `with ${expect}`);
    } finally {
      await client.stop();
      await server.close();
    }
  }
});

void test('a compressed frame damaged under a valid frame checksum is refused and fetched again, never applied', async () => {
  const primary = await compressiblePrimary(13, 128);
  const server = await Server.listen('alpha', primary.source, 0, can);
  const proxy = await FaultyProxy.listen(() => server.port);
  proxy.damages.push({ kind: 'in-data', atDataFrame: 1 });
  const local = new MemStorage();
  const closes: string[] = [];
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', proxy), 14, {
    compressions: can,
    onStatus: (s) => {
      if (s.state === 'source-unreachable' && s.error !== undefined) closes.push(s.error.code);
    },
  });
  try {
    client.start();
    await waitFor('the copy is complete', () => client.status().localBytes === primary.durableBytes() && proxy.damages.length === 0, 20_000, 5);
    assert.equal(proxy.damaged, 1);
    assert.ok(closes.length >= 1, `the link was refused: ${closes.join(', ')}`);
    const starts = server.streamStarts.map((s) => s.fromOffsetBytes);
    assert.ok(starts.length >= 2 && starts[1]! > 0, `fetched again from the verified end: ${starts.join(', ')} (${closes.join(', ')})`);
    assert.equal(client.status().compression, can[0], 'the new link is compressed again');
    await assertCopiesEqual(primary.storage, local, 'after a damaged compressed frame');
  } finally {
    await client.stop();
    await proxy.close();
    await server.close();
  }
});

void test('sync: HELLO and BLOCKS_Z round-trip; a compressible device syncs compressed and exact, a random one plain', async () => {
  const hello: SyncMessage = { kind: 'hello', compressions: ['lz4', 'deflate'] };
  assert.deepEqual(decodeSyncMessage(encodeSyncMessage(hello)), hello);
  const z: SyncMessage = { kind: 'blocks-z', offsetBytes: 8192, compression: 'deflate', rawBytes: 8192, data: Buffer.from('packed') };
  assert.deepEqual(decodeSyncMessage(encodeSyncMessage(z)), z);
  const size = 8 * 1024 * 1024;
  const random = new Random(21);
  // A source whose lz4 threads are still starting sends its first ranges plain while the
  // link is idle (coldCompressorPlainQueuedBytesMax): start them first, as a running daemon has.
  const warming = new Compressor(can[0]!);
  warming.warmUp();
  await waitFor('the compressor warm', () => warming.warm, 10_000, 1);
  for (const [label, image, expect] of [
    ['half-compressible', halfCompressible(random, size), can[0]],
    ['random', random.bytes(size), undefined],
  ] as [string, Buffer, CompressionName | undefined][]) {
    const sourceStorage = new MemStorage();
    const targetStorage = new MemStorage();
    const sourceDevice = await deviceWith(sourceStorage, 'device', image);
    const targetDevice = await deviceWith(targetStorage, 'device', Buffer.alloc(size, 1));
    const resource = sourceResource(sourceDevice, size);
    const sessions: SyncSourceSession[] = [];
    const host = await SourceHost.listen((link) => sessions.push(SyncSourceSession.serve(link, { resolve: () => resource, compressions: can })));
    const target = await SyncTarget.open({ resource: 'r0', device: targetDevice, storage: targetStorage, compressions: can });
    try {
      target.attach(await host.dial());
      await target.whenDone();
      assert.ok(targetStorage.image('device')!.equals(image), `${label}: the target equals the source`);
      const p = target.progress();
      assert.equal(p.compression, expect, `${label}: compression seen`);
      if (expect !== undefined) assert.ok(p.receivedBytes < size * 0.6, `${label}: ${p.receivedBytes} bytes received for ${size}`);
      else assert.ok(p.receivedBytes >= size, `${label}: sent plain`);
    } finally {
      await target.close();
      await host.close();
    }
  }
});
