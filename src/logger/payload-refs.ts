/**
 * When the logger may give a WRITE's payload buffer back to the pool (nbd/payload-pool.ts).
 *
 * A payload from the pool is referenced by the shadow index (its extent, and views of it
 * when a newer write splits the extent), by a writeback round that writes it, and by a
 * read that captured its extent before awaiting the device. The shadow index reports its
 * references (ShadowRefs); when the last one goes, the buffer *retires*. Retired buffers
 * go back to the pool only at a moment when neither of the others can hold one: between
 * two writeback rounds (the loop is the only writer of shadow data, and its round's
 * writes are over) while no read with captured extents is in flight. Until then they
 * wait, at most `retiredBytesMax` of them; beyond that a retiring buffer is left to the
 * garbage collector. Giving back too late costs memory; giving back too early would let
 * a new payload overwrite bytes that are still to be written or read, so every doubt
 * resolves to "later" or "never".
 */
import type { PayloadPool } from '../nbd/payload-pool.js';
import type { ShadowRefs } from './shadow-index.js';

/** Bytes of retired buffers waiting for a moment to go back to the pool. */
export const retiredBytesMax = 64 * 1024 * 1024;

export class PayloadRefs implements ShadowRefs {
  private readonly counts = new Map<ArrayBufferLike, number>();
  private retired: Buffer[] = [];
  private retiredBytes = 0;

  constructor(private readonly pool: PayloadPool) {}

  hold(data: Buffer): void {
    const key = data.buffer;
    const n = this.counts.get(key);
    if (n !== undefined) this.counts.set(key, n + 1);
    else if (this.pool.holds(data)) this.counts.set(key, 1);
  }

  drop(data: Buffer): void {
    const key = data.buffer;
    const n = this.counts.get(key);
    if (n === undefined) return;
    if (n > 1) {
      this.counts.set(key, n - 1);
      return;
    }
    this.counts.delete(key);
    if (this.retiredBytes + key.byteLength > retiredBytesMax) return;
    this.retired.push(Buffer.from(key));
    this.retiredBytes += key.byteLength;
  }

  /** Gives every retired buffer back; call only when no writeback round and no capturing read is in flight. */
  giveBack(): void {
    if (this.retired.length === 0) return;
    for (const buffer of this.retired) this.pool.give(buffer);
    this.retired = [];
    this.retiredBytes = 0;
  }

  /** Buffers the shadow index references now, and retired ones waiting (for tests and status). */
  stats(): { referenced: number; retired: number } {
    return { referenced: this.counts.size, retired: this.retired.length };
  }
}
