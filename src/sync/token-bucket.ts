/**
 * A token bucket for the sync rate limit, with time as an input (a Clock), so tests
 * check the limit without waiting. Bytes are charged after they moved, so the bucket may
 * go into debt (an answer of a whole range arrives at once); no new range is asked for
 * until the debt is repaid. Over any interval t the bytes moved are therefore at most
 * rate·t + burst + what the ranges already asked for carry.
 */
import type { Clock } from '../core/clock.js';
import { assert } from '../core/errors.js';

const msPerS = 1000;

export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  /** `rateBytesPerS` 0 means unlimited. */
  constructor(private readonly clock: Clock, private rateBytesPerSValue: number, private readonly burstBytes: number) {
    assert(rateBytesPerSValue >= 0 && burstBytes > 0, 'bad token bucket parameters');
    this.tokens = burstBytes;
    this.lastMs = clock.nowMs();
  }

  get rateBytesPerS(): number {
    return this.rateBytesPerSValue;
  }

  /** Changes the rate (operator); tokens already earned are kept, up to the burst. */
  setRate(rateBytesPerS: number): void {
    assert(rateBytesPerS >= 0, 'negative rate');
    this.refill();
    this.rateBytesPerSValue = rateBytesPerS;
  }

  /** Charges bytes that moved. */
  take(bytes: number): void {
    if (this.rateBytesPerSValue === 0) return;
    this.refill();
    this.tokens -= bytes;
  }

  /** How long until the bucket is out of debt (0: go on now). */
  delayMs(): number {
    if (this.rateBytesPerSValue === 0) return 0;
    this.refill();
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * msPerS) / this.rateBytesPerSValue);
  }

  private refill(): void {
    const nowMs = this.clock.nowMs();
    const elapsedMs = Math.max(0, nowMs - this.lastMs);
    this.lastMs = nowMs;
    this.tokens = Math.min(this.burstBytes, this.tokens + (elapsedMs * this.rateBytesPerSValue) / msPerS);
  }
}
