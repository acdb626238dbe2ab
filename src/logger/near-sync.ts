/**
 * Near-sync mode of a resource (off by default): the primary answers a FLUSH, and a
 * write, trim or zeroes with FUA, only once its log is durable here *and* at least K
 * other members acknowledged (SYNCED, src/fetch/ack-protocol.ts) that their copy of the
 * log is durable up to the log's end as it was when the local flush finished.
 *
 * If they do not within the timeout, the resource falls back to asynchronous replication:
 * every waiting request is answered, later ones are answered as soon as the log is
 * durable here, and the fallback is reported (view, status, events, metrics, the log).
 * It returns to near-sync by itself as soon as K members acknowledge the whole durable
 * log again. Nothing is lost by a fallback: the records are in the primary's durable log
 * as in asynchronous mode, and fetch goes on shipping them.
 *
 * The gate has no I/O of its own; clock and timers are parameters.
 */
import type { Clock } from '../core/clock.js';
import type { Timers, TimerHandle } from '../core/timers.js';
import type { BlockBackend } from '../nbd/backend.js';

export type SyncModeName = 'async' | 'near-sync';

/** The resource's choice, as the cluster metadata holds it (resource/R/sync-mode). */
export interface SyncMode {
  readonly mode: SyncModeName;
  /** How many members besides the primary must hold the records durably. */
  readonly members: number;
  /** How long a FLUSH waits for them before the resource falls back to asynchronous. */
  readonly timeoutMs: number;
}

export const asyncMode: SyncMode = { mode: 'async', members: 1, timeoutMs: 0 };
/** The defaults of `marsadm set-sync-mode R near-sync`. */
export const nearSyncMembersDefault = 1;
export const nearSyncTimeoutMsDefault = 5_000;
/** The longest timeout `set-sync-mode` accepts (an hour). */
export const nearSyncTimeoutMsMax = 3_600_000;
/** FLUSH and FUA requests waiting at once, per resource (NBD bounds them further: requests in flight per connection). */
export const nearSyncWaitersMax = 65_536;

/** A place in the primary's log: log number, and bytes into that log file. */
export interface LogPoint {
  readonly logNumber: number;
  readonly endOffsetBytes: number;
}

/** `off`: asynchronous; `near-sync`: flushes wait for K members; `fallen-back`: near-sync was asked for, the members did not keep up. */
export type NearSyncState = 'off' | 'near-sync' | 'fallen-back';

export interface NearSyncStatus {
  readonly mode: SyncModeName;
  readonly state: NearSyncState;
  readonly members: number;
  readonly timeoutMs: number;
  /** Requests waiting now. */
  readonly waiting: number;
  /** How often it fell back since marsd started. */
  readonly fallbacks: number;
  /** Why it fell back last (while fallen back). */
  readonly reason: string | null;
  /** What each member acknowledged last, by host. */
  readonly acked: Record<string, LogPoint>;
}

export interface NearSyncGateOptions {
  readonly clock: Clock;
  readonly timers: Timers;
  /** The resource's sync mode now (read at every flush: a change holds from the next one). */
  readonly mode: () => SyncMode;
  /** The durable end of the log here (for the return to near-sync). */
  readonly durableEnd: () => LogPoint;
  /** Called when the state changes, with why. */
  readonly onChange?: (state: NearSyncState, why: string) => void;
}

function covers(acked: LogPoint, target: LogPoint): boolean {
  return acked.logNumber > target.logNumber || (acked.logNumber === target.logNumber && acked.endOffsetBytes >= target.endOffsetBytes);
}

interface Waiter {
  readonly target: LogPoint;
  readonly resolve: () => void;
  readonly timer: TimerHandle;
}

export class NearSyncGate {
  private readonly acked = new Map<string, LogPoint>();
  private readonly waiters = new Set<Waiter>();
  private fallenBack = false;
  private fallbacks = 0;
  private reason: string | null = null;
  private closed = false;

  constructor(private readonly o: NearSyncGateOptions) {}

