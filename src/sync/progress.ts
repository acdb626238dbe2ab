/**
 * Progress bookkeeping of a sync target, pure: which part of the device is copied (a
 * contiguous prefix, plus ranges finished out of order beyond it), how fast, and what is
 * left — the `sync-rest` that `view` shows. The prefix is what is persisted, because a
 * restart resumes from one offset. Time is an input.
 */
import { assert } from '../core/errors.js';
import { rateSamplesMax, rateWindowMs } from './limits.js';

const msPerS = 1000;

interface Sample {
  readonly timeMs: number;
  readonly doneBytes: number;
}

export class ProgressBook {
  private prefixBytes: number;
  /** Finished ranges beyond the prefix: start → end. */
  private readonly beyond = new Map<number, number>();
  private samples: Sample[] = [];

  constructor(readonly sizeBytes: number, startBytes: number) {
    assert(startBytes >= 0 && startBytes <= sizeBytes, 'progress start out of range');
    this.prefixBytes = startBytes;
  }

  /** Bytes from the start of the device that are copied (written, not necessarily synced). */
  get doneBytes(): number {
    return this.prefixBytes;
  }

  get restBytes(): number {
    return this.sizeBytes - this.prefixBytes;
  }

  get complete(): boolean {
    return this.prefixBytes === this.sizeBytes;
  }

  /** Marks [offset, offset + length) as copied; ranges may finish in any order, and twice. */
  finished(offsetBytes: number, lengthBytes: number, nowMs: number): void {
    const end = offsetBytes + lengthBytes;
    assert(offsetBytes >= 0 && end <= this.sizeBytes && lengthBytes > 0, 'finished range out of the device');
    if (offsetBytes > this.prefixBytes) {
      this.beyond.set(offsetBytes, Math.max(end, this.beyond.get(offsetBytes) ?? 0));
      return;
    }
    this.prefixBytes = Math.max(this.prefixBytes, end);
    for (;;) {
      let advanced = false;
      for (const [start, stop] of this.beyond) {
        if (start > this.prefixBytes) continue;
        this.beyond.delete(start);
        this.prefixBytes = Math.max(this.prefixBytes, stop);
        advanced = true;
      }
      if (!advanced) break;
    }
    this.sample(nowMs);
  }

  /** Bytes per second over the last `rateWindowMs` (0 until two samples exist). */
  rateBytesPerS(nowMs: number): number {
    const recent = this.samples.filter((s) => nowMs - s.timeMs <= rateWindowMs);
    const first = recent[0];
    const last = recent[recent.length - 1];
    if (first === undefined || last === undefined || last.timeMs <= first.timeMs) return 0;
    return ((last.doneBytes - first.doneBytes) * msPerS) / (last.timeMs - first.timeMs);
  }

  /** Forgets the rate (after a pause or a disconnect the old pace says nothing). */
  resetRate(): void {
    this.samples = [];
  }

  private sample(nowMs: number): void {
    const last = this.samples[this.samples.length - 1];
    // One sample per distinct millisecond step keeps the window meaningful at any speed.
    if (last !== undefined && nowMs - last.timeMs < rateWindowMs / rateSamplesMax) return;
    this.samples.push({ timeMs: nowMs, doneBytes: this.prefixBytes });
    if (this.samples.length > rateSamplesMax) this.samples.shift();
  }
}
