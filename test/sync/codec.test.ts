import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeSyncMessage, encodeSyncMessage, SyncFrameType, syncLimits, type SyncMessage } from '../../src/sync/index.js';
import { blocksPayloadInPlace } from '../../src/sync/codec.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const position = { logNumber: 7, logHost: 'alpha-1.example', offsetBytes: 123_456_789, nextSeq: 2n ** 60n + 5n };
const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
const offset = fc.nat(2 ** 30).map((n) => n * syncLimits.blockBytes);
const bytes = (min: number, max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const positionArb = fc.record({ logNumber: fc.integer({ min: 1, max: 2 ** 32 - 1 }), logHost: name, offsetBytes: fc.nat(Number.MAX_SAFE_INTEGER), nextSeq: u64 });

const messageArb: fc.Arbitrary<SyncMessage> = fc.oneof(
  fc.record({ kind: fc.constant('start' as const), resource: name, sizeBytes: fc.constant(2 ** 43), resumeFromBytes: offset }),
  fc.record({ kind: fc.constant('accept' as const), sizeBytes: fc.nat(Number.MAX_SAFE_INTEGER), digestSeed: u64, startPosition: positionArb }),
  fc.record({ kind: fc.constant('digests' as const), offsetBytes: offset, digests: fc.integer({ min: 1, max: syncLimits.rangeBlocksMax }).chain((n) => bytes(8 * n, 8 * n)) }),
  fc.record({ kind: fc.constant('copy' as const), offsetBytes: offset, blocks: fc.integer({ min: 1, max: syncLimits.rangeBlocksMax }) }),
  fc.record({ kind: fc.constant('blocks' as const), offsetBytes: offset, data: bytes(1, 3 * syncLimits.blockBytes) }),
  fc.record({ kind: fc.constant('zeroes' as const), offsetBytes: offset, lengthBytes: fc.integer({ min: 1, max: syncLimits.rangeBytesMax }) }),
  fc.integer({ min: 1, max: syncLimits.rangeBlocksMax }).chain((blocks) =>
    fc.record({ kind: fc.constant('range-done' as const), offsetBytes: offset, blocks: fc.constant(blocks), differingBlocks: fc.integer({ min: 0, max: blocks }) }),
  ),
  fc.constant({ kind: 'finish' as const }),
  fc.record({ kind: fc.constant('finished' as const), endPosition: positionArb }),
  fc.record({ kind: fc.constant('error' as const), reason: fc.constantFrom('badMessage' as const, 'unknownResource' as const, 'sizeMismatch' as const, 'busy' as const), text: fc.string({ maxLength: 50 }) }),
);

void test('every sync message survives encoding and decoding unchanged', () => {
  fc.assert(
    fc.property(messageArb, (message) => {
      assert.deepEqual(decodeSyncMessage(encodeSyncMessage(message)), message);
    }),
    { seed: fcSeed, numRuns: 2000 },
  );
});

void test('every truncation and every extra byte of a sync message is refused as SYNC_BAD_MESSAGE', () => {
  fc.assert(
    fc.property(messageArb, fc.nat(), (message, cut) => {
      const frame = encodeSyncMessage(message);
      if (frame.payload.length > 0 && message.kind !== 'blocks' && message.kind !== 'error') {
        const short = frame.payload.subarray(0, cut % frame.payload.length);
        assert.throws(() => decodeSyncMessage({ type: frame.type, payload: short }), { code: 'SYNC_BAD_MESSAGE' });
      }
      if (message.kind !== 'blocks' && message.kind !== 'digests') {
        assert.throws(() => decodeSyncMessage({ type: frame.type, payload: Buffer.concat([frame.payload, Buffer.from([0])]) }), { code: 'SYNC_BAD_MESSAGE' });
      }
    }),
    { seed: fcSeed, numRuns: 2000 },
  );
});

void test('the layout of START, ACCEPT and DIGESTS is the one docs/sync.md shows', () => {
  const start = encodeSyncMessage({ kind: 'start', resource: 'r0', sizeBytes: 0x1_0000_0000, resumeFromBytes: 4096 });
  assert.equal(start.type, 0x30);
  assert.equal(start.payload.toString('hex'), '01010000' + '0000000001000000' + '0010000000000000' + '02' + Buffer.from('r0').toString('hex'));
  const accept = encodeSyncMessage({ kind: 'accept', sizeBytes: 8192, digestSeed: 0x0102n, startPosition: position });
  assert.equal(accept.type, 0x31);
  assert.equal(accept.payload.subarray(0, 20).toString('hex'), '01000000' + '0020000000000000' + '0201000000000000');
  assert.equal(accept.payload.readUInt32LE(20), 7);
  assert.equal(accept.payload.readBigUInt64LE(24), 123_456_789n);
  assert.equal(accept.payload.readBigUInt64LE(32), 2n ** 60n + 5n);
  assert.equal(accept.payload.subarray(40).toString('latin1'), '\x0falpha-1.example');
  const digests = encodeSyncMessage({ kind: 'digests', offsetBytes: 4096, digests: Buffer.alloc(16, 0xee) });
  assert.equal(digests.type, 0x32);
  assert.equal(digests.payload.subarray(0, 12).toString('hex'), '0010000000000000' + '0200' + '0000');
  assert.equal(digests.payload.length, 12 + 16);
});

void test('malformed sync messages are refused with a reason', () => {
  const refused = (type: number, payload: Buffer, why: RegExp): void => assert.throws(() => decodeSyncMessage({ type, payload }), (err: Error & { code?: string }) => err.code === 'SYNC_BAD_MESSAGE' && why.test(err.message));
  const digests = (offsetBytes: number, blocks: number, digestBytes: number): Buffer => {
    const b = Buffer.alloc(12 + digestBytes);
    b.writeBigUInt64LE(BigInt(offsetBytes), 0);
    b.writeUInt16LE(blocks, 8);
    return b;
  };
  refused(SyncFrameType.digests, digests(0, 4, 24), /carries 24 bytes of digests, not 32/);
  refused(SyncFrameType.digests, digests(0, 0, 0), /for 0 blocks/);
  refused(SyncFrameType.digests, digests(0, 257, 257 * 8), /for 257 blocks/);
  refused(SyncFrameType.digests, digests(100, 1, 8), /not a multiple of 4096/);
  const reserved = digests(0, 1, 8);
  reserved.writeUInt16LE(1, 10);
  refused(SyncFrameType.digests, reserved, /reserved/);
  refused(0x3c, Buffer.alloc(0), /unknown frame type 0x3c/);
  refused(0x21, Buffer.alloc(0), /unknown frame type 0x21/);
  const huge = Buffer.alloc(12);
  huge.writeBigUInt64LE(2n ** 60n, 0);
  refused(SyncFrameType.zeroes, huge, /too large/);
  const start = encodeSyncMessage({ kind: 'start', resource: 'r0', sizeBytes: 8192, resumeFromBytes: 0 }).payload;
  const wrongVersion = Buffer.from(start);
  wrongVersion.writeUInt8(9, 0);
  refused(SyncFrameType.start, wrongVersion, /version 9/);
  const resumePastEnd = Buffer.from(start);
  resumePastEnd.writeUInt8(1, 1);
  resumePastEnd.writeBigUInt64LE(16384n, 12);
  refused(SyncFrameType.start, resumePastEnd, /past the end/);
  const badName = Buffer.from(start);
  badName.write('-', start.length - 2, 'latin1');
  refused(SyncFrameType.start, badName, /not a valid name/);
  refused(SyncFrameType.rangeDone, Buffer.from('00000000000000000400050000', 'hex').subarray(0, 12), /RANGE_DONE for 5 of 4 blocks/);
  refused(SyncFrameType.error, Buffer.from([99, 0]), /unknown reason 99/);
  refused(SyncFrameType.blocks, Buffer.alloc(8), /BLOCKS of 0 bytes/);
  refused(SyncFrameType.blocks, Buffer.alloc(8 + syncLimits.rangeBytesMax + 1), /BLOCKS of/);
});

void test('a BLOCKS payload built in place decodes like an encoded one', () => {
  const buffer = Buffer.alloc(8 + 3 * 4096, 7);
  const payload = blocksPayloadInPlace(buffer, 8 + 4096, 8192, 1_048_576 + 4096);
  assert.deepEqual(decodeSyncMessage({ type: SyncFrameType.blocks, payload }), { kind: 'blocks', offsetBytes: 1_048_576 + 4096, data: Buffer.alloc(8192, 7) });
  assert.throws(() => blocksPayloadInPlace(buffer, 4, 4096, 0), /no room/);
});
