/**
 * The main-thread side of batch writes: one lazily started worker thread per process,
 * requests matched by id. The pieces' bytes are packed into one fresh ArrayBuffer that is
 * transferred, not cloned (cloning a view would copy its whole backing buffer).
 */
import { Worker } from 'node:worker_threads';
import { MarsError, fromSystemError } from '../core/errors.js';
import type { WriteJob } from './storage.js';
import type { BatchReply, BatchRequest } from './batch-write-worker.js';

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  context: string;
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
  const packed = new ArrayBuffer(dataBytes);
  const view = Buffer.from(packed);
  const table: BatchRequest['jobs'] = [];
  let at = 0;
  for (const job of jobs) {
    if ('data' in job) {
      job.data.copy(view, at);
      table.push([job.positionBytes, at, job.data.length, 0]);
      at += job.data.length;
    } else {
      table.push([job.positionBytes, 0, job.zeroBytes, 1]);
    }
  }
  const id = nextId++;
  const request: BatchRequest = { id, fd, data: packed, jobs: table };
  return new Promise((resolve, reject) => {
    const w = ensureWorker();
    if (pending.size === 0) w.ref();
    pending.set(id, { resolve, reject, context });
    w.postMessage(request, [packed]);
  });
}
