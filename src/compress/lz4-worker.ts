/**
 * The main-thread side of the lz4 thread (lz4-thread.ts): one lazily started worker per
 * process, jobs matched by id, at most `lz4JobsInFlightMax` of them at the thread at a time
 * (later ones wait in a FIFO). The input is copied into a fresh ArrayBuffer that is
 * transferred (a view of a larger buffer would otherwise be cloned whole, or detached);
 * the output comes back as a transferred ArrayBuffer. When the thread fails or exits,
 * every job in flight fails with EIO and the next job starts a new thread.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { MarsError } from '../core/errors.js';
import { lz4JobsInFlightMax } from './limits.js';
import type { Lz4Reply, Lz4Request } from './lz4-thread.js';

interface Pending {
  resolve: (out: Buffer) => void;
  reject: (err: Error) => void;
}

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, Pending>();
const waiting: (() => void)[] = [];
/** Places taken: jobs at the thread plus jobs handed a place that have not posted yet. */
let placesTaken = 0;

/** A job's place is free again: the first waiter takes it over (placesTaken stays). */
function freePlace(): void {
  const next = waiting.shift();
  if (next === undefined) placesTaken--;
  else next();
}

function failAll(w: Worker, err: Error): void {
  if (worker !== w) return;
  worker = undefined;
  const jobs = [...pending.values()];
  pending.clear();
  for (const p of jobs) {
    p.reject(err);
    freePlace(); // jobs that waited for a place go to the next thread
  }
}

function ensureWorker(): Worker {
  if (worker !== undefined) return worker;
  // The main thread loads the addon first: loaded first by a worker, its allocator's
  // per-thread state breaks when that worker ends, and the process dies (SIGSEGV).
  createRequire(import.meta.url)('lz4-napi');
  const w = new Worker(new URL('./lz4-thread.js', import.meta.url));
  w.on('message', (reply: Lz4Reply) => {
    const p = pending.get(reply.id);
    if (p === undefined) return;
    pending.delete(reply.id);
    if (pending.size === 0) w.unref();
    if ('message' in reply) p.reject(new Error(reply.message));
    else p.resolve(Buffer.from(reply.data));
    freePlace();
  });
  w.on('error', (err) => failAll(w, new MarsError('EIO', `lz4 thread failed: ${err.message}`)));
  w.on('exit', () => failAll(w, new MarsError('EIO', 'lz4 thread exited')));
  // The thread keeps the process alive only while a job is in flight (see batch-writer.ts).
  w.unref();
  worker = w;
  return w;
}

async function place(): Promise<void> {
  if (placesTaken < lz4JobsInFlightMax) {
    placesTaken++;
    return;
  }
  await new Promise<void>((resolve) => waiting.push(resolve));
}

async function job(op: Lz4Request['op'], data: Buffer): Promise<Buffer> {
  await place();
  const copy = new ArrayBuffer(data.length);
  data.copy(Buffer.from(copy));
  const id = nextId++;
  return new Promise((resolve, reject) => {
    let w: Worker;
    try {
      w = ensureWorker();
    } catch (err) {
      freePlace();
      reject(new MarsError('EIO', `lz4 thread does not start: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    if (pending.size === 0) w.ref();
    pending.set(id, { resolve, reject });
    w.postMessage({ id, op, data: copy } satisfies Lz4Request, [copy]);
  });
}

/** lz4 block with a 4-byte little-endian size prefix (lz4-napi's format), on the lz4 thread. */
export function lz4Compress(data: Buffer): Promise<Buffer> {
  return job('compress', data);
}

/** The inverse of lz4Compress, on the lz4 thread; the caller checks the size prefix first. */
export function lz4Uncompress(data: Buffer): Promise<Buffer> {
  return job('uncompress', data);
}

/** Jobs at the thread now and jobs waiting for a place (for tests of the limit). */
export function lz4Load(): { inFlight: number; waiting: number } {
  return { inFlight: pending.size, waiting: waiting.length };
}

/** Stops the thread now (tests of a dying thread): jobs in flight fail with EIO. */
export async function stopLz4Thread(): Promise<void> {
  const w = worker;
  if (w === undefined) return;
  await w.terminate();
}
