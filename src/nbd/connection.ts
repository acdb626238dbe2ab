/**
 * One NBD client connection: moves bytes between the socket and the backend.
 *
 * The connection is a small state machine (`Phase`): client flags, options, then
 * requests, each WRITE followed by its payload; draining once the client sends DISC or
 * closes, or the server shuts down; closed. Decisions live elsewhere (options.ts for the
 * handshake, requests.ts for request validation); this file does the I/O and the flow
 * control:
 *
 * - requests are dispatched to the backend concurrently and answered as they complete,
 *   so replies may leave out of order; a reply header and its data are written one
 *   after the other in the same tick, so replies never interleave, and the socket is
 *   corked until the end of the tick, so replies finished together share one writev;
 *   replies without data (every WRITE, FLUSH, TRIM, error) finished in one tick are
 *   encoded into one buffer and written with one socket.write at the end of the tick
 *   (a stream write per 16-byte header cost more than the header);
 * - at most `inflightRequestsMax` requests and about `inflightBytesMax` bytes are in the
 *   backend at once, and nothing is parsed while the socket's write buffer is full; in
 *   those cases the socket is paused, so a fast client meets TCP backpressure instead of
 *   growing our memory;
 * - a READ or WRITE takes its bytes from the server-wide MemoryBudget before its header
 *   is consumed (a WRITE's payload until the backend answers, a READ's reply until the
 *   kernel has it); when they do not fit, the connection stops reading until a release
 *   wakes it, so a spent budget is backpressure, never an error;
 * - after the handshake, a connection with nothing in the backend that sends no request
 *   and takes no reply bytes for `idleMsMax` is closed, and one that leaves a reply unread
 *   for `replyStallMsMax` is destroyed (its budget returns);
 * - any fault of the client (bad magic, unknown flags, disconnect mid-payload) ends this
 *   connection only, and no event handler ever throws.
 */
import type { Socket } from 'node:net';
import type { BlockBackend, ExportRegistry } from './backend.js';
import { ByteQueue } from './byte-queue.js';
import { decodeOptionHeader, decodeRequestHeader, encodeGreeting, encodeSimpleReply, encodeSimpleReplyInto, type RequestHeader } from './codec.js';
import { nbdErrorFor } from './error-map.js';
import type { NbdLimits } from './limits.js';
import type { MemoryBudget } from './memory-budget.js';
import { handleOption } from './options.js';
import { payloadPool, payloadPoolBytesMin } from './payload-pool.js';
import {
  NbdClientFlag,
  NbdCommand,
  NbdCommandFlag,
  NbdErrno,
  NbdHandshakeFlag,
  NbdMagic,
  NbdWire,
  type NbdErrnoValue,
} from './protocol.js';
import { checkRequest } from './requests.js';

export interface ConnectionHost {
  readonly registry: ExportRegistry;
  readonly limits: NbdLimits;
  log(message: string): void;
  /** A connection entered transmission on an export. */
  onExportOpened?(exportName: string): void;
  /** The server-wide budget for buffered request and reply bytes. */
  readonly budget: MemoryBudget;
  /** A rate-limited line (per source address and kind of message). */
  refused(address: string, kind: string, message: string): void;
  /** False when the export has as many connections as it may. */
  mayOpenExport(exportName: string): boolean;
  /** Payload bytes the socket read straight into their payload buffer (no copy). */
  countDirectPayload?(bytes: number): void;
}

/** Reply data goes to the socket in pieces of this size, so that a slow reader's progress is seen. */
const replyPieceBytes = 1024 * 1024;
/** Replies without data gathered into one socket write; more in one tick start another. */
const replyHeadsMax = 128;

type Phase =
  | { readonly kind: 'clientFlags' }
  | { readonly kind: 'options' }
  | { readonly kind: 'requests' }
  /** A large payload is copied into `buffer` as it arrives (`filledBytes` so far), so socket chunks die young. */
  | { readonly kind: 'payload'; readonly request: RequestHeader; readonly buffer: Buffer | undefined; filledBytes: number }
  | { readonly kind: 'discard'; readonly request: RequestHeader; readonly errno: NbdErrnoValue; remainingBytes: number }
  | { readonly kind: 'draining' }
  | { readonly kind: 'closed' };

