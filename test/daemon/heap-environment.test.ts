/**
 * marsd runs with glibc's heap fixed as bin/marsd says: 1 MiB buffers from the heap (mmap
 * threshold 4 MiB) and free heap kept up to 32 MiB (trim threshold), so that buffers are
 * reused warm instead of page-faulted in again on every socket read (docs/benchmarks.md,
 * "Full sync (b): what is left"). Read from the running process, as the kernel sees it.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { removeDir, startMarsd, type Marsd } from '../support/processes.js';
import { newHostDir } from '../support/daemon-helpers.js';

const testMsMax = 30_000;

void test('a started marsd has the heap thresholds and thread pool of bin/marsd in its environment', { timeout: testMsMax }, async () => {
  const dir = await newHostDir('mars-heap-env');
  let daemon: Marsd | undefined;
  try {
    daemon = await startMarsd(dir);
    const environ = (await readFile(`/proc/${daemon.child.pid}/environ`, 'utf8')).split('\0');
    assert.ok(environ.includes('MALLOC_MMAP_THRESHOLD_=4194304'), 'mmap threshold 4 MiB');
    assert.ok(environ.includes('MALLOC_TRIM_THRESHOLD_=33554432'), 'trim threshold 32 MiB');
    assert.ok(environ.includes('UV_THREADPOOL_SIZE=16'), 'thread pool of 16');
    assert.equal(await daemon.stop(), 0);
  } finally {
    if (daemon !== undefined) await daemon.stop();
    await removeDir(dir);
  }
});
