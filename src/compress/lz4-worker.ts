/**
 * The main-thread side of the lz4 threads (lz4-thread.ts): `lz4ThreadsMax` lazily started
 * workers per process, jobs matched by id, each job to the thread with the fewest jobs, at
 * most `lz4JobsInFlightMax` jobs at the threads at a time (later ones wait in a FIFO). The
 * input is copied into a fresh ArrayBuffer that is transferred (a view of a larger buffer
 * would otherwise be cloned whole, or detached); the output comes back as a transferred
 * ArrayBuffer. When a thread fails or exits, its jobs fail with EIO and a later job starts
 * a new thread in its place.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { MarsError } from '../core/errors.js';
import { lz4JobsInFlightMax, lz4ThreadsMax } from './limits.js';
import type { Lz4Reply, Lz4Request } from './lz4-thread.js';

interface Pending {
  resolve: (out: Buffer) => void;
  reject: (err: Error) => void;
}

interface Lz4Thread {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
  /** Set by its first reply: the thread has started and loaded lz4. */
  answered: boolean;
  /** The id of the warm-up job that started it (lz4WarmUp): while pending, it does not count as a job of the thread. */
  warmUpId: number | undefined;
}

/** Slots of the threads; an empty slot starts a thread when a job needs it. */
const threads: (Lz4Thread | undefined)[] = Array.from({ length: lz4ThreadsMax }, () => undefined);
let nextId = 1;
const waiting: (() => void)[] = [];
/** Places taken: jobs at the threads plus jobs handed a place that have not posted yet. */
let placesTaken = 0;

/** A job's place is free again: the first waiter takes it over (placesTaken stays). */
function freePlace(): void {
  const next = waiting.shift();
  if (next === undefined) placesTaken--;
  else next();
}

function failAll(slot: number, thread: Lz4Thread, err: Error): void {
  if (threads[slot] !== thread) return;
  threads[slot] = undefined;
  const jobs = [...thread.pending.values()];
  thread.pending.clear();
  for (const p of jobs) {
    p.reject(err);
    freePlace(); // jobs that waited for a place go to the other threads, or a new one
  }
}

function startThread(slot: number): Lz4Thread {
  // The main thread loads the addon first: loaded first by a worker, its allocator's
  // per-thread state breaks when that worker ends, and the process dies (SIGSEGV).
  createRequire(import.meta.url)('lz4-napi');
  const worker = new Worker(new URL('./lz4-thread.js', import.meta.url));
  const thread: Lz4Thread = { worker, pending: new Map(), answered: false, warmUpId: undefined };
  worker.on('message', (reply: Lz4Reply) => {
    thread.answered = true;
    const p = thread.pending.get(reply.id);
    if (p === undefined) return;
    thread.pending.delete(reply.id);
    if (thread.pending.size === 0) worker.unref();
    if ('message' in reply) p.reject(new Error(reply.message));
    else p.resolve(Buffer.from(reply.data));
    freePlace();
  });
  worker.on('error', (err) => failAll(slot, thread, new MarsError('EIO', `lz4 thread failed: ${err.message}`)));
  worker.on('exit', () => failAll(slot, thread, new MarsError('EIO', 'lz4 thread exited')));
  // A thread keeps the process alive only while it has a job (see batch-writer.ts).
  worker.unref();
  threads[slot] = thread;
  return thread;
}

/**
 * The slot of the thread with the fewest jobs (the first of equals); an empty slot counts
 * as none, and so does a warm-up job: a job given while a thread is still starting goes to
 * it rather than start another thread from scratch.
 */
function pickSlot(): number {
  let best = 0;
  let bestJobs = Number.POSITIVE_INFINITY;
  for (const [slot, thread] of threads.entries()) {
    const warmingUp = thread?.warmUpId !== undefined && thread.pending.has(thread.warmUpId) ? 1 : 0;
    const jobs = (thread?.pending.size ?? 0) - warmingUp;
    if (jobs < bestJobs) {
      best = slot;
      bestJobs = jobs;
    }
  }
  return best;
}

/** The thread for a job: the one with the fewest jobs; an empty slot starts a thread there. A warm-up job starts one in the first empty slot. */
function pickThread(warmUp: boolean): Lz4Thread {
  const empty = threads.findIndex((t) => t === undefined);
  const slot = warmUp && empty >= 0 ? empty : pickSlot();
  return threads[slot] ?? startThread(slot);
}

async function place(): Promise<void> {
  if (placesTaken < lz4JobsInFlightMax) {
    placesTaken++;
    return;
  }
  await new Promise<void>((resolve) => waiting.push(resolve));
}

async function job(op: Lz4Request['op'], data: Buffer, warmUp = false): Promise<Buffer> {
  await place();
  // Not zero-filled (new ArrayBuffer would be): every byte is copied over at once.
  const copy = Buffer.allocUnsafeSlow(data.length);
  data.copy(copy);
  const id = nextId++;
  return new Promise((resolve, reject) => {
    let thread: Lz4Thread;
    try {
      thread = pickThread(warmUp);
    } catch (err) {
      freePlace();
      reject(new MarsError('EIO', `lz4 thread does not start: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    if (thread.pending.size === 0) thread.worker.ref();
    thread.pending.set(id, { resolve, reject });
    if (warmUp && !thread.answered && thread.warmUpId === undefined) thread.warmUpId = id;
    thread.worker.postMessage({ id, op, data: copy.buffer } satisfies Lz4Request, [copy.buffer]);
  });
}

/** lz4 block with a 4-byte little-endian size prefix (lz4-napi's format), on an lz4 thread. */
export function lz4Compress(data: Buffer): Promise<Buffer> {
  return job('compress', data);
}

/**
 * Starts lz4 threads until `count` run (at most lz4ThreadsMax), each with a small job whose
 * answer marks it warm; nothing need wait for them. Until that answer a thread's warm-up
 * job does not count as a job of it, so the first real jobs go to it while it starts.
 */
export function lz4WarmUp(count: number): void {
  const missing = Math.min(count, lz4ThreadsMax) - threads.filter((t) => t !== undefined).length;
  for (let i = 0; i < missing; i++) job('compress', Buffer.alloc(512), true).catch(() => undefined);
}

/** The inverse of lz4Compress, on an lz4 thread; the caller checks the size prefix first. */
export function lz4Uncompress(data: Buffer): Promise<Buffer> {
  return job('uncompress', data);
}

/** Jobs at the threads now and jobs waiting for a place (for tests of the limit). */
export function lz4Load(): { inFlight: number; waiting: number; threads: number } {
  let inFlight = 0;
  for (const t of threads) inFlight += t?.pending.size ?? 0;
  return { inFlight, waiting: waiting.length, threads: threads.filter((t) => t !== undefined).length };
}

/**
 * Whether a job given now goes to a thread that has started and answered a job, so it does
 * not wait for a thread to start (with one thread started and idle, a job goes to it).
 */
export function lz4Warm(): boolean {
  return threads[pickSlot()]?.answered === true;
}

/** Stops the threads now (tests of a dying thread): their jobs fail with EIO. */
export async function stopLz4Threads(): Promise<void> {
  await Promise.all(threads.flatMap((t) => (t === undefined ? [] : [t.worker.terminate()])));
}