const KNOWN_CLIENT_FLAGS = NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES;
const EMPTY = Buffer.alloc(0);

export class NbdConnection {
  /** Name of the export once the handshake chose one. */
  exportName: string | undefined;
  /** Resolves once the socket is closed and no backend call of this connection is pending. */
  readonly done: Promise<void>;

  private backend: BlockBackend | undefined;
  private phase: Phase = { kind: 'clientFlags' };
  private readonly queue = new ByteQueue();
  private noZeroes = false;
  private optionCount = 0;
  private inflightRequests = 0;
  private inflightBytes = 0;
  private paused = false;
  private corked = false;
  /** Headers of replies without data finished in this tick, written together at its end. */
  private replyHeads: Buffer | undefined;
  private replyHeadsBytes = 0;
  private ended = false;
  private socketClosed = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastActivityMs = 0;
  private lastReplyProgressMs = 0;
  /** Bytes of the budget this connection holds; all returned when it closes. */
  private budgetHeldBytes = 0;
  private budgetReturned = false;
  private waitingForBudget = false;
  private readonly wakeForBudget = (): void => this.guard(() => this.pump());
  private lingerTimer: NodeJS.Timeout | undefined;
  private resolveDone: () => void = () => undefined;
  /** Remote address, captured at start: Node forgets it once the socket closes. */
  /** The client's address (IP:PORT). */
  peer = '?';
  /** The client's IP address (the key of the per-address limits). */
  address = '?';
  /** When the connection was accepted (Date.now()). */
  readonly acceptedMs = Date.now();

