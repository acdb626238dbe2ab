/**
 * Logs each refused peer once, with its address: a peer that keeps sending garbage or the
 * wrong secret produces one line per `refusalLogQuietMs`, with a count of the refusals in
 * between, instead of a flood. Over all addresses at most `refusalLogLinesPerPeriodMax`
 * lines per period are written; the next line counts the refusals left out
 * (`suppressedOthers`).
 */
import type { Clock } from '../core/clock.js';
import { refusalLogEntriesMax, refusalLogLinesPerPeriodMax, refusalLogQuietMs } from './limits.js';

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

/** Errors of a dial that found nobody to talk to, as opposed to a peer that refused us. */
const unreachableErrnos: ReadonlySet<string> = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EHOSTDOWN', 'ENETDOWN']);

/** True for a dial error whose cause is one of `unreachableErrnos` (set by the dialer). */
export function foundNobody(error: { cause?: unknown }): boolean {
  const code = (error.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && unreachableErrnos.has(code);
}

export const silentLog: PeerLog = { warn: () => undefined };

interface Seen {
  lastLoggedMs: number;
  suppressed: number;
}

export class RefusalLog {
  private readonly seen = new Map<string, Seen>();
  /** Lines logged in the current period, and refusals left out because of the overall cap. */
  private periodStartMs = Number.NEGATIVE_INFINITY;
  private periodLines = 0;
  private capped = 0;

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
    this.note(address, code, detail, key, routineRefusalCodes.has(code) ? 'info' : 'warn', `peer refused: ${detail.replace(/^peer refused: /, '')}`);
  }

  /**
   * A dial that found nobody (connection refused, no route, no answer in time): not a
   * refusal, and routine while a peer restarts or before it first starts, so at info
   * level, rate-limited like refusals. `view-hosts`, `events` and the metrics show the
   * peer unreachable; the alert rules warn when that lasts.
   */
  unreachable(address: string, code: string, detail: string, key = address): void {
    this.note(address, code, detail, key, 'info', `cannot reach peer: ${detail}`);
  }

  private note(address: string, code: string, detail: string, key: string, level: 'info' | 'warn', message: string): void {
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
    if (nowMs - this.periodStartMs >= refusalLogQuietMs) {
      this.periodStartMs = nowMs;
      this.periodLines = 0;
    }
    if (this.periodLines >= refusalLogLinesPerPeriodMax) {
      this.capped++; // many addresses at once: one line per address would still be a flood
      return;
    }
    this.periodLines++;
    const capped = this.capped;
    this.capped = 0;
    const fields = { peer: address, code, ...(suppressed > 0 ? { suppressed } : {}), ...(capped > 0 ? { suppressedOthers: capped } : {}) };
    if (level === 'info' && this.log.info !== undefined) this.log.info(fields, message);
    else this.log.warn(fields, message);
  }
}
