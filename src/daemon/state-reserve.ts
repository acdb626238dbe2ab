/**
 * The state reserve of a secondary's log filesystem: fetch never writes its copies into the
 * last `stateReserve` bytes of free space. Replay's own state files (its position, the dirty
 * mark, the version chain) are small and written aside then renamed; they must always fit,
 * because only replay lets the copies go that fill the filesystem. Without the reserve,
 * fetch filled the filesystem to the last block, replay could not save its next dirty mark,
 * and neither could go on.
 *
 * Fetch asks `room(bytes)` before it appends or creates a copy; `room` throws
 * `MarsError('ENOSPC')` when the write would reach into the reserve, and fetch pauses
 * ('paused-no-space') and retries as for a full filesystem. statfs is not called for every
 * append: only when half the room above the reserve seen at the last look may be used up,
 * or `stateReserveCheckMs` after the last look (other writers share the filesystem).
 */
import { MarsError } from '../core/errors.js';
import { thresholdBytes, type SpaceLimits } from '../space/index.js';

export interface FilesystemLook {
  readonly sizeBytes: number;
  readonly freeBytes: number;
}

export interface StateReserveOptions {
  readonly dir: string;
  readonly limits: Pick<SpaceLimits, 'stateReserve' | 'stateReserveCheckMs'>;
  readonly nowMs: () => number;
  /** Looks at the filesystem (marsd: statfs of `dir`, the space monitor's `lookAtFilesystem`). */
  readonly look: (dir: string) => Promise<FilesystemLook>;
}

export class StateReserve {
  private last: { atMs: number; roomBytes: number } | undefined;
  /** Bytes let through since the last look. */
  private sinceLookBytes = 0;
  private looks = 0;
  /** The ask under way (room() runs them one after another). */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly o: StateReserveOptions) {}

  /** statfs calls so far (tests: most appends need none). */
  get lookCount(): number {
    return this.looks;
  }

  /**
   * Resolves when `bytes` more fit above the reserve; throws MarsError('ENOSPC') when they
   * do not. One ask at a time (every resource's fetch shares the reserve): two asks that
   * each saw the whole room at one look would both be let through.
   */
  room(bytes: number): Promise<void> {
    const asked = this.queue.then(() => this.roomNow(bytes));
    this.queue = asked.catch(() => undefined);
    return asked;
  }

  private async roomNow(bytes: number): Promise<void> {
    const last = this.last;
    const nowMs = this.o.nowMs();
    if (last !== undefined && nowMs - last.atMs < this.o.limits.stateReserveCheckMs && this.sinceLookBytes + bytes <= last.roomBytes / 2) {
      this.sinceLookBytes += bytes;
      return;
    }
    const fs = await this.o.look(this.o.dir);
    this.looks++;
    const reserveBytes = thresholdBytes(fs.sizeBytes, this.o.limits.stateReserve);
    // What was let through since the last look may not be written yet (statfs does not
    // count it): counted as used, once, at this look.
    const roomBytes = fs.freeBytes - reserveBytes - this.sinceLookBytes;
    this.last = { atMs: nowMs, roomBytes };
    this.sinceLookBytes = 0;
    if (bytes > roomBytes) {
      this.last = undefined; // look again next time: replay or an operator may free space any moment
      throw new MarsError('ENOSPC', `log filesystem ${this.o.dir}: ${Math.max(0, fs.freeBytes)} bytes free, the last ${reserveBytes} are kept for replay's state files`);
    }
    this.sinceLookBytes = bytes;
  }
}
