/**
 * Timers are an input, like the clock: the core takes them as a parameter so that tests
 * (and the simulator) fire them by hand, in a fixed order, without waiting.
 * `systemTimers` is the one place outside the daemon's edge that touches the global timers.
 */
export type TimerHandle = { readonly id: number } | NodeJS.Timeout;

export interface Timers {
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** A repeating timer made of timeouts: `callback` every `intervalMs` until `stop()`. */
export function repeatEvery(timers: Timers, intervalMs: number, callback: () => void): { stop(): void } {
  let handle: TimerHandle | undefined;
  let stopped = false;
  const arm = (): void => {
    handle = timers.setTimeout(() => {
      if (stopped) return;
      arm();
      callback();
    }, intervalMs);
  };
  arm();
  return {
    stop: () => {
      stopped = true;
      if (handle !== undefined) timers.clearTimeout(handle);
    },
  };
}

/** Real timers; they do not keep the process alive on their own (sockets and servers do). */
/** Waits for `work` at most `limitMs`; its failure is left to whoever else awaits it. */
export async function waitAtMost(timers: Timers, limitMs: number, work: Promise<unknown>): Promise<void> {
  let timer: TimerHandle | undefined;
  await Promise.race([work.catch(() => undefined), new Promise<void>((resolve) => (timer = timers.setTimeout(resolve, limitMs)))]);
  if (timer !== undefined) timers.clearTimeout(timer);
}

export const systemTimers: Timers = {
  setTimeout(callback, delayMs) {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return timer;
  },
  clearTimeout(handle) {
    if (!('id' in handle)) clearTimeout(handle);
  },
};

/** Real timers that keep the process alive while they wait (as the global ones do): the default of the logger and replayer. */
export const heldTimers: Timers = {
  setTimeout(callback, delayMs) {
    return setTimeout(callback, delayMs);
  },
  clearTimeout(handle) {
    if (!('id' in handle)) clearTimeout(handle);
  },
};

interface Pending {
  readonly id: number;
  readonly dueMs: number;
  readonly callback: () => void;
}

/** Timers moved by hand, on a time line shared with a ManualClock if given one. */
export class ManualTimers implements Timers {
  private nextId = 1;
  private pending: Pending[] = [];

  constructor(private readonly now: () => number, private readonly advanceClock?: (deltaMs: number) => void) {}

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const id = this.nextId++;
    this.pending.push({ id, dueMs: this.now() + Math.max(0, delayMs), callback });
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    if ('id' in handle && typeof handle.id === 'number') this.pending = this.pending.filter((p) => p.id !== handle.id);
  }

  get count(): number {
    return this.pending.length;
  }

  /** The delay until the next timer fires, or undefined. */
  nextDelayMs(): number | undefined {
    const next = this.earliest();
    return next === undefined ? undefined : Math.max(0, next.dueMs - this.now());
  }

  /** Moves time forward by `deltaMs`, firing due timers in order of due time (then of creation). */
  advance(deltaMs: number): void {
    const endMs = this.now() + deltaMs;
    for (;;) {
      const next = this.earliest();
      if (next === undefined || next.dueMs > endMs) break;
      this.pending = this.pending.filter((p) => p !== next);
      this.advanceClock?.(next.dueMs - this.now());
      next.callback();
    }
    this.advanceClock?.(endMs - this.now());
  }

  private earliest(): Pending | undefined {
    let best: Pending | undefined;
    for (const p of this.pending) if (best === undefined || p.dueMs < best.dueMs || (p.dueMs === best.dueMs && p.id < best.id)) best = p;
    return best;
  }
}

/** A wait that doubles from `minMs` with each attempt (0, 1, 2, ...) and stays at `maxMs`. */
export function doublingDelayMs(attempt: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
}
