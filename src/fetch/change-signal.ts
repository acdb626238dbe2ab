/**
 * A change notifier for "tail -f" waits: `next()` returns a promise that resolves at the
 * next `notify()`. Every waiter of one generation shares one promise, so waiting costs no
 * listener per call and nothing accumulates however long a log stays idle.
 */
export class ChangeSignal {
  private pending: Promise<void> | undefined;
  private resolvePending: (() => void) | undefined;

  /** Resolves at the next notify(). */
  next(): Promise<void> {
    if (this.pending === undefined) {
      this.pending = new Promise<void>((resolve) => {
        this.resolvePending = resolve;
      });
    }
    return this.pending;
  }

  notify(): void {
    const resolve = this.resolvePending;
    this.pending = undefined;
    this.resolvePending = undefined;
    resolve?.();
  }
}
