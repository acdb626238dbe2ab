import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RecordStreamVerifier } from '../../src/fetch/index.js';
import { encodeRecord, type LogRecord } from '../../src/log/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

/** A stream of valid records as a writer lays them out (syncedBytes at most the record's own offset). */
function stream(payloadSizes: readonly number[], firstSeq = 1n): { bytes: Buffer; starts: number[] } {
  const parts: Buffer[] = [];
  const starts: number[] = [];
  let at = 0;
  payloadSizes.forEach((size, i) => {
    const record: LogRecord =
      size === 0
        ? { kind: 'trim', seq: firstSeq + BigInt(i), lamport: 5n, offsetBytes: i * 4096, lengthBytes: 4096 }
        : { kind: 'write', seq: firstSeq + BigInt(i), lamport: 5n, offsetBytes: i * 4096, payload: Buffer.alloc(size, i + 1) };
    starts.push(at);
    const encoded = encodeRecord(record, Math.floor(at / 2));
    parts.push(encoded);
    at += encoded.length;
  });
  return { bytes: Buffer.concat(parts), starts };
}

/** Pushes `bytes` in pieces ending at `cuts`; returns the concatenated verified output and the verifier. */
function pushInPieces(bytes: Buffer, cuts: readonly number[], verifier = new RecordStreamVerifier(0)): { out: Buffer; verifier: RecordStreamVerifier } {
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (verifier.fault !== undefined) break;
    out.push(...verifier.push(bytes.subarray(from, cut)).verified);
    from = cut;
  }
  return { out: Buffer.concat(out), verifier };
}

void test('a stream split anywhere verifies to the same records as the whole', () => {
  fc.assert(
    fc.property(fc.array(fc.nat({ max: 300 }), { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (sizes, rawCuts) => {
      const { bytes } = stream(sizes);
      const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const { out, verifier } = pushInPieces(bytes, cuts);
      assert.ok(out.equals(bytes));
      assert.equal(verifier.fault, undefined);
      assert.equal(verifier.verifiedEndBytes, bytes.length);
      assert.equal(verifier.recordsVerified, sizes.length);
      assert.equal(verifier.nextSeq, BigInt(sizes.length + 1));
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('a partial record is held, not passed on, until it is whole', () => {
  const { bytes, starts } = stream([100, 200]);
  const verifier = new RecordStreamVerifier(0);
  const first = verifier.push(bytes.subarray(0, starts[1]! + 10));
  assert.equal(first.verifiedBytes, starts[1]);
  assert.equal(Buffer.concat(first.verified).length, starts[1]);
  assert.equal(verifier.partialBytes, 10);
  assert.equal(verifier.receivedEndBytes, starts[1]! + 10);
  const rest = verifier.push(bytes.subarray(starts[1]! + 10));
  assert.equal(rest.verifiedBytes, bytes.length - starts[1]!);
  assert.equal(verifier.partialBytes, 0);
});

void test('every single-bit flip is caught at the start of the damaged record, and the records before it pass', () => {
  const { bytes, starts } = stream([16, 0, 24]);
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    const damaged = Buffer.from(bytes);
    const at = Math.floor(bit / 8);
    damaged[at] = (damaged[at] ?? 0) ^ (1 << (bit % 8));
    const recordStart = [...starts].reverse().find((s) => s <= at)!;
    const verifier = new RecordStreamVerifier(0);
    const { verified, fault } = verifier.push(damaged);
    assert.ok(fault !== undefined, `bit ${bit} missed`);
    assert.equal(fault.offsetBytes, recordStart, `bit ${bit}`);
    assert.ok(Buffer.concat(verified).equals(bytes.subarray(0, recordStart)));
  }
});

void test('a bit flip in a payload that arrives in pieces is caught however the stream is cut', () => {
  fc.assert(
    fc.property(fc.array(fc.nat({ max: 3000 }), { minLength: 1, maxLength: 6 }), fc.nat(), fc.array(fc.nat(), { maxLength: 12 }), (sizes, rawBit, rawCuts) => {
      const { bytes, starts } = stream(sizes);
      const bit = rawBit % (bytes.length * 8);
      const damaged = Buffer.from(bytes);
      const at = Math.floor(bit / 8);
      damaged[at] = (damaged[at] ?? 0) ^ (1 << (bit % 8));
      const recordStart = [...starts].reverse().find((s) => s <= at)!;
      const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const { out, verifier } = pushInPieces(damaged, cuts);
      assert.equal(verifier.fault?.offsetBytes, recordStart);
      assert.ok(out.equals(bytes.subarray(0, recordStart)));
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('a seq gap, a seq step back and a record claiming later durability are faults', () => {
  const { bytes } = stream([10, 10]);
  assert.equal(new RecordStreamVerifier(0, 2n).push(bytes).fault?.kind, 'seq-gap');
  const gap = Buffer.concat([stream([10]).bytes, stream([10], 3n).bytes]);
  const gapFault = new RecordStreamVerifier(0).push(gap).fault;
  assert.equal(gapFault?.kind, 'seq-gap');
  assert.equal(gapFault.offsetBytes, 74);
  // Started at a later offset, a record whose syncedBytes exceed its position cannot be genuine.
  const liar = encodeRecord({ kind: 'write', seq: 1n, lamport: 1n, offsetBytes: 0, payload: Buffer.alloc(4) }, 1000);
  assert.equal(new RecordStreamVerifier(500).push(liar).fault?.kind, 'bad-record');
  assert.equal(new RecordStreamVerifier(1000).push(liar).fault, undefined);
});
