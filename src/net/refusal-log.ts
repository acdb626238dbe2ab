/**
 * Logs each refused peer once, with its address: a peer that keeps sending garbage or the
 * wrong secret produces one line per `refusalLogQuietMs`, with a count of the refusals in
 * between, instead of a flood.
 */
import type { Clock } from '../core/clock.js';
import { refusalLogEntriesMax, refusalLogQuietMs } from './limits.js';

/** The part of a logger (pino's shape) this area uses. */
export interface PeerLog {
  warn(fields: Record<string, unknown>, message: string): void;
  /** For refusals that are routine (see routineRefusalCodes); warn when absent. */
  info?(fields: Record<string, unknown>, message: string): void;
}

/**
 * Refusals that ordinary work causes and that need no operator: a peer still sending a
 * resource's metadata for a moment after a membership change has reached this host.
 */
export const routineRefusalCodes: ReadonlySet<string> = new Set(['PEER_NOT_MEMBER']);

export const silentLog: PeerLog = { warn: () => undefined };

interface Seen {
  lastLoggedMs: number;
  suppressed: number;
}

export class RefusalLog {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly log: PeerLog,
    private readonly clock: Clock,
  ) {}

  /**
   * Logs a refusal of `address`, unless the same `key` (the address; a server passes the
   * peer's IP, since every new connection has a new port) was refused for the same
   * reason within `refusalLogQuietMs`.
   */
  refused(address: string, code: string, detail: string, key = address): void {
    const seenKey = `${key}\u0000${code}`;
    const nowMs = this.clock.nowMs();
    const seen = this.seen.get(seenKey);
    if (seen !== undefined && nowMs - seen.lastLoggedMs < refusalLogQuietMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.seen.delete(seenKey);
    this.seen.set(seenKey, { lastLoggedMs: nowMs, suppressed: 0 });
    if (this.seen.size > refusalLogEntriesMax) {
      const oldest = this.seen.keys().next();
      if (oldest.done !== true) this.seen.delete(oldest.value);
    }
    const fields = { peer: address, code, ...(suppressed > 0 ? { suppressed } : {}) };
    // A handshake's error already says "peer refused: ": say it once.
    const message = `peer refused: ${detail.replace(/^peer refused: /, '')}`;
    if (routineRefusalCodes.has(code) && this.log.info !== undefined) this.log.info(fields, message);
    else this.log.warn(fields, message);
  }
}
