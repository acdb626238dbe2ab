import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FsStorage } from '../../src/storage/fs-storage.js';
import { Random } from '../../src/core/random.js';
import type { WriteJob } from '../../src/storage/storage.js';
import { removeDir, tempDir } from '../support/processes.js';

test('a batch write through the worker thread puts every piece and every zero run in place', async () => {
  const dir = await tempDir('mars-fs');
  try {
    const storage = await FsStorage.create(dir);
    const file = await storage.open('dev', 'create');
    const sizeBytes = 4 * 1024 * 1024;
    const random = new Random(7);
    const model = random.bytes(sizeBytes);
    await file.write(Buffer.from(model), 0);
    const jobs: WriteJob[] = [];
    // Pieces that do not overlap: one per 64 KiB slot, random length inside it.
    for (let slot = 0; slot < sizeBytes / 65536; slot++) {
      const position = slot * 65536 + random.int(1024);
      const length = 1 + random.int(60000);
      if (random.chance(0.2)) {
        jobs.push({ positionBytes: position, zeroBytes: length });
        model.fill(0, position, position + length);
      } else {
        // A view into a larger buffer: only its own bytes may be written.
        const backing = random.bytes(length + 100);
        const data = backing.subarray(50, 50 + length);
        jobs.push({ positionBytes: position, data });
        data.copy(model, position);
      }
    }
    await file.writeBatch(jobs);
    await file.sync();
    await file.close();
    assert.ok((await readFile(join(dir, 'dev'))).equals(model), 'the file differs from the model');
  } finally {
    await removeDir(dir);
  }
});

test('a batch write on a closed file fails with a typed error, and close waits for batches in flight', async () => {
  const dir = await tempDir('mars-fs');
  try {
    const storage = await FsStorage.create(dir);
    const file = await storage.open('dev', 'create');
    const jobs: WriteJob[] = Array.from({ length: 8 }, (_, i) => ({ positionBytes: i * 4096, data: Buffer.alloc(4096, i + 1) }));
    const inFlight = file.writeBatch(jobs);
    await file.close();
    await inFlight;
    const written = await readFile(join(dir, 'dev'));
    assert.equal(written.length, 8 * 4096);
    assert.equal(written[7 * 4096], 8, 'the batch finished before the file was closed');
    await assert.rejects(file.writeBatch(jobs), (err: unknown) => (err as { code?: string }).code === 'EIO');
  } finally {
    await removeDir(dir);
  }
});

test('a gathered write of more pieces than one pwritev takes puts them back to back', async () => {
  const dir = await tempDir('mars-fs');
  try {
    const storage = await FsStorage.create(dir);
    const file = await storage.open('log', 'create');
    const random = new Random(11);
    const parts: Buffer[] = [];
    for (let i = 0; i < 2500; i++) {
      // Views into larger buffers, some empty: only their own bytes may be written.
      const length = random.int(3) === 0 ? 0 : 1 + random.int(5000);
      parts.push(random.bytes(length + 20).subarray(10, 10 + length));
    }
    const startBytes = 777;
    await file.write(Buffer.alloc(startBytes, 0xaa), 0);
    assert.ok(file.writev !== undefined);
    await file.writev(parts, startBytes);
    await file.close();
    const expected = Buffer.concat([Buffer.alloc(startBytes, 0xaa), ...parts]);
    assert.ok((await readFile(join(dir, 'log'))).equals(expected), 'the file differs from the pieces');
  } finally {
    await removeDir(dir);
  }
});

test('sequential appends (O_DIRECT for whole blocks, the page cache for head and tail) put every byte in place', async () => {
  const dir = await tempDir('mars-fs');
  try {
    const storage = await FsStorage.create(dir);
    const file = await storage.open('log', 'create');
    const random = new Random(11);
    const model: Buffer[] = [];
    let position = 0;
    // Appends of random shape: small (page cache only) and large (direct middle), each
    // a few parts, views into larger buffers among them, starting at unaligned offsets.
    for (let i = 0; i < 24; i++) {
      const parts: Buffer[] = [];
      const count = 1 + random.int(4);
      for (let p = 0; p < count; p++) {
        const length = random.chance(0.5) ? 1 + random.int(5000) : 200_000 + random.int(1_500_000);
        const backing = random.bytes(length + 64);
        parts.push(backing.subarray(32, 32 + length));
      }
      await file.writeSequential!(parts, position);
      for (const part of parts) {
        model.push(Buffer.from(part));
        position += part.length;
      }
      // The caller may reuse its buffers once the append resolved.
      for (const part of parts) part.fill(0xee);
    }
    await file.sync();
    await file.close();
    assert.ok((await readFile(join(dir, 'log'))).equals(Buffer.concat(model)), 'the file differs from the model');
  } finally {
    await removeDir(dir);
  }
});
