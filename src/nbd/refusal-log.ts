/**
 * Rate-limited lines for refused and dropped NBD connections: per source address and
 * reason, one line per `refusalLogQuietMs`; the next line says how many were suppressed
 * in between. A flood of connections costs a few lines, not one per connection.
 */
import { refusalLogEntriesMax } from './limits.js';

interface Seen {
  lastLoggedMs: number;
  suppressed: number;
}

export class NbdRefusalLog {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly log: (message: string) => void,
    private readonly quietMs: number,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** Logs `message` unless `address` was refused for `reason` within the quiet period. */
  refused(address: string, reason: string, message: string): void {
    const key = `${address}\u0000${reason}`;
    const now = this.nowMs();
    const seen = this.seen.get(key);
    if (seen !== undefined && now - seen.lastLoggedMs < this.quietMs) {
      seen.suppressed += 1;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.seen.delete(key);
    this.seen.set(key, { lastLoggedMs: now, suppressed: 0 });
    if (this.seen.size > refusalLogEntriesMax) {
      const oldest = this.seen.keys().next();
      if (oldest.done !== true) this.seen.delete(oldest.value);
    }
    this.log(suppressed > 0 ? `${message} (${suppressed} more like it from ${address} not logged)` : message);
  }
}