  status(): NearSyncStatus {
    const mode = this.o.mode();
    return {
      mode: mode.mode,
      state: this.state(mode),
      members: mode.members,
      timeoutMs: mode.timeoutMs,
      waiting: this.waiters.size,
      fallbacks: this.fallbacks,
      reason: this.fallenBack ? this.reason : null,
      acked: Object.fromEntries([...this.acked].sort(([a], [b]) => (a < b ? -1 : 1))),
    };
  }

  private state(mode: SyncMode): NearSyncState {
    if (mode.mode === 'async') return 'off';
    return this.fallenBack ? 'fallen-back' : 'near-sync';
  }

  /** How many members acknowledged at least `target`. */
  private holders(target: LogPoint): number {
    let n = 0;
    for (const point of this.acked.values()) if (covers(point, target)) n++;
    return n;
  }

  /** A member says its copy of log `logNumber` is durable up to `endOffsetBytes`. */
  acknowledge(host: string, point: LogPoint): void {
    const before = this.acked.get(host);
    if (before !== undefined && covers(before, point)) return;
    this.acked.set(host, point);
    const mode = this.o.mode();
    if (mode.mode === 'async') {
      this.releaseAll();
      return;
    }
    for (const w of [...this.waiters]) if (this.holders(w.target) >= mode.members) this.release(w);
    if (this.fallenBack && this.holders(this.o.durableEnd()) >= mode.members) {
      this.fallenBack = false;
      this.reason = null;
      this.o.onChange?.('near-sync', `${mode.members} member(s) hold the whole durable log again`);
    }
  }

  /** Resolves once `target` (a durable end of the log here) is held by enough members, or at once when not in near-sync. */
  waitFor(target: LogPoint): Promise<void> {
    const mode = this.o.mode();
    if (this.closed || mode.mode === 'async' || this.fallenBack || this.holders(target) >= mode.members || this.waiters.size >= nearSyncWaitersMax) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: Waiter = { target, resolve, timer: this.o.timers.setTimeout(() => this.timedOut(waiter), mode.timeoutMs) };
      this.waiters.add(waiter);
    });
  }

  private timedOut(waiter: Waiter): void {
    if (!this.waiters.has(waiter)) return;
    const mode = this.o.mode();
    if (mode.mode === 'near-sync' && !this.fallenBack) {
      this.fallenBack = true;
      this.fallbacks++;
      const have = this.holders(waiter.target);
      this.reason = `${have} of ${mode.members} member(s) acknowledged log ${waiter.target.logNumber} up to ${waiter.target.endOffsetBytes} within ${mode.timeoutMs} ms`;
      this.o.onChange?.('fallen-back', this.reason);
    }
    this.releaseAll();
  }

  private release(w: Waiter): void {
    this.waiters.delete(w);
    this.o.timers.clearTimeout(w.timer);
    w.resolve();
  }

  private releaseAll(): void {
    for (const w of [...this.waiters]) this.release(w);
  }

  /** Answers every waiting request and lets later ones through (marsd stops: no acknowledgement will come). */
  close(): void {
    this.closed = true;
    this.releaseAll();
  }
}

/**
 * The block backend of a primary in near-sync mode: the logger's, with FLUSH and FUA
 * answered only once the gate lets them through. Reads and plain writes pass unchanged.
 */
export class NearSyncBackend implements BlockBackend {
  constructor(
    private readonly inner: BlockBackend,
    private readonly gate: NearSyncGate,
    private readonly durableEnd: () => LogPoint,
  ) {}

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get canMultiConn(): boolean {
    return this.inner.canMultiConn;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.inner.read(offsetBytes, lengthBytes);
  }

  async write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    await this.inner.write(offsetBytes, data, fua);
    if (fua) await this.gate.waitFor(this.durableEnd());
  }

  async flush(): Promise<void> {
    await this.inner.flush();
    await this.gate.waitFor(this.durableEnd());
  }

  async trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    await this.inner.trim(offsetBytes, lengthBytes, fua);
    if (fua) await this.gate.waitFor(this.durableEnd());
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    await this.inner.writeZeroes(offsetBytes, lengthBytes, fua);
    if (fua) await this.gate.waitFor(this.durableEnd());
  }
}
