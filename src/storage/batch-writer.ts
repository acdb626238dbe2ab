/**
 * The main-thread side of batch writes: one lazily started worker thread per process,
 * requests matched by id. The pieces' bytes are packed into one fresh ArrayBuffer and their
 * table into a Float64Array; both are transferred, not cloned (cloning a view would copy its
 * whole backing buffer, and a table of small arrays is one cloned object per piece).
 *
 * The data buffer comes back with the answer and is kept for the next batch: a fresh one
 * is zero-filled and page-faulted on the first copy, which cost several µs per 4 KiB piece
 * (more than the copy itself); at most packBuffersKeptMax of them, each at most
 * packBufferKeptBytesMax, wait for reuse.
 */
import { Worker } from 'node:worker_threads';
import { MarsError, fromSystemError } from '../core/errors.js';
import type { WriteJob } from './storage.js';
import { batchJobFields, type BatchReply, type BatchRequest } from './batch-write-worker.js';

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  context: string;
}

/** Data buffers kept for reuse after their batch came back. */
export const packBuffersKeptMax = 2;
/** A data buffer larger than this is not kept (a batch is about writebackBatchBytesMax, 8 MiB, plus one piece). */
export const packBufferKeptBytesMax = 16 * 1024 * 1024;
/** Data buffers are allocated in multiples of this, so that batches of similar size reuse each other's. */
const packBufferGrainBytes = 1024 * 1024;

const spareBuffers: ArrayBuffer[] = [];

function takePackBuffer(dataBytes: number): ArrayBuffer {
  for (let i = 0; i < spareBuffers.length; i++) {
    const spare = spareBuffers[i]!;
    if (spare.byteLength >= dataBytes) {
      spareBuffers.splice(i, 1);
      return spare;
    }
  }
  return new ArrayBuffer(Math.ceil(dataBytes / packBufferGrainBytes) * packBufferGrainBytes);
}

function keepPackBuffer(buffer: ArrayBuffer): void {
  if (buffer.byteLength === 0 || buffer.byteLength > packBufferKeptBytesMax) return;
  if (spareBuffers.length >= packBuffersKeptMax) {
    // Keep the larger ones: they fit every batch.
    const smallest = spareBuffers.reduce((a, b, i) => (b.byteLength < spareBuffers[a]!.byteLength ? i : a), 0);
    if (spareBuffers[smallest]!.byteLength >= buffer.byteLength) return;
    spareBuffers.splice(smallest, 1);
  }
  spareBuffers.push(buffer);
}

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, Pending>();

function failAll(err: Error): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
  worker = undefined;
}

function ensureWorker(): Worker {
  if (worker !== undefined) return worker;
  const w = new Worker(new URL('./batch-write-worker.js', import.meta.url));
  w.on('message', (reply: BatchReply) => {
    const p = pending.get(reply.id);
    if (p === undefined) return;
    pending.delete(reply.id);
    keepPackBuffer(reply.data);
    if (pending.size === 0) w.unref();
    if ('code' in reply) p.reject(fromSystemError(Object.assign(new Error(reply.message), { code: reply.code }), p.context));
    else p.resolve();
  });
  w.on('error', (err) => failAll(new MarsError('EIO', `batch write worker failed: ${err.message}`)));
  w.on('exit', () => failAll(new MarsError('EIO', 'batch write worker exited')));
  // The worker keeps the process alive only while a batch is in flight (ref'd when one is
  // posted, unref'd when the last answer arrives); attaching a message listener refs the
  // port, so this comes after the listeners.
  w.unref();
  worker = w;
  return w;
}

/**
 * Stops the worker thread now (shutdown, and tests of a dying worker): every batch in
 * flight fails with EIO ('batch write worker exited'), none is reported written; the next
 * batch starts a new worker.
 */
export async function stopBatchWorker(): Promise<void> {
  const w = worker;
  if (w === undefined) return;
  await w.terminate();
}

export function writeBatchFd(fd: number, jobs: readonly WriteJob[], context: string): Promise<void> {
  let dataBytes = 0;
  for (const job of jobs) if ('data' in job) dataBytes += job.data.length;
  const packed = takePackBuffer(dataBytes);
  const view = Buffer.from(packed);
  const table = new Float64Array(jobs.length * batchJobFields);
  let at = 0;
  let row = 0;
  for (const job of jobs) {
    table[row] = job.positionBytes;
    if ('data' in job) {
      job.data.copy(view, at);
      table[row + 1] = at;
      table[row + 2] = job.data.length;
      at += job.data.length;
    } else {
      table[row + 2] = job.zeroBytes;
      table[row + 3] = 1;
    }
    row += batchJobFields;
  }
  const id = nextId++;
  const request: BatchRequest = { id, fd, data: packed, jobs: table.buffer };
  return new Promise((resolve, reject) => {
    const w = ensureWorker();
    if (pending.size === 0) w.ref();
    pending.set(id, { resolve, reject, context });
    w.postMessage(request, [packed, table.buffer]);
  });
}