  constructor(
    private readonly socket: Socket,
    private readonly host: ConnectionHost,
    readonly id: number,
    /** The socket delivers its input through receiveBorrowed (a reused read buffer), not 'data'. */
    private readonly borrowedReads = false,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  start(): void {
    const socket = this.socket;
    this.address = socket.remoteAddress ?? '?';
    this.peer = `${this.address}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    if (!this.borrowedReads) socket.on('data', (chunk: Buffer) => this.guard(() => this.onData(chunk)));
    socket.on('end', () => this.guard(() => this.onEnd()));
    socket.on('drain', () => this.guard(() => this.pump()));
    socket.on('error', (err) => this.guard(() => this.logLimited(`socket error: ${err.message}`)));
    socket.on('close', () => this.guard(() => this.onClose()));
    this.handshakeTimer = setTimeout(() => this.guard(() => this.onHandshakeTimeout()), this.host.limits.handshakeMsMax);
    this.handshakeTimer.unref();
    socket.write(encodeGreeting(NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES));
    if (this.borrowedReads) socket.resume();
  }

  /**
   * Input read into the server's shared buffer: valid only during this call. What the
   * parser does not consume at once is copied before it returns (a payload goes straight
   * into its own buffer). With `intoTarget`, the socket read into the view that
   * readTarget() gave it: the next bytes of the payload being received, already in place.
   */
  receiveBorrowed(view: Buffer, intoTarget = false): void {
    this.guard(() => {
      const phase = this.phase;
      if (phase.kind === 'draining' || phase.kind === 'closed') return;
      if (intoTarget) {
        // readTarget() handed out exactly this range, and only bytes read into it end the payload.
        if (phase.kind !== 'payload' || phase.buffer === undefined || view.buffer !== phase.buffer.buffer || view.byteOffset !== phase.buffer.byteOffset + phase.filledBytes) {
          throw new Error('a read into a payload buffer arrived outside its payload');
        }
        if (phase.filledBytes + view.length > phase.request.lengthBytes) throw new Error('a read into a payload buffer ran past its end');
        phase.filledBytes += view.length;
        this.host.countDirectPayload?.(view.length);
        this.pump();
        return;
      }
      this.queue.pushBorrowed(view);
      try {
        this.pump();
      } finally {
        this.queue.keepBorrowed();
      }
    });
  }

  /**
   * Where the socket should read next: the unfilled rest of the large payload being
   * received, so that its bytes go from the kernel straight into their buffer; undefined
   * (the shared read buffer) otherwise. Only while nothing is queued: queued bytes come
   * first, and in the payload phase pump() always takes all of them.
   */
  readTarget(): Buffer | undefined {
    const phase = this.phase;
    if (phase.kind !== 'payload' || phase.buffer === undefined || this.queue.lengthBytes > 0) return undefined;
    if (phase.filledBytes >= phase.request.lengthBytes) return undefined;
    return phase.buffer.subarray(phase.filledBytes, phase.request.lengthBytes);
  }

  /** Still in the handshake (no export chosen, not closing). */
  get inHandshake(): boolean {
    const kind = this.phase.kind;
    return this.exportName === undefined && kind !== 'draining' && kind !== 'closed';
  }

  /** How long it has been idle in transmission (nothing in the backend, no reply queued, no request); -1 if not. */
  idleForMs(nowMs: number): number {
    const kind = this.phase.kind;
    if (this.exportName === undefined || (kind !== 'requests' && kind !== 'payload')) return -1;
    if (this.inflightRequests > 0 || this.waitingForBudget || this.socket.writableLength > 0) return -1;
    return nowMs - this.lastActivityMs;
  }

  /** Closing or closed: no longer counted against the connection limits. */
  get leaving(): boolean {
    const kind = this.phase.kind;
    return kind === 'draining' || kind === 'closed';
  }

  /** Drops the connection at once (it is in its handshake or idle) to make room for a newcomer. */
  evict(reason: string): void {
    this.guard(() => this.destroy(reason));
  }

  /** Stops reading, lets in-flight requests finish and be answered, then closes. */
  shutdown(reason: string): void {
    this.guard(() => this.beginClose(reason));
  }

  // ---- events ----

  private onData(chunk: Buffer): void {
    if (this.phase.kind === 'draining' || this.phase.kind === 'closed') return;
    this.queue.push(chunk);
    this.pump();
  }

  private onEnd(): void {
    const kind = this.phase.kind;
    if (kind === 'payload' || kind === 'discard' || ((kind === 'requests' || kind === 'options') && this.queue.lengthBytes > 0)) {
      this.logLimited(`client closed in the middle of a ${kind === 'options' ? 'option' : 'request'}`);
    }
    this.beginClose('client closed its side');
  }

  private onClose(): void {
    this.socketClosed = true;
    this.phase = { kind: 'closed' };
    this.queue.clear();
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.lingerTimer);
    clearTimeout(this.idleTimer);
    this.returnBudget();
    this.maybeDone();
  }

  /** Gives back every byte this connection holds and stops waiting for more (closed). */
  private returnBudget(): void {
    if (this.budgetReturned) return;
    this.budgetReturned = true;
    this.host.budget.unwait(this.wakeForBudget);
    this.waitingForBudget = false;
    const held = this.budgetHeldBytes;
    this.budgetHeldBytes = 0;
    this.host.budget.release(this.address, held);
  }

  private takeBudget(bytes: number): boolean {
    if (bytes === 0) return true;
    if (!this.host.budget.tryTake(this.address, bytes)) {
      if (!this.waitingForBudget) {
        this.waitingForBudget = true;
        this.host.budget.wait(this.wakeForBudget);
      }
      return false;
    }
    this.budgetHeldBytes += bytes;
    if (this.waitingForBudget) {
      this.waitingForBudget = false;
      this.host.budget.unwait(this.wakeForBudget);
    }
    return true;
  }

  private giveBudget(bytes: number): void {
    if (this.budgetReturned) return;
    const n = Math.min(bytes, this.budgetHeldBytes);
    this.budgetHeldBytes -= n;
    this.host.budget.release(this.address, n);
  }

  // ---- idle connections ----

  private armIdleTimer(): void {
    const limits = this.host.limits;
    const everyMs = Math.max(10, Math.floor(Math.min(limits.idleMsMax, limits.replyStallMsMax) / 4));
    this.idleTimer = setTimeout(() => this.guard(() => this.checkIdle()), everyMs);
    this.idleTimer.unref();
  }

  private checkIdle(): void {
    const kind = this.phase.kind;
    if (kind === 'closed' || kind === 'draining') return;
    const limits = this.host.limits;
    const now = Date.now();
    if (kind === 'payload' && now - this.lastActivityMs >= limits.replyStallMsMax) {
      // The header took the payload's bytes from the budget; the payload must follow.
      this.destroy(`a WRITE payload still incomplete after ${Math.round(limits.replyStallMsMax / 1000)} s`);
      return;
    }
    if (this.socket.writableLength > 0) {
      if (now - this.lastReplyProgressMs >= limits.replyStallMsMax) {
        this.destroy(`the client left a reply unread for ${Math.round(limits.replyStallMsMax / 1000)} s`);
        return;
      }
    } else if (this.inflightRequests === 0 && !this.waitingForBudget && now - this.lastActivityMs >= limits.idleMsMax) {
      this.beginClose(`idle for ${Math.round(limits.idleMsMax / 1000)} s (no request)`);
      return;
    }
    this.armIdleTimer();
  }

  private onHandshakeTimeout(): void {
    if (this.exportName === undefined && this.phase.kind !== 'closed') this.destroy('handshake timed out');
  }

  /** Runs an event handler; a bug inside it ends this connection instead of the process. */
  private guard(handler: () => void): void {
    try {
      handler();
    } catch (err) {
      this.log(`internal error, dropping connection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      this.socket.destroy();
    }
  }

