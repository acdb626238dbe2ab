import type { Clock } from './clock.js';

/**
 * A Lamport clock whose stamps stay close to physical time (a hybrid clock): a new stamp
 * is max(last + 1, now in microseconds). Stamps received from elsewhere move it forward,
 * but never more than `futureSkewMsMax` ahead of the local time source, so one host
 * with a wrong clock cannot drag the cluster into the far future.
 */
export class LamportClock {
  static readonly futureSkewMsMax = 60_000;
  private lastStamp = 0n;
  constructor(private readonly clock: Clock) {}

  /** A fresh stamp, strictly greater than every stamp issued or observed before. */
  tick(): bigint {
    const physical = BigInt(Math.floor(this.clock.nowMs())) * 1000n;
    this.lastStamp = physical > this.lastStamp ? physical : this.lastStamp + 1n;
    return this.lastStamp;
  }

  /** Advance past a stamp seen in a message or on disk; far-future stamps are clamped. */
  observe(stamp: bigint): bigint {
    const limit = BigInt(Math.floor(this.clock.nowMs() + LamportClock.futureSkewMsMax)) * 1000n;
    const clamped = stamp > limit ? limit : stamp;
    if (clamped > this.lastStamp) this.lastStamp = clamped;
    return clamped;
  }

  peek(): bigint {
    return this.lastStamp;
  }
}
