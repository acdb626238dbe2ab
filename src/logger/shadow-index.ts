/**
 * The shadow index: data that is answered (logged) but not yet written back to the
 * device. Reads overlay it on the device; writeback drains it. Extents never overlap:
 * a newer write replaces the covered parts of older extents, so superseded versions
 * are never written back (the original's "skip superseded versions").
 *
 * Memory: `bytes` counts extent payload plus a fixed overhead per extent; the logger
 * admits a write only while `bytes` stays under its limit. A piece split off a larger
 * buffer is copied when it would pin more than twice its size, so retained memory stays
 * within twice the counted bytes.
 */
import { assert } from '../core/errors.js';

export const extentOverheadBytes = 64;

export interface Extent {
  offsetBytes: number;
  lengthBytes: number;
  /** The data, or null for a range that reads as zeroes (TRIM, WRITE_ZEROES). */
  data: Buffer | null;
  /** Sequence number of the log record that produced it. */
  seq: number;
}

export function extentCostBytes(lengthBytes: number, isZero: boolean): number {
  return (isZero ? 0 : lengthBytes) + extentOverheadBytes;
}

/**
 * Told which data buffers the index references: `hold` once per extent that takes a
 * reference to `data` (or a view of it), `drop` once per extent that lets it go. Every
 * hold of an insert comes before its drops, so a count never touches zero while a piece
 * of the same buffer is still kept.
 */
export interface ShadowRefs {
  hold(data: Buffer): void;
  drop(data: Buffer): void;
}

export class ShadowIndex {
  /** Sorted by offsetBytes, non-overlapping. */
  private extents: Extent[] = [];
  private costBytes = 0;

  constructor(private readonly refs?: ShadowRefs) {}

  get bytes(): number {
    return this.costBytes;
  }

  get size(): number {
    return this.extents.length;
  }

  /** Index of the first extent whose end lies after `offsetBytes`. */
  private firstEndingAfter(offsetBytes: number): number {
    let low = 0;
    let high = this.extents.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      const e = this.extents[mid]!;
      if (e.offsetBytes + e.lengthBytes <= offsetBytes) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  private account(e: Extent, sign: 1 | -1): void {
    this.costBytes += sign * extentCostBytes(e.lengthBytes, e.data === null);
  }

  private piece(e: Extent, fromBytes: number, toBytes: number): Extent {
    const lengthBytes = toBytes - fromBytes;
    let data: Buffer | null = null;
    if (e.data !== null) {
      const view = e.data.subarray(fromBytes - e.offsetBytes, toBytes - e.offsetBytes);
      data = view.buffer.byteLength > 2 * lengthBytes + 4096 ? Buffer.from(view) : view;
    }
    return { offsetBytes: fromBytes, lengthBytes, data, seq: e.seq };
  }

  /** Records a newer write of [offsetBytes, offsetBytes + lengthBytes). */
  insert(offsetBytes: number, lengthBytes: number, data: Buffer | null, seq: number): void {
    assert(lengthBytes > 0, 'shadow insert of an empty range');
    assert(data === null || data.length === lengthBytes, 'shadow insert: data length mismatch');
    const endBytes = offsetBytes + lengthBytes;
    const first = this.firstEndingAfter(offsetBytes);
    let last = first;
    const replacement: Extent[] = [];
    const removed: Extent[] = [];
    while (last < this.extents.length && this.extents[last]!.offsetBytes < endBytes) {
      const old = this.extents[last]!;
      assert(old.seq < seq, 'shadow insert out of sequence order');
      this.account(old, -1);
      removed.push(old);
      if (old.offsetBytes < offsetBytes) replacement.push(this.piece(old, old.offsetBytes, offsetBytes));
      last++;
    }
    const added: Extent = { offsetBytes, lengthBytes, data, seq };
    replacement.push(added);
    if (last > first) {
      const old = this.extents[last - 1]!;
      const oldEnd = old.offsetBytes + old.lengthBytes;
      if (oldEnd > endBytes) replacement.push(this.piece(old, endBytes, oldEnd));
    }
    for (const e of replacement) {
      this.account(e, 1);
      if (e.data !== null) this.refs?.hold(e.data);
    }
    this.extents.splice(first, last - first, ...replacement);
    for (const e of removed) if (e.data !== null) this.refs?.drop(e.data);
  }

  /** The extents overlapping [offsetBytes, offsetBytes + lengthBytes), in offset order. */
  extentsIn(offsetBytes: number, lengthBytes: number): Extent[] {
    const endBytes = offsetBytes + lengthBytes;
    const found: Extent[] = [];
    for (let i = this.firstEndingAfter(offsetBytes); i < this.extents.length; i++) {
      const e = this.extents[i]!;
      if (e.offsetBytes >= endBytes) break;
      found.push(e);
    }
    return found;
  }

  /**
   * Fills `target` (which holds the device's bytes for [offsetBytes, +target.length))
   * with every shadowed byte of that range.
   */
  overlay(offsetBytes: number, target: Buffer): void {
    overlayExtents(this.extentsIn(offsetBytes, target.length), offsetBytes, target);
  }

  /** True if the whole range is shadowed, so a read need not touch the device. */
  covers(offsetBytes: number, lengthBytes: number): boolean {
    let at = offsetBytes;
    const endBytes = offsetBytes + lengthBytes;
    for (let i = this.firstEndingAfter(offsetBytes); i < this.extents.length && at < endBytes; i++) {
      const e = this.extents[i]!;
      if (e.offsetBytes > at) return false;
      at = e.offsetBytes + e.lengthBytes;
    }
    return at >= endBytes;
  }

  /** A copy of the extent list in offset order (for writeback). */
  snapshot(): Extent[] {
    return this.extents.slice();
  }

  /** Drops every extent produced by a record with seq <= `seqMax` (written back). */
  dropThrough(seqMax: number): void {
    const kept: Extent[] = [];
    const removed: Extent[] = [];
    for (const e of this.extents) {
      if (e.seq <= seqMax) {
        this.account(e, -1);
        removed.push(e);
      } else kept.push(e);
    }
    this.extents = kept;
    for (const e of removed) if (e.data !== null) this.refs?.drop(e.data);
  }
}

/** Copies the parts of `extents` that fall in [offsetBytes, +target.length) into `target`. */
export function overlayExtents(extents: readonly Extent[], offsetBytes: number, target: Buffer): void {
  const endBytes = offsetBytes + target.length;
  for (const e of extents) {
    const from = Math.max(e.offsetBytes, offsetBytes);
    const to = Math.min(e.offsetBytes + e.lengthBytes, endBytes);
    if (from >= to) continue;
    if (e.data === null) target.fill(0, from - offsetBytes, to - offsetBytes);
    else e.data.copy(target, from - offsetBytes, from - e.offsetBytes, to - e.offsetBytes);
  }
}
