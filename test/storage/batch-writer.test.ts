/**
 * Failures inside the batch-write worker thread (writeback of small pieces) must come back
 * to the caller as typed errors, never as a batch reported written that is not: a real
 * ENOSPC raised by the worker's pwrite (a 1 MiB tmpfs, root only), and the worker dying
 * in the middle of a batch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import { stopBatchWorker } from '../../src/storage/batch-writer.js';
import { batchWorkerJobsMin, batchWorkerPieceBytesMax, FsStorage } from '../../src/storage/fs-storage.js';
import type { WriteJob } from '../../src/storage/storage.js';
import { isRoot, mustRun, unmountQuietly } from '../support/daemon-helpers.js';
import { removeDir, tempDir } from '../support/processes.js';

const pieceBytes = 4096;

/** `count` pieces of 4 KiB, back to back: small and many enough to go to the worker thread. */
function pieces(count: number, seed: number): WriteJob[] {
  assert.ok(pieceBytes < batchWorkerPieceBytesMax && count >= batchWorkerJobsMin, 'these pieces would not go to the worker');
  const random = new Random(seed);
  return Array.from({ length: count }, (_, i) => ({ positionBytes: i * pieceBytes, data: random.bytes(pieceBytes) }));
}

void test('ENOSPC raised inside the worker thread comes back as ENOSPC naming the file', { skip: isRoot() ? false : 'needs root to mount a tmpfs' }, async () => {
  const dir = await tempDir('mars-batch');
  const mount = join(dir, 'small');
  await mkdir(mount);
  try {
    await mustRun('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
    const file = await (await FsStorage.create(mount)).open('device', 'create');
    await file.truncate(8 * 1024 * 1024); // sparse: the pieces need blocks the tmpfs does not have
    await assert.rejects(file.writeBatch(pieces(512, 1)), (err: unknown) => err instanceof MarsError && err.code === 'ENOSPC' && err.message.includes('device'));
    await file.close();
  } finally {
    await unmountQuietly(mount);
    await removeDir(dir);
  }
});

void test('a worker that dies mid-batch fails the batch with EIO, never reports it written, and the next batch works', async () => {
  const dir = await tempDir('mars-batch');
  try {
    const storage = await FsStorage.create(dir);
    const file = await storage.open('device', 'create');
    let failed = 0;
    for (let round = 0; round < 5; round++) {
      const jobs = pieces(4096, 10 + round); // 16 MiB of 4 KiB pwrites: the worker is still at it when stopped
      const batch = file.writeBatch(jobs);
      const outcome = batch.then(
        () => 'written' as const,
        (err: unknown) => err,
      );
      await stopBatchWorker();
      const result = await outcome;
      if (result === 'written') {
        const content = await readFile(join(dir, 'device'));
        for (const job of jobs) if ('data' in job) assert.ok(content.subarray(job.positionBytes, job.positionBytes + pieceBytes).equals(job.data), `round ${round}: reported written, but the piece at ${job.positionBytes} is not there`);
      } else {
        assert.ok(result instanceof MarsError && result.code === 'EIO', `round ${round}: ${String(result)}`);
        failed++;
      }
    }
    assert.ok(failed > 0, 'the worker was never stopped in the middle of a batch');
    // A new worker takes the next batch.
    const jobs = pieces(256, 99);
    await file.writeBatch(jobs);
    const content = await readFile(join(dir, 'device'));
    for (const job of jobs) if ('data' in job) assert.ok(content.subarray(job.positionBytes, job.positionBytes + pieceBytes).equals(job.data));
    await file.close();
  } finally {
    await removeDir(dir);
  }
});
