/**
 * An authenticated connection to one peer: frames out, frames in, keepalive, and a
 * bounded send buffer. It exists only after the handshake succeeded, so nothing that
 * reads frames from it (the metadata core, fetch, sync) ever sees an unauthenticated peer.
 */
import type { Socket } from 'node:net';
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { encodeFrame, encodeFrameParts, FrameType, type Frame, type FrameDecoder } from './frame.js';
import type { ChannelName } from './handshake.js';
import { earlyFramesMax, idleMsMax, keepaliveIntervalMs, sendBufferBytesMax } from './limits.js';
import { SocketInput } from './socket-input.js';
import type { TimerHandle, Timers } from './timers.js';

export interface LinkHandlers {
  onFrame(frame: Frame): void;
  /** Called once, when the link is closed by either side; `error` says why, if it failed. */
  onClose(error: MarsError | undefined): void;
}

export interface LinkEnv {
  readonly timers: Timers;
  readonly clock: Clock;
  /** Close the link after this long without receiving anything (default idleMsMax); keepalives go at a sixth of it, at most every keepaliveIntervalMs. */
  readonly idleMs?: number;
}

export interface LinkInfo {
  readonly peerHost: string;
  readonly channel: ChannelName;
  /** The cluster id both ends proved (a former one, while a merge spreads; the learnt one, for a joiner). */
  readonly clusterId: string;
  /** "ADDRESS:PORT" of the other end, for logs. */
  readonly remoteAddress: string;
  readonly tls: boolean;
}

export class PeerLink {
  private handlers: LinkHandlers | undefined;
  private early: Frame[];
  private closedWith: { error: MarsError | undefined } | undefined;
  private lastSentMs: number;
  private lastReceivedMs: number;
  private timer: TimerHandle | undefined;
  private readonly idleMs: number;
  private readonly keepaliveMs: number;
  /** Whether this link reads into the process's shared read buffer (plain TCP), or gets chunks of its own (TLS). */
  readonly sharedReadBuffer: boolean;

  constructor(
    private readonly socket: Socket,
    private readonly decoder: FrameDecoder,
    readonly info: LinkInfo,
    early: Frame[],
    private readonly env: LinkEnv,
    input: SocketInput = SocketInput.ofDataEvents(socket),
  ) {
    this.early = early.filter((f) => f.type !== FrameType.keepalive);
    this.idleMs = env.idleMs ?? idleMsMax;
    this.keepaliveMs = Math.min(keepaliveIntervalMs, Math.floor(this.idleMs / 6));
    this.sharedReadBuffer = input.borrowed;
    this.lastSentMs = env.clock.nowMs();
    this.lastReceivedMs = this.lastSentMs;
    input.setReader((chunk, borrowed) => this.onData(chunk, borrowed));
    socket.on('error', (err) => this.close(new MarsError('PEER_CLOSED', `${info.remoteAddress}: ${err.message}`)));
    socket.on('close', () => this.close(undefined));
    this.arm();
  }

  /** When anything (a keepalive too) last arrived on this link (clock ms). */
  get lastReceivedAtMs(): number {
    return this.lastReceivedMs;
  }

  /** Bytes handed to the socket and not yet to the kernel (at most sendBufferBytesMax plus one frame). */
  get sendQueuedBytes(): number {
    return this.socket.writableLength;
  }

  get peerHost(): string {
    return this.info.peerHost;
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Attaches the owner's handlers; frames that arrived before are delivered now. */
  attach(handlers: LinkHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const frame of early) handlers.onFrame(frame);
    if (this.closedWith !== undefined) handlers.onClose(this.closedWith.error);
  }

  /**
   * Sends a frame; false if the link is closed or its send buffer is full (the frame is
   * dropped). `onWritten` runs once the socket has handed this frame (and so every frame
   * before it) to the kernel: buffers sent before may then be reused. It does not run if
   * the write fails (the link closes).
   */
  send(type: number, payload: Buffer, onWritten?: () => void): boolean {
    if (this.closedWith !== undefined || this.socket.writableLength > sendBufferBytesMax) return false;
    this.socket.write(encodeFrame(type, payload), onWritten === undefined ? undefined : (err) => (err === undefined || err === null ? onWritten() : undefined));
    this.lastSentMs = this.env.clock.nowMs();
    return true;
  }

  /**
   * Sends one frame whose payload is the parts in order, without joining them (see
   * encodeFrameParts; `checkedBytes` > 0: the payload checksum covers that many bytes, to
   * a peer that accepts it). `onWritten` as for `send`: the parts may be reused once it ran.
   */
  sendParts(type: number, parts: readonly Buffer[], onWritten?: () => void, checkedBytes = 0): boolean {
    if (this.closedWith !== undefined || this.socket.writableLength > sendBufferBytesMax) return false;
    const pieces = encodeFrameParts(type, parts, checkedBytes);
    this.socket.cork();
    const last = pieces.length - 1;
    pieces.forEach((piece, i) => this.socket.write(piece, i !== last || onWritten === undefined ? undefined : (err) => (err === undefined || err === null ? onWritten() : undefined)));
    this.socket.uncork();
    this.lastSentMs = this.env.clock.nowMs();
    return true;
  }

  /** Resolves when the send buffer has drained (for bulk senders that must not drop). */
  async writable(): Promise<void> {
    if (this.closedWith !== undefined || this.socket.writableLength <= sendBufferBytesMax) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  close(error?: MarsError): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = { error };
    if (this.timer !== undefined) this.env.timers.clearTimeout(this.timer);
    this.socket.destroy();
    this.handlers?.onClose(error);
  }

  private onData(chunk: Buffer, borrowed: boolean): void {
    if (this.closedWith !== undefined) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk, undefined, borrowed);
    } catch (err) {
      this.close(err instanceof MarsError ? err : new MarsError('FRAME_CORRUPT', String(err)));
      return;
    }
    this.lastReceivedMs = this.env.clock.nowMs();
    for (const frame of frames) {
      if (this.closed) return;
      if (frame.type === FrameType.keepalive) continue;
      if (this.handlers !== undefined) this.handlers.onFrame(frame);
      else if (this.early.length < earlyFramesMax) this.early.push(frame);
      else this.close(new MarsError('PEER_CLOSED', `${this.info.remoteAddress}: more than ${earlyFramesMax} frames before the link was attached`));
    }
  }

  /** Keepalive and idle check, once per keepalive interval. */
  private arm(): void {
    this.timer = this.env.timers.setTimeout(() => {
      const nowMs = this.env.clock.nowMs();
      if (nowMs - this.lastReceivedMs >= this.idleMs) {
        this.close(new MarsError('PEER_CLOSED', `${this.info.remoteAddress}: nothing received for ${this.idleMs} ms`));
        return;
      }
      if (nowMs - this.lastSentMs >= this.keepaliveMs) this.send(FrameType.keepalive, Buffer.alloc(0));
      this.arm();
    }, this.keepaliveMs);
  }
}
