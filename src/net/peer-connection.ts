/**
 * A connection to one peer that keeps itself up: it dials, and when the dial fails or the
 * link drops it dials again after a capped exponential backoff with jitter. Clock, timers
 * and the random source of the jitter are parameters, so tests step through reconnects
 * without waiting. It does not queue frames while down: senders (the metadata core's
 * anti-entropy, fetch resuming at an offset) repair what was lost.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { doublingDelayMs } from '../core/timers.js';
import type { Frame } from './frame.js';
import { backoffMsMax as backoffMsMaxDefault, backoffMsMin as backoffMsMinDefault, stableLinkMs } from './limits.js';
import type { PeerLink } from './peer-link.js';
import { foundNobody, RefusalLog, silentLog, type PeerLog } from './refusal-log.js';
import type { TimerHandle, Timers } from './timers.js';

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'waiting' | 'stopped';

export interface PeerConnectionOptions {
  /** Opens and authenticates one link (dialPeer with fixed options). */
  readonly dial: () => Promise<PeerLink>;
  /** Shown in logs (e.g. "HOST at ADDRESS:PORT"). */
  readonly name: string;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  readonly onFrame: (frame: Frame) => void;
  readonly onOpen?: (link: PeerLink) => void;
  readonly onClose?: (error: MarsError | undefined) => void;
  readonly log?: PeerLog;
  readonly backoffMsMin?: number;
  readonly backoffMsMax?: number;
}

/** The delay before reconnect attempt `attempt` (0-based): min·2^attempt capped at max, jittered to [½, 1] of it. */
export function backoffDelayMs(attempt: number, random: Random, minMs: number, maxMs: number): number {
  const full = doublingDelayMs(attempt, minMs, maxMs);
  const half = Math.floor(full / 2);
  return half + random.int(full - half + 1);
}

export class PeerConnection {
  private stateValue: ConnectionState = 'idle';
  private linkValue: PeerLink | undefined;
  private timer: TimerHandle | undefined;
  private attempt = 0;
  private openedAtMs = 0;
  private readonly refusals: RefusalLog;
  /** Dial attempts made, and how many of them failed (for tests, `view-hosts` and `wait-cluster`). */
  dials = 0;
  failedDials = 0;
  /** Why the last dial failed or the last link closed. */
  lastError: MarsError | undefined;

  constructor(private readonly options: PeerConnectionOptions) {
    this.refusals = new RefusalLog(options.log ?? silentLog, options.clock);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get link(): PeerLink | undefined {
    return this.linkValue;
  }

  start(): void {
    if (this.stateValue !== 'idle') return;
    this.connect();
  }

  stop(): void {
    this.stateValue = 'stopped';
    if (this.timer !== undefined) this.options.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.linkValue?.close();
    this.linkValue = undefined;
  }

  /** Dials now instead of at the end of the current backoff delay (an operator is waiting). */
  retryNow(): void {
    if (this.stateValue !== 'waiting') return;
    if (this.timer !== undefined) this.options.timers.clearTimeout(this.timer);
    this.connect();
  }

  /** Sends on the open link; false when down or the send buffer is full (the frame is dropped). */
  send(type: number, payload: Buffer): boolean {
    return this.linkValue?.send(type, payload) ?? false;
  }

  private connect(): void {
    this.stateValue = 'connecting';
    this.timer = undefined;
    this.dials++;
    this.options.dial().then(
      (link) => this.opened(link),
      (err: unknown) => {
        const error = err instanceof MarsError ? err : new MarsError('PEER_CLOSED', String(err));
        this.failedDials++;
        this.lastError = error;
        // Nobody answered (refused, no route, timeout): the peer is down or not started yet.
        if (foundNobody(error)) this.refusals.unreachable(this.options.name, error.code, error.message);
        else this.refusals.refused(this.options.name, error.code, error.message);
        this.scheduleReconnect();
      },
    );
  }

  private opened(link: PeerLink): void {
    if (this.stateValue === 'stopped') {
      link.close();
      return;
    }
    this.stateValue = 'open';
    this.linkValue = link;
    this.openedAtMs = this.options.clock.nowMs();
    link.attach({
      onFrame: (frame) => this.options.onFrame(frame),
      onClose: (error) => this.closed(link, error),
    });
    if (!link.closed) this.options.onOpen?.(link);
  }

  private closed(link: PeerLink, error: MarsError | undefined): void {
    if (this.linkValue !== link) return;
    this.linkValue = undefined;
    this.lastError = error;
    if (error !== undefined) this.refusals.refused(this.options.name, error.code, error.message);
    this.options.onClose?.(error);
    if (this.stateValue === 'stopped') return;
    // A link that stayed up for a while starts the backoff afresh; one that drops at once does not.
    if (this.options.clock.nowMs() - this.openedAtMs >= stableLinkMs) this.attempt = 0;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stateValue === 'stopped') return;
    const o = this.options;
    const delayMs = backoffDelayMs(this.attempt, o.random, o.backoffMsMin ?? backoffMsMinDefault, o.backoffMsMax ?? backoffMsMaxDefault);
    this.attempt++;
    this.stateValue = 'waiting';
    this.timer = o.timers.setTimeout(() => this.connect(), delayMs);
  }
}
