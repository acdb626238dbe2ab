import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MarsError } from '../../src/core/errors.js';
import { liveEntry, tombstone } from '../../src/meta/entry.js';
import { decodeMetaMessage, encodeMetaMessage } from '../../src/meta/message-codec.js';
import { batchEntriesMax } from '../../src/meta/limits.js';
import type { KeyedEntry, MetaMessage } from '../../src/meta/messages.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const hostArb = fc.constantFrom('a', 'b', 'host-7', 'x.y_z');
const stampArb = fc.bigInt(0n, (1n << 64n) - 1n);
const hashArb = fc.bigInt(0n, (1n << 64n) - 1n);
const valueArb = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);

const keyedArb: fc.Arbitrary<KeyedEntry> = fc.oneof(
  fc.record({ owner: hostArb, lamport: stampArb, value: valueArb }).map(({ owner, lamport, value }) => ({ key: `resource/r1/desired/${owner}`, entry: liveEntry(JSON.parse(JSON.stringify(value ?? null)) as never, lamport, owner) })),
  fc.record({ owner: hostArb, lamport: stampArb, seen: fc.subarray(['a', 'b', 'c']) }).map(({ owner, lamport, seen }) => ({ key: 'cluster/policy', entry: tombstone(lamport, owner, [owner, ...seen]) })),
  fc.record({ owner: hostArb, lamport: stampArb, sig: fc.uint8Array({ minLength: 64, maxLength: 64 }) }).map(({ owner, lamport, sig }) => ({
    key: `cluster/note/${owner}`,
    entry: { ...liveEntry('signed', lamport, owner), sig: Buffer.from(sig).toString('base64') },
  })),
);

const messageArb: fc.Arbitrary<MetaMessage> = fc.oneof(
  fc.record({ sentLamport: stampArb, entries: fc.array(keyedArb, { maxLength: 5 }) }).map((m) => ({ type: 'push' as const, ...m })),
  fc.record({ sentLamport: stampArb, scopes: fc.array(fc.record({ scope: fc.constantFrom('cluster', 'resource/r1'), root: hashArb, count: fc.nat(1000) }), { maxLength: 4 }) }).map((m) => ({ type: 'digest' as const, ...m })),
  fc.record({ sentLamport: stampArb, sums: fc.array(hashArb, { minLength: 64, maxLength: 64 }), items: fc.array(fc.record({ key: fc.constantFrom('cluster/policy', 'cluster/host/a'), hash: hashArb }), { maxLength: 4 }) }).map((m) => ({
    type: 'summary' as const,
    sentLamport: m.sentLamport,
    scopes: [
      { scope: 'cluster', kind: 'buckets' as const, sums: m.sums },
      { scope: 'cluster', kind: 'keys' as const, buckets: [0, 5, 63], items: m.items },
    ],
  })),
  fc.record({ sentLamport: stampArb, entries: fc.array(keyedArb, { maxLength: 3 }), want: fc.array(fc.constantFrom('cluster/policy', 'resource/r1/primary'), { maxLength: 3 }), purged: fc.array(fc.record({ key: fc.constant('cluster/policy'), lamport: stampArb }), { maxLength: 2 }) }).map((m) => ({
    type: 'delta' as const,
    ...m,
  })),
);

function badMessage(e: unknown): boolean {
  return e instanceof MarsError && e.code === 'META_BAD_MESSAGE';
}

void test('metadata messages round-trip through the wire codec', () => {
  fc.assert(
    fc.property(messageArb, (message) => {
      assert.deepEqual(decodeMetaMessage(encodeMetaMessage(message)), message);
    }),
    { seed: fcSeed, numRuns: 500 },
  );
});

void test('garbage and malformed messages are refused as META_BAD_MESSAGE', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      assert.throws(() => decodeMetaMessage(Buffer.from(bytes)), badMessage);
    }),
    { seed: fcSeed, numRuns: 300 },
  );
  const stamp = '"sentLamport":"1"';
  for (const text of [
    `{"type":"gossip",${stamp}}`,
    `{"type":"digest","sentLamport":"-1","scopes":[]}`,
    `{"type":"digest",${stamp},"scopes":[{"scope":"resource/../x","root":"0000000000000000","count":0}]}`,
    `{"type":"push",${stamp},"entries":[{"key":"resource/r1/desired/b","value":1,"lamport":"5","owner":"a","deleted":false}]}`,
    `{"type":"push",${stamp},"entries":[{"key":"cluster/policy","value":1,"lamport":"5","owner":"a","deleted":true,"seenBy":["a"]}]}`,
    `{"type":"summary",${stamp},"scopes":[{"scope":"cluster","buckets":["00"]}]}`,
  ]) {
    assert.throws(() => decodeMetaMessage(Buffer.from(text)), badMessage, text);
  }
});

void test('a message with more entries than batchEntriesMax is refused', () => {
  const entries = Array.from({ length: batchEntriesMax + 1 }, (_, i) => ({ key: 'cluster/policy', value: i, lamport: '1', owner: 'a', deleted: false }));
  assert.throws(() => decodeMetaMessage(Buffer.from(JSON.stringify({ type: 'push', sentLamport: '1', entries }))), badMessage);
});

void test('an entry signature that is not 64 bytes of base64 is refused at the edge', () => {
  const entry = (sig: unknown): Buffer => Buffer.from(JSON.stringify({ type: 'push', sentLamport: '1', entries: [{ key: 'cluster/note/a', value: 1, lamport: '1', owner: 'a', deleted: false, sig }] }));
  assert.equal((decodeMetaMessage(entry(Buffer.alloc(64, 1).toString('base64'))) as { entries: readonly KeyedEntry[] }).entries[0]!.entry.sig, Buffer.alloc(64, 1).toString('base64'));
  for (const bad of [Buffer.alloc(63).toString('base64'), Buffer.alloc(65).toString('base64'), 'not base64!', 7, null]) {
    assert.throws(() => decodeMetaMessage(entry(bad)), (err: unknown) => err instanceof MarsError && err.code === 'META_BAD_MESSAGE' && /bad signature/.test(err.message));
  }
});