  // ---- parsing ----

  private pump(): void {
    while (this.step()) {
      // keep parsing while there is input and room
    }
    this.updateReading();
  }

  /** Parses one record if it can; false when it needs more input or is held back by a limit. */
  private step(): boolean {
    const phase = this.phase;
    switch (phase.kind) {
      case 'clientFlags':
        return this.readClientFlags();
      case 'options':
        return this.readOption();
      case 'requests':
        return this.readRequest();
      case 'payload':
        return this.readPayload(phase);
      case 'discard':
        return this.discardPayload(phase);
      default:
        return false;
    }
  }

  private readClientFlags(): boolean {
    if (this.queue.lengthBytes < NbdWire.CLIENT_FLAGS_BYTES) return false;
    const flags = this.queue.take(NbdWire.CLIENT_FLAGS_BYTES).readUInt32BE(0);
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
      this.destroy(`unknown client flags 0x${flags.toString(16)}`);
      return false;
    }
    this.noZeroes = (flags & NbdClientFlag.C_NO_ZEROES) !== 0;
    this.phase = { kind: 'options' };
    return true;
  }

  private readOption(): boolean {
    if (this.queue.lengthBytes < NbdWire.OPTION_HEADER_BYTES) return false;
    const header = decodeOptionHeader(this.queue.peek(NbdWire.OPTION_HEADER_BYTES));
    if (header.magic !== NbdMagic.IHAVEOPT) return this.destroy('bad option magic');
    if (header.lengthBytes > this.host.limits.optionBytesMax) return this.destroy(`option of ${header.lengthBytes} bytes is over the limit`);
    if (this.queue.lengthBytes < NbdWire.OPTION_HEADER_BYTES + header.lengthBytes) return false;
    this.optionCount += 1;
    if (this.optionCount > this.host.limits.optionsMax) return this.destroy('too many options');
    this.queue.skip(NbdWire.OPTION_HEADER_BYTES);
    const data = this.queue.takeCopy(header.lengthBytes);
    const ctx = { registry: this.host.registry, limits: this.host.limits, noZeroes: this.noZeroes, mayOpenExport: (name: string) => this.host.mayOpenExport(name) };
    const outcome = handleOption(header.option, data, ctx);
    if (outcome.kind === 'drop') return this.destroy(outcome.reason);
    for (const reply of outcome.replies) this.socket.write(reply);
    if (outcome.kind === 'abort') {
      this.beginClose('client aborted the handshake');
      return false;
    }
    if (outcome.kind === 'transmit') {
      this.exportName = outcome.exportName;
      this.host.onExportOpened?.(outcome.exportName);
      this.backend = outcome.backend;
      clearTimeout(this.handshakeTimer);
      this.phase = { kind: 'requests' };
      this.lastActivityMs = Date.now();
      this.armIdleTimer();
    }
    return true;
  }

  private readBlocked(): boolean {
    const limits = this.host.limits;
    return (
      this.inflightRequests >= limits.inflightRequestsMax ||
      this.inflightBytes >= limits.inflightBytesMax ||
      this.socket.writableNeedDrain
    );
  }

  private readRequest(): boolean {
    if (this.readBlocked() || this.queue.lengthBytes < NbdWire.REQUEST_HEADER_BYTES) return false;
    const request = decodeRequestHeader(this.queue.peek(NbdWire.REQUEST_HEADER_BYTES));
    if (request.magic !== NbdMagic.REQUEST) return this.destroy(`bad request magic 0x${request.magic.toString(16)}`);
    if (request.type === NbdCommand.DISC) {
      this.queue.skip(NbdWire.REQUEST_HEADER_BYTES);
      this.beginClose('client sent DISC');
      return false;
    }
    const backend = this.backend;
    if (backend === undefined) throw new Error('requests phase without a backend');
    const errno = checkRequest(request, backend.sizeBytes, this.host.limits);
    const budgetBytes = errno === NbdErrno.OK && (request.type === NbdCommand.READ || request.type === NbdCommand.WRITE) ? request.lengthBytes : 0;
    // Without room in the budget the header stays unread, and so does the socket.
    if (!this.takeBudget(budgetBytes)) return false;
    this.queue.skip(NbdWire.REQUEST_HEADER_BYTES);
    this.lastActivityMs = Date.now();
    if (request.type === NbdCommand.WRITE) {
      // The payload follows even for a bad write; skip it without keeping it.
      this.phase =
        errno === NbdErrno.OK
          ? { kind: 'payload', request, buffer: request.lengthBytes >= payloadPoolBytesMin ? payloadPool.take(request.lengthBytes) : undefined, filledBytes: 0 }
          : { kind: 'discard', request, errno, remainingBytes: request.lengthBytes };
      return true;
    }
    if (errno !== NbdErrno.OK) this.reply(request.handle, errno, undefined);
    else this.dispatch(backend, request, undefined, budgetBytes);
    return true;
  }

  /**
   * A small payload is taken once all of it is queued. A large one goes, piece by piece as
   * it arrives, into a buffer from the pool that the backend may give back for reuse
   * (payload-pool.ts): the socket's chunks are let go at once instead of waiting, perhaps
   * long enough to be promoted, for the rest of the payload.
   */
  private readPayload(phase: Extract<Phase, { kind: 'payload' }>): boolean {
    const request = phase.request;
    let payload: Buffer;
    if (phase.buffer === undefined) {
      if (this.queue.lengthBytes < request.lengthBytes) return false;
      payload = this.queue.takeCopy(request.lengthBytes);
    } else {
      const n = Math.min(this.queue.lengthBytes, request.lengthBytes - phase.filledBytes);
      if (n > 0) this.queue.takeInto(phase.buffer.subarray(phase.filledBytes, phase.filledBytes + n));
      phase.filledBytes += n;
      if (phase.filledBytes < request.lengthBytes) return false;
      payload = phase.buffer;
    }
    this.phase = { kind: 'requests' };
    if (this.backend === undefined) throw new Error('payload phase without a backend');
    this.dispatch(this.backend, request, payload, request.lengthBytes);
    return true;
  }

  private discardPayload(phase: Extract<Phase, { kind: 'discard' }>): boolean {
    phase.remainingBytes -= this.queue.skip(phase.remainingBytes);
    if (phase.remainingBytes > 0) return false;
    this.phase = { kind: 'requests' };
    this.reply(phase.request.handle, phase.errno, undefined);
    return true;
  }

  /**
   * Pauses the socket whenever the parser cannot make use of more input. While draining,
   * input is read and dropped, so that the client's end of stream arrives and the socket
   * can close.
   */
  private updateReading(): void {
    const kind = this.phase.kind;
    const wanted = kind === 'requests' ? !this.readBlocked() && !this.waitingForBudget : kind !== 'closed';
    if (wanted && this.paused) {
      this.paused = false;
      this.socket.resume();
    } else if (!wanted && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  // ---- requests ----

  private dispatch(backend: BlockBackend, request: RequestHeader, payload: Buffer | undefined, budgetBytes: number): void {
    const costBytes = request.type === NbdCommand.READ || request.type === NbdCommand.WRITE ? request.lengthBytes : 0;
    this.inflightRequests += 1;
    this.inflightBytes += costBytes;
    let call: Promise<unknown>;
    try {
      call = callBackend(backend, request, payload);
    } catch (err) {
      call = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    call.then(
      (data) => this.guard(() => this.complete(request, costBytes, budgetBytes, NbdErrno.OK, data instanceof Buffer ? data : undefined)),
      (err: unknown) => this.guard(() => this.complete(request, costBytes, budgetBytes, nbdErrorFor(err), undefined, err)),
    );
  }

  private complete(request: RequestHeader, costBytes: number, budgetBytes: number, errno: NbdErrnoValue, data: Buffer | undefined, err?: unknown): void {
    this.inflightRequests -= 1;
    this.inflightBytes -= costBytes;
    if (err !== undefined) {
      this.log(`${commandName(request.type)} at ${request.offsetBytes}+${request.lengthBytes} failed (NBD error ${errno}): ${describe(err)}`);
    }
    if (request.type === NbdCommand.READ && errno === NbdErrno.OK && data?.length !== request.lengthBytes) {
      this.log(`backend returned ${data?.length ?? 'no'} bytes for a read of ${request.lengthBytes}`);
      errno = NbdErrno.EIO;
    }
    const replyData = errno === NbdErrno.OK && request.type === NbdCommand.READ ? data : undefined;
    // A WRITE's payload is the backend's now; a READ's reply holds its bytes until the kernel has them.
    if (replyData === undefined || replyData.length === 0) {
      this.giveBudget(budgetBytes);
      this.reply(request.handle, errno, undefined);
    } else {
      this.reply(request.handle, errno, replyData, () => this.giveBudget(budgetBytes));
    }
    if (this.phase.kind === 'draining' && this.inflightRequests === 0) this.endSocket();
    this.maybeDone();
    this.pump();
  }

  /** Writes a reply; `onSent` runs once its data is with the kernel, or the socket is gone (only if there is data). */
  private reply(handle: bigint, errno: NbdErrnoValue, data: Buffer | undefined, onSent?: () => void): void {
    const socket = this.socket;
    if (this.socketClosed || !socket.writable) {
      onSent?.();
      return;
    }
    if (data === undefined || data.length === 0) {
      this.gatherReplyHead(errno, handle);
      return;
    }
    if (!this.corked) {
      // Replies completed in the same tick leave in one writev.
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    if (socket.writableLength === 0) this.lastReplyProgressMs = Date.now();
    socket.write(encodeSimpleReply(errno, handle));
    for (let at = 0; at < data.length; at += replyPieceBytes) {
      const last = at + replyPieceBytes >= data.length;
      socket.write(data.subarray(at, at + replyPieceBytes), () => {
        this.lastReplyProgressMs = Date.now();
        this.lastActivityMs = this.lastReplyProgressMs;
        if (last) this.guard(() => onSent?.());
      });
    }
  }

  /** Adds a header-only reply to this tick's buffer; the first one of a tick schedules the write. */
  private gatherReplyHead(errno: NbdErrnoValue, handle: bigint): void {
    if (this.replyHeads === undefined) {
      this.replyHeads = Buffer.allocUnsafe(replyHeadsMax * NbdWire.SIMPLE_REPLY_HEADER_BYTES);
      process.nextTick(() => this.guard(() => this.writeReplyHeads()));
    }
    encodeSimpleReplyInto(this.replyHeads, this.replyHeadsBytes, errno, handle);
    this.replyHeadsBytes += NbdWire.SIMPLE_REPLY_HEADER_BYTES;
    // Full: write these now; the tick's later ones go into a new buffer (with its own write).
    if (this.replyHeadsBytes === this.replyHeads.length) this.writeReplyHeads();
  }

  /** Writes the gathered reply headers (before the socket ends; dropped if it is gone). */
  private writeReplyHeads(): void {
    const heads = this.replyHeads;
    if (heads === undefined) return;
    const bytes = this.replyHeadsBytes;
    this.replyHeads = undefined;
    this.replyHeadsBytes = 0;
    const socket = this.socket;
    if (bytes === 0 || this.socketClosed || !socket.writable) return;
    if (socket.writableLength === 0) this.lastReplyProgressMs = Date.now();
    socket.write(bytes === heads.length ? heads : heads.subarray(0, bytes));
  }

  // ---- closing ----

  private beginClose(reason: string): void {
    const kind = this.phase.kind;
    if (kind === 'draining' || kind === 'closed') return;
    this.logLimited(`closing: ${reason}`);
    this.phase = { kind: 'draining' };
    this.queue.clear();
    clearTimeout(this.handshakeTimer);
    this.updateReading();
    if (this.inflightRequests === 0) this.endSocket();
  }

  private endSocket(): void {
    if (this.ended) return;
    this.ended = true;
    this.writeReplyHeads();
    this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.destroy(), this.host.limits.closeLingerMsMax);
    this.lingerTimer.unref();
  }

  /** Hard disconnect. Returns false so that parsers can `return this.destroy(...)`. */
  private destroy(reason: string): false {
    this.logLimited(`dropping connection: ${reason}`);
    this.phase = { kind: 'closed' };
    this.queue.clear();
    this.socket.destroy();
    return false;
  }

  private maybeDone(): void {
    if (this.socketClosed && this.inflightRequests === 0) this.resolveDone();
  }

  /** A line that any client can cause at will: at most one per address and kind per quiet period. */
  private logLimited(message: string): void {
    const kind = message.replace(/"[^"]*"|0x[0-9a-f]+|\d+/gi, '#');
    this.host.refused(this.address, kind, this.prefixed(message));
  }

  private prefixed(message: string): string {
    return `nbd connection ${this.id} (${this.peer}${this.exportName === undefined ? '' : ` export ${this.exportName}`}): ${message}`;
  }

  private log(message: string): void {
    this.host.log(`nbd connection ${this.id} (${this.peer}${this.exportName === undefined ? '' : ` export ${this.exportName}`}): ${message}`);
  }
}

/** Only a READ's result is used (its data); the others settle with nothing (not chained to `undefined`: one promise less per request). */
function callBackend(backend: BlockBackend, request: RequestHeader, payload: Buffer | undefined): Promise<unknown> {
  const { offsetBytes, lengthBytes } = request;
  const fua = (request.flags & NbdCommandFlag.FUA) !== 0;
  if (lengthBytes === 0 && request.type !== NbdCommand.FLUSH) {
    // Unspecified by the spec; we answer success without touching the backend.
    return Promise.resolve(request.type === NbdCommand.READ ? EMPTY : undefined);
  }
  switch (request.type) {
    case NbdCommand.READ:
      return backend.read(offsetBytes, lengthBytes);
    case NbdCommand.WRITE:
      if (payload === undefined) throw new Error('write without payload');
      return backend.write(offsetBytes, payload, fua);
    case NbdCommand.FLUSH:
      return backend.flush();
    case NbdCommand.TRIM:
      return backend.trim(offsetBytes, lengthBytes, fua);
    case NbdCommand.WRITE_ZEROES:
      return backend.writeZeroes(offsetBytes, lengthBytes, fua);
    default:
      throw new Error(`command ${request.type} passed validation`);
  }
}

function commandName(type: number): string {
  const entry = Object.entries(NbdCommand).find(([, value]) => value === type);
  return entry === undefined ? `command ${type}` : entry[0];
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${(err as { code?: unknown }).code !== undefined ? `${String((err as { code?: unknown }).code)} ` : ''}${err.message}`;
  return String(err);
}
