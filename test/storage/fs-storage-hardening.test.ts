/**
 * FsStorage inside a state directory that someone else may have tampered with: a symbolic
 * link planted where a file should be is refused by open and readAll (never followed) and
 * replaced, not followed, by writeAtomic; two writers of the same file never share a
 * temporary file (random names, O_EXCL), so each write lands whole.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import { FsStorage } from '../../src/storage/fs-storage.js';
import { tempDir } from '../support/processes.js';

async function withDirs(body: (dir: string, outside: string) => Promise<void>): Promise<void> {
  const dir = await tempDir('mars-fs-hard-');
  const outside = await tempDir('mars-fs-victim-');
  try {
    await body(dir, outside);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  }
}

function isSymlinkRefusal(err: unknown): boolean {
  return err instanceof MarsError && err.code === 'BAD_STATE_DIR' && /is a symbolic link/.test(err.message);
}

void test('open and readAll refuse a planted symbolic link with one clear error; the file it points to is untouched', async () => {
  await withDirs(async (dir, outside) => {
    const victim = join(outside, 'victim');
    await writeFile(victim, 'precious');
    await symlink(victim, join(dir, 'replay-alpha'));
    const storage = new FsStorage(dir);
    for (const mode of ['read', 'write', 'create'] as const) await assert.rejects(storage.open('replay-alpha', mode), isSymlinkRefusal);
    await assert.rejects(storage.readAll('replay-alpha'), isSymlinkRefusal);
    assert.equal(await readFile(victim, 'utf8'), 'precious');
  });
});

void test('writeAtomic replaces a planted symbolic link by a file and does not write through it', async () => {
  await withDirs(async (dir, outside) => {
    const victim = join(outside, 'victim');
    await writeFile(victim, 'precious');
    await symlink(victim, join(dir, 'host.json'));
    const storage = new FsStorage(dir);
    await storage.writeAtomic('host.json', Buffer.from('new'));
    assert.equal(await readFile(victim, 'utf8'), 'precious');
    assert.equal((await storage.readAll('host.json'))?.toString(), 'new');
  });
});

void test('FsStorage.create refuses a symbolic link where its directory should be', async () => {
  await withDirs(async (dir, outside) => {
    await symlink(outside, join(dir, 'resource-r0'));
    await assert.rejects(FsStorage.create(join(dir, 'resource-r0')), isSymlinkRefusal);
  });
});

void test('concurrent atomic writes of one file by two writers never share a temporary file: every write succeeds and lands whole', async () => {
  await withDirs(async (dir) => {
    // Two instances, as two processes or two parts of one would have: the old names (pid + counter) collided.
    const a = new FsStorage(dir);
    const b = new FsStorage(dir);
    const random = new Random(12);
    const payloads = Array.from({ length: 16 }, (_, i) => {
      const data = Buffer.alloc(256 * 1024 + 4 * i);
      for (let j = 0; j < data.length; j += 4) data.writeUInt32LE(random.uint32(), j);
      return data;
    });
    await Promise.all(payloads.map((data, i) => (i % 2 === 0 ? a : b).writeAtomic('position', data)));
    const final = await readFile(join(dir, 'position'));
    assert.ok(payloads.some((p) => p.equals(final)), 'the file is exactly one of the writes');
    assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');
  });
});
