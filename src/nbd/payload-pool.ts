/**
 * Buffers for large WRITE payloads, given back by the backend once it no longer needs
 * them and handed out again.
 *
 * Why: every new Buffer counts as external memory for V8, and at hundreds of MiB/s of
 * 1 MiB writes a fresh Buffer per payload made V8 run a full garbage collection several
 * times a second (about a quarter of marsd's CPU in a `perf` profile of sequential
 * writes), and every fresh buffer page-faulted on its first copy. A buffer that comes
 * back is reused for the next payload of the same length without either cost.
 *
 * Rules (what keeps a reused buffer from being read by someone else):
 * - the pool hands out whole buffers of exactly the asked length, each with an
 *   ArrayBuffer of its own, and takes back only a buffer it handed out and has not taken
 *   back since; anything else is ignored (left to the garbage collector);
 * - giving a buffer back says "nobody reads or writes it any more": only the owner of
 *   its last use may do so (the logger, once writeback has written it and no read can
 *   still copy from it: see logger.ts). A buffer never given back is simply collected;
 * - at most `payloadPoolFreeBytesMax` bytes wait for reuse; beyond that a buffer given
 *   back is dropped.
 */

/** Payloads at least this large come from the pool (small ones cost little to allocate). */
export const payloadPoolBytesMin = 64 * 1024;
/** Bytes of given-back buffers kept for reuse, all lengths together. */
export const payloadPoolFreeBytesMax = 64 * 1024 * 1024;

export interface PayloadPoolStats {
  /** Buffers handed out: reused, and newly allocated. */
  reused: number;
  allocated: number;
  /** Buffers given back and kept, and given back but dropped (pool full). */
  kept: number;
  dropped: number;
  freeBytes: number;
}

export class PayloadPool {
  private readonly free = new Map<number, Buffer[]>();
  private freeBytesNow = 0;
  /** Handed out and not yet given back. */
  private readonly issued = new WeakSet<ArrayBufferLike>();
  private readonly counts = { reused: 0, allocated: 0, kept: 0, dropped: 0 };

  constructor(private readonly freeBytesMax = payloadPoolFreeBytesMax) {}

  /** A buffer of exactly `lengthBytes` (contents undefined): reused when one of that length is free. */
  take(lengthBytes: number): Buffer {
    const list = this.free.get(lengthBytes);
    let buffer = list?.pop();
    if (buffer !== undefined) {
      this.freeBytesNow -= lengthBytes;
      if (list!.length === 0) this.free.delete(lengthBytes);
      this.counts.reused++;
    } else {
      buffer = Buffer.allocUnsafeSlow(lengthBytes);
      this.counts.allocated++;
    }
    this.issued.add(buffer.buffer);
    return buffer;
  }

  /** Whether `data` lies in a buffer handed out by this pool and not yet given back. */
  holds(data: Buffer): boolean {
    return this.issued.has(data.buffer);
  }

  /**
   * Gives back a whole buffer that `take` handed out; nobody may use it any more. A view,
   * a foreign buffer, or one given back already is ignored.
   */
  give(buffer: Buffer): void {
    const whole = buffer.byteOffset === 0 && buffer.length === buffer.buffer.byteLength;
    if (!whole || !this.issued.has(buffer.buffer)) return;
    this.issued.delete(buffer.buffer);
    if (this.freeBytesNow + buffer.length > this.freeBytesMax) {
      this.counts.dropped++;
      return;
    }
    let list = this.free.get(buffer.length);
    if (list === undefined) this.free.set(buffer.length, (list = []));
    list.push(buffer);
    this.freeBytesNow += buffer.length;
    this.counts.kept++;
  }

  stats(): PayloadPoolStats {
    return { ...this.counts, freeBytes: this.freeBytesNow };
  }
}

/** The pool of this process: NBD connections take from it, the logger gives back to it. */
export const payloadPool = new PayloadPool();
