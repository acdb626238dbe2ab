/**
 * An lz4 thread: runs lz4-napi's synchronous block (un)compression for the main thread.
 *
 * Why threads of their own and not the library's async functions: lz4-napi allocates its
 * output with its own allocator (mimalloc), per thread. Its async functions run on libuv's
 * thread pool (16 threads in marsd), so every output was allocated on one pool thread and
 * freed later, by the garbage collector, on the main thread: each pool thread's heap kept
 * what was freed that way, up to about 64 MiB per thread, and the primary's marsd grew to
 * about 1.1 GiB while it served fetch (docs/benchmarks.md, "Memory"). Here the library's
 * buffers are allocated and freed on the same thread, and only a copy in an ordinary
 * ArrayBuffer (Node's allocator, counted by V8) travels to the main thread. The main
 * thread loads the library before it starts this thread (lz4-worker.ts): an addon with
 * mimalloc loaded first by a worker thread crashes the process when that thread ends.
 *
 * Message in:  { id, op: 'compress' | 'uncompress', data: ArrayBuffer } (transferred)
 * Message out: { id, data: ArrayBuffer } (transferred) or { id, message } on failure.
 */
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';

export interface Lz4Request {
  readonly id: number;
  readonly op: 'compress' | 'uncompress';
  readonly data: ArrayBuffer;
}

export type Lz4Reply = { readonly id: number; readonly data: ArrayBuffer } | { readonly id: number; readonly message: string };

interface Lz4Sync {
  compressSync(data: Buffer): Buffer;
  uncompressSync(data: Buffer): Buffer;
}

const lz4 = createRequire(import.meta.url)('lz4-napi') as Lz4Sync;

function run(request: Lz4Request): Lz4Reply {
  try {
    const input = Buffer.from(request.data);
    const out = request.op === 'compress' ? lz4.compressSync(input) : lz4.uncompressSync(input);
    // A buffer of its own (allocUnsafeSlow: not from the pool, not zero-filled), so that its whole ArrayBuffer is transferred.
    const copy = Buffer.allocUnsafeSlow(out.length);
    out.copy(copy);
    return { id: request.id, data: copy.buffer };
  } catch (err) {
    return { id: request.id, message: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * One job per turn of this thread's event loop: the library's output buffers are freed by
 * finalizers that run on a later turn, so jobs run back to back within one turn (a burst
 * of messages is handled in one) would pile up their garbage until the burst ends. The
 * queue holds at most lz4JobsInFlightMax jobs (the main thread sends no more).
 */
const queue: Lz4Request[] = [];
let running = false;

function step(): void {
  const request = queue.shift();
  if (request === undefined) {
    running = false;
    return;
  }
  const reply = run(request);
  if ('data' in reply) parentPort!.postMessage(reply, [reply.data]);
  else parentPort!.postMessage(reply);
  setImmediate(step);
}

parentPort?.on('message', (request: Lz4Request) => {
  queue.push(request);
  if (running) return;
  running = true;
  setImmediate(step);
});
