/**
 * The simulator's time: one virtual clock and one queue of timers for every host, disk
 * and link. Nothing waits for real time. The loop lets every promise that can settle
 * settle (the cores run on promises only, and the simulated disks and links settle theirs
 * from timers of this queue), then fires the earliest timer, and so on. Timers due at the
 * same moment fire in the order they were set, so a run is a function of its seed.
 *
 * Each host gets its own `Timers` (an owner): a crash cancels every timer the dead
 * process had set, as killing a process does.
 *
 * This file is an edge of the simulator: `settle()` waits for one turn of Node's event
 * loop (setImmediate), after which no promise of the simulation is still runnable.
 */
import type { Clock } from '../core/clock.js';
import type { TimerHandle, Timers } from '../core/timers.js';

interface Pending {
  readonly id: number;
  readonly dueMs: number;
  readonly owner: SimTimers;
  readonly callback: () => void;
}

/** The most timers that may wait at once; more is a leak in a core (a limit the run checks). */
export const simTimersPendingMax = 100_000;

export class Scheduler implements Clock {
  private timeMs = 0;
  private nextId = 1;
  /** A binary heap by (dueMs, id). */
  private heap: Pending[] = [];
  private readonly cancelled = new Set<number>();
  firedTimers = 0;

  nowMs(): number {
    return this.timeMs;
  }

  /** Timers for one owner (a host's process, a disk, the network). */
  timers(name: string): SimTimers {
    return new SimTimers(this, name);
  }

  get pendingCount(): number {
    return this.heap.length - this.cancelled.size;
  }

  /** @internal */
  add(owner: SimTimers, callback: () => void, delayMs: number): number {
    const id = this.nextId++;
    this.push({ id, dueMs: this.timeMs + Math.max(0, Math.floor(delayMs)), owner, callback });
    return id;
  }

  /** @internal */
  cancel(id: number): void {
    this.cancelled.add(id);
  }

  /** Lets every runnable promise settle (one turn of the real event loop). */
  settle(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  /**
   * Runs until `done()` holds (checked after every settle) or virtual time reaches
   * `untilMs` (then it stands at `untilMs`). Returns whether `done()` held.
   */
  async runUntil(done: () => boolean, untilMs: number): Promise<boolean> {
    for (;;) {
      await this.settle();
      if (done()) return true;
      const next = this.popDue(untilMs);
      if (next === undefined) {
        this.timeMs = Math.max(this.timeMs, untilMs);
        await this.settle();
        return done();
      }
      this.timeMs = Math.max(this.timeMs, next.dueMs);
      this.firedTimers++;
      if (!next.owner.dead) next.callback();
    }
  }

  /** Runs for `ms` of virtual time. */
  async runFor(ms: number): Promise<void> {
    await this.runUntil(() => false, this.timeMs + ms);
  }

  private popDue(untilMs: number): Pending | undefined {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || top.dueMs > untilMs) return undefined;
      this.pop();
      if (this.cancelled.delete(top.id)) continue;
      return top;
    }
  }

  private less(a: Pending, b: Pending): boolean {
    return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.id < b.id);
  }

  private push(p: Pending): void {
    const h = this.heap;
    h.push(p);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

/** The timers of one owner; `kill()` cancels them all for good (a crashed process). */
export class SimTimers implements Timers {
  dead = false;
  private readonly mine = new Set<number>();

  constructor(
    private readonly scheduler: Scheduler,
    readonly name: string,
  ) {}

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    if (this.dead) return { id: 0 };
    let id = 0;
    id = this.scheduler.add(
      this,
      () => {
        this.mine.delete(id);
        callback();
      },
      delayMs,
    );
    this.mine.add(id);
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    if (!('id' in handle) || typeof handle.id !== 'number' || !this.mine.delete(handle.id)) return;
    this.scheduler.cancel(handle.id);
  }

  /** A promise that resolves after `ms` of virtual time (never, once killed). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  kill(): void {
    this.dead = true;
    for (const id of this.mine) this.scheduler.cancel(id);
    this.mine.clear();
  }
}
