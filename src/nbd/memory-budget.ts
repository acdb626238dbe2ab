/**
 * The NBD server's process-wide budget for buffered request and reply bytes
 * (`bufferedBytesMax`, and `bufferedBytesPerAddressMax` for the connections of one source
 * address together). A connection takes a request's bytes before it reads the request;
 * when they do not fit, it registers a waker and stops reading its socket, and every
 * release wakes the waiters in the order they came. Nothing here fails a request: the
 * cost of a spent budget is TCP backpressure.
 */
export class MemoryBudget {
  private used = 0;
  private readonly usedByAddress = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  private peak = 0;

  constructor(
    readonly bytesMax: number,
    readonly perAddressBytesMax: number,
  ) {}

  get usedBytes(): number {
    return this.used;
  }

  /** The most ever held at once (for tests and status). */
  get peakBytes(): number {
    return this.peak;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /** Takes n bytes for `address` if they fit both limits; false (nothing taken) if not. */
  tryTake(address: string, n: number): boolean {
    const mine = this.usedByAddress.get(address) ?? 0;
    if (this.used + n > this.bytesMax || mine + n > this.perAddressBytesMax) return false;
    this.used += n;
    this.usedByAddress.set(address, mine + n);
    if (this.used > this.peak) this.peak = this.used;
    return true;
  }

  release(address: string, n: number): void {
    if (n <= 0) return;
    this.used -= n;
    const mine = (this.usedByAddress.get(address) ?? 0) - n;
    if (mine > 0) this.usedByAddress.set(address, mine);
    else this.usedByAddress.delete(address);
    for (const wake of [...this.waiters]) {
      if (this.waiters.has(wake)) wake();
    }
  }

  /** Calls `wake` after each release until `unwait`. */
  wait(wake: () => void): void {
    this.waiters.add(wake);
  }

  unwait(wake: () => void): void {
    this.waiters.delete(wake);
  }
}
