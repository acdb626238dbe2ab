/**
 * A byte rate over the last few seconds, for `view` (fetch and replay rates, remaining
 * time). Fixed memory: one counter per second of the window.
 */
import type { Clock } from '../core/clock.js';

/** Seconds the rate is averaged over. */
export const rateWindowS = 10;

export class RateMeter {
  private readonly buckets = new Array<number>(rateWindowS).fill(0);
  private bucketSecond: number;
  private readonly startedS: number;

  /**
   * `spanMinS`: the shortest span a rate is divided by. 1 (the default) shows a rate within
   * a second of the start; `rateWindowS` measures over the whole window from the start on
   * (what was not transferred before the start counts as 0), so a burst at the start (a
   * token bucket's allowance) shows as at most burst / window above a limit.
   */
  constructor(
    private readonly clock: Clock,
    private readonly spanMinS = 1,
  ) {
    this.bucketSecond = Math.floor(clock.nowMs() / 1000);
    this.startedS = this.bucketSecond;
  }

  add(bytes: number): void {
    this.advance();
    this.buckets[this.bucketSecond % rateWindowS]! += bytes;
  }

  /** Bytes per second over the window (or since the meter started, if shorter). */
  rateBytesPerS(): number {
    this.advance();
    const nowS = this.clock.nowMs() / 1000;
    const spanS = Math.min(rateWindowS, Math.max(this.spanMinS, nowS - this.startedS));
    return this.buckets.reduce((a, b) => a + b, 0) / spanS;
  }

  private advance(): void {
    const nowSecond = Math.floor(this.clock.nowMs() / 1000);
    const steps = Math.min(rateWindowS, nowSecond - this.bucketSecond);
    for (let i = 1; i <= steps; i++) this.buckets[(this.bucketSecond + i) % rateWindowS] = 0;
    if (nowSecond > this.bucketSecond) this.bucketSecond = nowSecond;
  }
}
