/**
 * A real filesystem on a MARS resource: nbdfuse exposes the export as a file, mkfs.ext4
 * formats it, the kernel mounts it through a loop device, files with seeded random
 * content are written in several directories, and after umount fsck.ext4 finds the
 * filesystem clean and a read-only mount finds every file intact. More files are
 * written, and marsd is killed with SIGKILL right after the flush, restarted (recovery
 * replays its log), and the filesystem is checked and read again; then once more with
 * the writeback position moved back to the start of the first log, so that the whole
 * history (mkfs with its trims included) is replayed. Needs root, nbdfuse, mkfs.ext4, fsck.ext4,
 * fusermount3 and /dev/fuse; skipped with the reason otherwise. Mounts are always undone.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Random } from '../../src/core/random.js';
import { removeDir, sparseFile, startMarsd, waitFor, type Marsd } from '../support/processes.js';
import {
  KiB,
  MiB,
  isMountPoint,
  mustMarsadm,
  mustRun,
  newHostDir,
  rawStatus,
  rootSkipReason,
  settleWithin,
  startBackground,
  unmountQuietly,
  hostName,
  writePositionFile,
  type Background,
} from '../support/daemon-helpers.js';

const deviceBytes = 256 * MiB;
const testMsMax = 180_000;

interface FileSpec {
  path: string;
  sha256: string;
  sizeBytes: number;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes a small tree of files with seeded random content; returns their hashes. */
async function writeTree(root: string, random: Random): Promise<FileSpec[]> {
  const dirs = ['', 'alpha', 'alpha/beta', 'alpha/beta/gamma', 'delta', 'delta/epsilon'];
  for (const d of dirs) if (d !== '') await mkdir(join(root, d), { recursive: true });
  const files: FileSpec[] = [];
  let total = 0;
  for (let i = 0; total < 6 * MiB || files.length < 16; i++) {
    const dir = dirs[random.int(dirs.length)]!;
    // Mostly small files, some of a few hundred KiB, one or two over a MiB.
    const sizeBytes = random.chance(0.1) ? MiB + random.int(MiB) : random.chance(0.5) ? random.int(4 * KiB) + 1 : random.int(400 * KiB) + 1;
    const data = random.bytes(sizeBytes);
    const path = join(dir, `file-${i}.bin`);
    await writeFile(join(root, path), data);
    files.push({ path, sha256: sha256(data), sizeBytes });
    total += sizeBytes;
  }
  return files;
}

async function verifyTree(root: string, files: FileSpec[], when: string): Promise<void> {
  for (const f of files) {
    const data = await readFile(join(root, f.path));
    assert.equal(data.length, f.sizeBytes, `${when}: ${f.path} has ${data.length} bytes, expected ${f.sizeBytes}`);
    assert.equal(sha256(data), f.sha256, `${when}: ${f.path} differs`);
  }
}

class Mounts {
  nbdfuse: Background | undefined;
  constructor(
    readonly fuseDir: string,
    readonly mnt: string,
  ) {}

  get image(): string {
    return join(this.fuseDir, 'nbd');
  }

  async startNbdfuse(port: number, readOnly: boolean): Promise<void> {
    const pidFile = join(this.fuseDir, '..', `nbdfuse-${port}.pid`);
    const args = [...(readOnly ? ['-r'] : []), '-P', pidFile, this.fuseDir, `nbd://127.0.0.1:${port}/r0`];
    const bg = startBackground('nbdfuse', args);
    this.nbdfuse = bg;
    let exited = false;
    void bg.exited.then(() => (exited = true));
    await waitFor('nbdfuse to serve its file', () => {
      if (exited) throw new Error(`nbdfuse exited at start: ${bg.output()}`);
      return existsSync(pidFile) && existsSync(this.image);
    });
  }

  /** fusermount3 -u, then nbdfuse exits by itself (its PID is ours to kill if it does not). */
  async stopNbdfuse(): Promise<void> {
    const bg = this.nbdfuse;
    if (bg === undefined) return;
    await mustRun('fusermount3', ['-u', this.fuseDir]);
    const code = await settleWithin(bg.exited, 15_000);
    if (code === undefined) await bg.stop('SIGKILL');
    this.nbdfuse = undefined;
  }

  async mount(readOnly: boolean): Promise<void> {
    await mustRun('mount', ['-o', readOnly ? 'loop,ro' : 'loop', this.image, this.mnt]);
  }

  async umount(): Promise<void> {
    await mustRun('umount', [this.mnt]);
  }

  /** Undoes everything; never throws; returns what it did. */
  async cleanup(): Promise<string[]> {
    const notes = [`mnt: ${await unmountQuietly(this.mnt)}`, `fuse: ${await unmountQuietly(this.fuseDir, 'fusermount3')}`];
    if (this.nbdfuse !== undefined) notes.push(`nbdfuse exit ${await this.nbdfuse.stop('SIGTERM', 5_000)}`);
    this.nbdfuse = undefined;
    return notes;
  }
}

