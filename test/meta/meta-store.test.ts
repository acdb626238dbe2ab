import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { ManualClock } from '../../src/core/clock.js';
import { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { FsStorage } from '../../src/storage/fs-storage.js';
import { MetaNode } from '../../src/meta/meta-node.js';
import { testSigningKey } from '../../src/meta/signing.js';
import { MetaStore } from '../../src/meta/meta-store.js';
import { encodeScopeFile, decodeScopeFile } from '../../src/meta/scope-file.js';
import { clusterScope, desiredKey, hostKey, primaryKey, resourceScope } from '../../src/meta/keys.js';
import { hostRecordValue } from '../../src/meta/host-record.js';
import { liveEntry, tombstone } from '../../src/meta/entry.js';

const startMs = 1_700_000_000_000;

async function populated(storage: MemStorage | FsStorage): Promise<MetaNode> {
  const node = new MetaNode({ host: 'a', clock: new ManualClock(startMs), random: new Random(1), signingKey: testSigningKey('a') });
  const store = new MetaStore(storage);
  for (const ready of [
    node.set(hostKey('a'), hostRecordValue({ address: '127.0.0.1:7777', resources: ['r1'] })),
    node.set(primaryKey('r1'), 'a'),
    node.set(desiredKey('r1', 'a'), { attach: true, connect: true }),
    node.set('cluster/note/a', 'ünïcødé ✓'),
    node.delete('cluster/note/a'),
  ]) {
    await store.persist(node, ready.persist);
  }
  return node;
}

function isCorrupt(name: string) {
  return (e: unknown): boolean => e instanceof MarsError && e.code === 'META_CORRUPT' && e.message.includes(name);
}

void test('a node restarted from its files holds the same state, and its next write is newer even if the clock went back', async () => {
  const storage = new MemStorage();
  const node = await populated(storage);
  const { snapshot, ignored } = await new MetaStore(storage).load();
  assert.deepEqual(ignored, []);
  assert.deepEqual([...snapshot.keys()].sort(), [clusterScope, resourceScope('r1')]);
  const restarted = new MetaNode({ host: 'a', clock: new ManualClock(startMs - 3_600_000), random: new Random(2), signingKey: testSigningKey('a'), snapshot });
  for (const scope of node.scopes()) assert.equal(restarted.digest(scope), node.digest(scope));
  assert.deepEqual(restarted.membersOf('r1'), new Set(['a']));
  restarted.set(primaryKey('r1'), 'again');
  assert.ok(restarted.entry(primaryKey('r1'))!.lamport > node.entry(primaryKey('r1'))!.lamport);
});

void test('files are readable JSON, one per scope, written atomically through the Storage interface', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mars-meta-'));
  try {
    await populated(await FsStorage.create(dir));
    const text = await readFile(join(dir, 'resource-r1.json'), 'utf8');
    const doc = JSON.parse(text) as { format: string; scope: string; entries: Record<string, { value: unknown }> };
    assert.equal(doc.format, 'mars-metadata');
    assert.equal(doc.scope, 'resource/r1');
    assert.deepEqual(doc.entries['resource/r1/desired/a']?.value, { attach: true, connect: true });
    assert.match(text, /\n {2}"crc32c": "[0-9a-f]{8}"\n\}\n$/);
    await writeFile(join(dir, '.cluster.json.123.0.tmp'), 'half a file');
    await writeFile(join(dir, 'notes.txt'), 'an operator left this');
    const { snapshot, ignored } = await new MetaStore(new FsStorage(dir)).load();
    assert.equal(snapshot.size, 2);
    assert.deepEqual(ignored, ['notes.txt']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('every single-bit flip of a metadata file is reported with the file name, never taken as empty', () => {
  const entries = new Map([
    [primaryKey('r1'), liveEntry('a', 5n, 'a')],
    [desiredKey('r1', 'b'), tombstone(7n, 'b', ['a', 'b'])],
  ]);
  const bytes = encodeScopeFile(resourceScope('r1'), entries);
  assert.deepEqual(decodeScopeFile('resource-r1.json', bytes).entries, entries);
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    const copy = Buffer.from(bytes);
    copy[bit >> 3]! ^= 1 << (bit & 7);
    assert.throws(() => decodeScopeFile('resource-r1.json', copy), isCorrupt('resource-r1.json'), `bit ${bit}`);
  }
});

void test('a truncated, empty, misplaced or future-version file stops the load, naming each bad file', async () => {
  const storage = new MemStorage();
  await populated(storage);
  const good = (await storage.readAll('resource-r1.json'))!;
  await storage.writeAtomic('resource-r2.json', good.subarray(0, good.length - 20));
  await storage.writeAtomic('resource-r3.json', Buffer.alloc(0));
  await storage.writeAtomic('resource-r4.json', good); // holds r1's scope
  await assert.rejects(new MetaStore(storage).load(), (e: unknown) => {
    return isCorrupt('resource-r2.json')(e) && isCorrupt('resource-r3.json')(e) && isCorrupt('resource-r4.json')(e);
  });
  // A valid checksum over an unknown version is refused too.
  const text = good.toString('utf8').replace('"version": 1', '"version": 2');
  const body = text.slice(0, text.lastIndexOf(',\n  "crc32c"'));
  const resealed = `${body},\n  "crc32c": "${crc32c(Buffer.from(body)).toString(16).padStart(8, '0')}"\n}\n`;
  assert.throws(() => decodeScopeFile('resource-r1.json', Buffer.from(resealed)), (e: unknown) => isCorrupt('resource-r1.json')(e) && (e as Error).message.includes('version 2'));
});

void test('an entry of an owned key written by another host in a file is corrupt', () => {
  const entries = new Map([[desiredKey('r1', 'b'), liveEntry(1, 5n, 'a')]]);
  assert.throws(() => decodeScopeFile('resource-r1.json', encodeScopeFile(resourceScope('r1'), entries)), isCorrupt('resource-r1.json'));
});

void test('a scope without entries has no file', async () => {
  const storage = new MemStorage();
  const store = new MetaStore(storage);
  await store.save(resourceScope('r9'), new Map([[primaryKey('r9'), liveEntry('a', 1n, 'a')]]));
  assert.ok(await storage.exists('resource-r9.json'));
  await store.save(resourceScope('r9'), new Map());
  assert.equal(await storage.exists('resource-r9.json'), false);
});
