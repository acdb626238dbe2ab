/**
 * Time is an input. The core never reads the wall clock itself; shells pass a Clock.
 */
export interface Clock {
  /** Milliseconds since the epoch (or since the start of a simulation). */
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock that a test or simulator moves by hand. */
export class ManualClock implements Clock {
  private timeMs: number;
  constructor(startMs = 0) {
    this.timeMs = startMs;
  }
  nowMs(): number {
    return this.timeMs;
  }
  advance(deltaMs: number): void {
    this.timeMs += deltaMs;
  }
}