/** nbdfuse read-only on the daemon's export, fsck clean, every file intact, all undone again. */
async function checkFilesystem(mounts: Mounts, daemon: Marsd, files: FileSpec[], when: string): Promise<void> {
  await mounts.startNbdfuse(daemon.nbdPort, true);
  await fsckClean(mounts.image, when);
  await mounts.mount(true);
  await verifyTree(mounts.mnt, files, when);
  await mounts.umount();
  await mounts.stopNbdfuse();
}

async function fsckClean(image: string, when: string): Promise<void> {
  const result = await mustRun('fsck.ext4', ['-n', '-f', image], 120_000).catch((err: unknown) => {
    throw new Error(`${when}: fsck.ext4 -n -f is not clean: ${(err as Error).message}`);
  });
  assert.match(result.stdout, /\d+\/\d+ files/, `${when}: fsck output: ${result.stdout}`);
}

void test('ext4 on an export via nbdfuse: mkfs, files, fsck clean, contents intact, also after kill -9 of marsd', { timeout: testMsMax }, async (t: TestContext) => {
  const skip = rootSkipReason(['nbdfuse', 'mkfs.ext4', 'fsck.ext4', 'fusermount3', 'mount', 'umount'], ['/dev/fuse']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const seed = Number(process.env['MARS_TEST_SEED'] ?? Date.now() % 2_147_483_647);
  const random = new Random(seed);
  const dir = await newHostDir('mars-fs');
  const mounts = new Mounts(join(dir, 'fuse'), join(dir, 'mnt'));
  let daemon: Marsd | undefined;
  let mountsLeft = false;
  try {
    await mkdir(mounts.fuseDir);
    await mkdir(mounts.mnt);
    const disk = await sparseFile(join(dir, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir);
    await mustMarsadm(dir, 'create-resource', 'r0', disk);

    await mounts.startNbdfuse(daemon.nbdPort, false);
    await mustRun('mkfs.ext4', ['-F', '-q', mounts.image], 120_000);
    await mounts.mount(false);
    const files = await writeTree(mounts.mnt, random);
    t.diagnostic(`wrote ${files.length} files, ${files.reduce((s, f) => s + f.sizeBytes, 0)} bytes (seed ${seed})`);
    await mounts.umount();
    await mustRun('sync', [mounts.image]); // fsync of the nbdfuse file: NBD FLUSH
    await fsckClean(mounts.image, 'after the first unmount');
    await mounts.mount(true);
    await verifyTree(mounts.mnt, files, 'read-only mount');
    await mounts.umount();
    await mustRun('sync', [mounts.image]);

    // More files and a changed one, then kill -9 right after the flush: what is not written
    // back yet is replayed from the log.
    await mounts.mount(false);
    const more = await writeTree(join(mounts.mnt, 'phase2'), random);
    const changed = files[0]!;
    const changedData = random.bytes(changed.sizeBytes + 1000);
    await writeFile(join(mounts.mnt, changed.path), changedData);
    changed.sha256 = sha256(changedData);
    changed.sizeBytes = changedData.length;
    for (const f of more) files.push({ ...f, path: join('phase2', f.path) });
    await mounts.umount();
    await mustRun('sync', [mounts.image]);
    const before = await rawStatus(dir, 'r0');
    assert.equal(await daemon.kill9(), 137);
    daemon = undefined;
    await mounts.stopNbdfuse();
    daemon = await startMarsd(dir);
    const after = await rawStatus(dir, 'r0');
    assert.equal(after.state, 'serving', `r0 after kill -9: ${after.failure ?? ''}`);
    t.diagnostic(
      `at the kill: log end ${JSON.stringify(before.logger?.logPosition)}, written back ${JSON.stringify(before.logger?.writtenBack)}, ` +
        `${before.logger?.shadowBytes ?? '?'} shadow bytes; recovery replayed ${after.recovery?.replayedRecords ?? '?'} records from ${JSON.stringify(after.recovery?.start)}`,
    );
    await checkFilesystem(mounts, daemon, files, 'after kill -9 and recovery');

    // Once more, with the writeback position moved back to the start of the first log:
    // replaying the whole history (mkfs with its trims, both phases) must give the same filesystem.
    assert.equal(await daemon.kill9(), 137);
    daemon = undefined;
    await writePositionFile(dir, 'r0', { formatVersion: 1, logNumber: 1, logHost: hostName, offsetBytes: 0, nextSeq: '1' });
    daemon = await startMarsd(dir);
    const full = await rawStatus(dir, 'r0');
    assert.equal(full.state, 'serving', `r0 after a full replay: ${full.failure ?? ''}`);
    assert.ok((full.recovery?.replayedRecords ?? 0) > 0, 'recovery replayed the whole log');
    t.diagnostic(`full replay: ${full.recovery?.replayedRecords ?? '?'} records, ${full.recovery?.replayedBytes ?? '?'} bytes`);
    await checkFilesystem(mounts, daemon, files, 'after replaying the whole log');
    assert.equal(await daemon.stop(), 0, 'marsd stops cleanly');
    daemon = undefined;
  } finally {
    const notes = await mounts.cleanup();
    mountsLeft = (await isMountPoint(mounts.mnt)) || (await isMountPoint(mounts.fuseDir));
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    if (mountsLeft) t.diagnostic(`mounts could not be undone, ${dir} is left in place: ${notes.join('; ')}`);
    else await removeDir(dir);
  }
});
