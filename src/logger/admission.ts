/**
 * A FIFO gate on the bytes that writes may hold in memory. Writes enter in arrival
 * order (so a large write is not starved by small ones) and wait, without polling,
 * while the budget is spent; writeback frees budget as it drains the shadow index.
 */
import { assert } from '../core/errors.js';

interface Waiter {
  costBytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Admission {
  private reservedBytes = 0;
  private shadowBytes = 0;
  private readonly waiters: Waiter[] = [];
  private closedError: Error | undefined = undefined;

  /** `onWait` is told whenever a request has to wait (so that whoever frees budget hurries). */
  constructor(
    readonly budgetBytes: number,
    readonly waitersMax: number,
    private readonly onWait: () => void = () => undefined,
  ) {}

  get used(): number {
    return this.reservedBytes + this.shadowBytes;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  private fits(costBytes: number): boolean {
    // A lone request larger than the whole budget is admitted when nothing else is held.
    return this.used + costBytes <= this.budgetBytes || this.used === 0;
  }

  /** Takes `costBytes` now if nobody waits and they fit (no promise); false otherwise (then use acquire). */
  tryAcquire(costBytes: number): boolean {
    if (this.closedError !== undefined || this.waiters.length > 0 || !this.fits(costBytes)) return false;
    this.reservedBytes += costBytes;
    return true;
  }

  acquire(costBytes: number): Promise<void> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    if (this.tryAcquire(costBytes)) return Promise.resolve();
    assert(this.waiters.length < this.waitersMax, 'admission queue beyond its limit (callers bound their in-flight requests)');
    const waiting = new Promise<void>((resolve, reject) => this.waiters.push({ costBytes, resolve, reject }));
    this.onWait();
    return waiting;
  }

  /** Gives back a reservation (the write failed, or its bytes are now in the shadow index). */
  release(costBytes: number): void {
    this.reservedBytes -= costBytes;
    assert(this.reservedBytes >= 0, 'admission released more than acquired');
    this.wake();
  }

  /** Tells the gate how many bytes the shadow index holds now. */
  setShadowBytes(bytes: number): void {
    this.shadowBytes = bytes;
    this.wake();
  }

  private wake(): void {
    while (this.waiters.length > 0 && this.fits(this.waiters[0]!.costBytes)) {
      const w = this.waiters.shift()!;
      this.reservedBytes += w.costBytes;
      w.resolve();
    }
  }

  /** Rejects every waiter and every later acquire with `err`. */
  close(err: Error): void {
    this.closedError = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}
