/**
 * Log format version 1 is frozen: these bytes were written by the first release, and
 * every later version must read them the same way and write them byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeRecord, LogScanner, scanReadChunkBytesDefault, type LogRecord } from '../../src/log/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { repoRoot } from '../support/processes.js';

const expected: { record: LogRecord; syncedBytes: number; offsetBytes: number }[] = [
  { record: { kind: 'write', seq: 1n, lamport: 1795680000000000n, offsetBytes: 0, payload: Buffer.from('MARS log format version 1, record one.\n') }, syncedBytes: 0, offsetBytes: 0 },
  { record: { kind: 'trim', seq: 2n, lamport: 1795680000000001n, offsetBytes: 4096, lengthBytes: 8192 }, syncedBytes: 0, offsetBytes: 103 },
  { record: { kind: 'zeroes', seq: 3n, lamport: 1795680000000002n, offsetBytes: 1048576, lengthBytes: 4096 }, syncedBytes: 103, offsetBytes: 167 },
  { record: { kind: 'write', seq: 4n, lamport: 1795680000000003n, offsetBytes: 512, payload: Buffer.alloc(16, 0xa5) }, syncedBytes: 231, offsetBytes: 231 },
];

async function fixture(): Promise<Buffer> {
  const hex = await readFile(join(repoRoot, 'test', 'log', 'fixtures', 'log-v1.hex'), 'utf8');
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
}

test('version 1 records encode to the frozen fixture, byte for byte', async () => {
  const bytes = await fixture();
  const encoded = Buffer.concat(expected.map((e) => encodeRecord(e.record, e.syncedBytes)));
  assert.equal(encoded.length, bytes.length);
  assert.ok(encoded.equals(bytes), 'the encoder no longer writes format version 1 as released');
});

test('the frozen version 1 fixture scans to the same records', async () => {
  const storage = new MemStorage();
  const file = await storage.open('log-000000001-alpha', 'create');
  await file.write(await fixture(), 0);
  const scanner = new LogScanner(file, 'log-000000001-alpha', { readChunkBytes: scanReadChunkBytesDefault });
  const found = [];
  for (let e = await scanner.next(); e !== undefined; e = await scanner.next()) found.push(e);
  assert.equal(scanner.outcome().tail, 'clean');
  assert.deepEqual(
    found.map((e) => ({ record: e.record, syncedBytes: e.syncedBytes, offsetBytes: e.offsetBytes })),
    expected,
  );
});
