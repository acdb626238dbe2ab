/**
 * What sync needs of a link: PeerLink (src/net) has exactly this shape, so the daemon
 * passes its authenticated links as they are, and tests may pass an in-memory pair. Also
 * a small Signal used by both sides to wait for "something changed" without polling.
 */
import type { MarsError } from '../core/errors.js';
import type { LinkHandlers } from '../net/index.js';
import { frameHeaderBytes } from '../net/index.js';

export interface SyncLink {
  /**
   * Sends a frame; false when the link is closed or its send buffer is full. `onWritten`,
   * if the link supports it, runs once this frame and every one before it left the
   * link's buffers (their payloads may be reused then); it may never run.
   */
  send(type: number, payload: Buffer, onWritten?: () => void): boolean;
  /** Sends one frame whose payload is the parts in order, without joining them; optional (PeerLink has it). */
  sendParts?(type: number, parts: readonly Buffer[]): boolean;
  /** Bytes handed to the link and not yet to the kernel, if the link can tell (PeerLink can). */
  readonly sendQueuedBytes?: number;
  /** Resolves when the send buffer has room again (or the link closed). */
  writable(): Promise<void>;
  close(error?: MarsError): void;
  readonly closed: boolean;
  /** The host at the other end, where the link knows it (PeerLink does). */
  readonly peerHost?: string;
}

/** A link whose frames can be received by attaching handlers (PeerLink). */
export interface AttachableSyncLink extends SyncLink {
  attach(handlers: LinkHandlers): void;
  readonly peerHost: string;
}

/** Bytes a frame with this payload occupies on the wire (header included). */
export function wireBytes(payload: Buffer): number {
  return frameHeaderBytes + payload.length;
}

/** Wakes everyone waiting; a waiter re-checks its condition (there are no lost wake-ups: check, then wait). */
export class Signal {
  private waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}
