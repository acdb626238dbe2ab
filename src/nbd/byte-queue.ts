/**
 * An incremental reader over the chunks a socket delivers. Protocol parsers ask "are N
 * bytes there?" and then take them; a header that lies inside one chunk is read in place
 * (no copy), only a record that straddles chunks is copied, and payloads are copied
 * exactly once into a buffer of their own size. A chunk may also be borrowed (a view of a
 * read buffer the socket reuses): whatever of it is unread when the reader is done is
 * copied (pushBorrowed, keepBorrowed). Nothing here limits growth: the owner
 * pauses the socket (see NbdConnection), which is what bounds the queue.
 */
import { assert } from '../core/errors.js';

export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Index of the first unread chunk in `chunks`. */
  private first = 0;
  /** Read position inside chunks[first]. */
  private headBytes = 0;
  private lengthBytesNow = 0;
  /** The chunk queued by pushBorrowed and not yet copied by keepBorrowed. */
  private borrowed: Buffer | undefined;

  get lengthBytes(): number {
    return this.lengthBytesNow;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.lengthBytesNow += chunk.length;
  }

  /**
   * Queues a view of memory that its owner rewrites soon (a socket's reusable read
   * buffer): it may be read like any chunk, but before the owner rewrites it the caller
   * must call keepBorrowed(), which copies whatever of it is still unread. At most one
   * borrowed chunk is queued at a time.
   */
  pushBorrowed(view: Buffer): void {
    assert(this.borrowed === undefined, 'a borrowed chunk is still queued: keepBorrowed() was not called');
    if (view.length === 0) return;
    this.borrowed = view;
    this.push(view);
  }

  /** Copies the unread rest of the borrowed chunk, if any, into memory of the queue's own; the view is no longer referenced. */
  keepBorrowed(): void {
    const view = this.borrowed;
    if (view === undefined) return;
    this.borrowed = undefined;
    const index = this.chunks.lastIndexOf(view);
    if (index < this.first) return; // read to the end already (or dropped by clear)
    const start = index === this.first ? this.headBytes : 0;
    this.chunks[index] = Buffer.from(view.subarray(start));
    if (index === this.first) this.headBytes = 0;
  }

  clear(): void {
    this.borrowed = undefined;
    this.chunks = [];
    this.first = 0;
    this.headBytes = 0;
    this.lengthBytesNow = 0;
  }

  /**
   * The next `n` bytes without consuming them: a view into the chunk when they lie in
   * one, else a copy. Chunks are never written to, so a view stays valid, except a view
   * of a borrowed chunk: that one is valid only until its owner reuses the memory, so use
   * it at once. A view does keep its whole chunk alive, which is why payloads use takeCopy.
   */
  peek(n: number): Buffer {
    assert(n <= this.lengthBytesNow, `peek(${n}) beyond ${this.lengthBytesNow} queued bytes`);
    const head = this.chunks[this.first];
    if (head !== undefined && head.length - this.headBytes >= n) {
      return head.subarray(this.headBytes, this.headBytes + n);
    }
    const target = Buffer.allocUnsafe(n);
    this.copyOut(target, false);
    return target;
  }

  /** Consumes and returns the next `n` bytes: a view when they lie in one chunk, else a copy. */
  take(n: number): Buffer {
    const view = this.peek(n);
    this.skip(n);
    return view;
  }

  /** Consumes the next `n` bytes into a fresh buffer of exactly `n` bytes (one copy, no shared memory). */
  takeCopy(n: number): Buffer {
    assert(n <= this.lengthBytesNow, `takeCopy(${n}) beyond ${this.lengthBytesNow} queued bytes`);
    const target = Buffer.allocUnsafe(n);
    this.copyOut(target, true);
    return target;
  }

  /** Consumes the next `target.length` bytes into `target` (one copy); returns `target`. */
  takeInto(target: Buffer): Buffer {
    assert(target.length <= this.lengthBytesNow, `takeInto(${target.length}) beyond ${this.lengthBytesNow} queued bytes`);
    this.copyOut(target, true);
    return target;
  }

  /** Discards up to `n` bytes; returns how many were discarded. */
  skip(n: number): number {
    let remaining = Math.min(n, this.lengthBytesNow);
    const skipped = remaining;
    while (remaining > 0) {
      const head = this.chunks[this.first];
      assert(head !== undefined, 'queue length disagrees with its chunks');
      const available = head.length - this.headBytes;
      if (available > remaining) {
        this.headBytes += remaining;
        break;
      }
      remaining -= available;
      this.dropHead();
    }
    this.lengthBytesNow -= skipped;
    return skipped;
  }

  private dropHead(): void {
    this.chunks[this.first] = EMPTY;
    this.first += 1;
    this.headBytes = 0;
    if (this.first >= COMPACT_AFTER_CHUNKS || this.first === this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }

  /** Copies target.length bytes from the front into target, consuming them if `consume`. */
  private copyOut(target: Buffer, consume: boolean): void {
    let written = 0;
    let index = this.first;
    let start = this.headBytes;
    while (written < target.length) {
      const chunk = this.chunks[index];
      assert(chunk !== undefined, 'queue length disagrees with its chunks');
      const count = Math.min(chunk.length - start, target.length - written);
      chunk.copy(target, written, start, start + count);
      written += count;
      index += 1;
      start = 0;
    }
    if (consume) this.skip(target.length);
  }
}

const EMPTY = Buffer.alloc(0);
const COMPACT_AFTER_CHUNKS = 64;
