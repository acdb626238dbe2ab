/**
 * Where a peer socket's bytes go: to one reader at a time (the handshake, then the link).
 *
 * Why: Node reads a socket into a fresh 64 KiB buffer per read by default. On a secondary
 * that fetches hundreds of MiB/s, each is a new ArrayBuffer that V8 counts as external
 * memory, and a few MiB of it start the next full collection (as on the NBD side,
 * src/nbd/socket-read.ts, docs/benchmarks.md). So plain TCP peer sockets, accepted
 * (moved onto a socket with `onread` before anything is read) and dialled (`onread` from
 * the start), read into one buffer of the process, `peerSocketReadBufferBytes`, shared by
 * every peer socket.
 *
 * Rules (what keeps the shared buffer from being read after it is rewritten):
 * - a chunk delivered with `borrowed` true is valid only during the reader's call: the
 *   next read of any peer socket rewrites it; the reader copies whatever it keeps (the
 *   FrameDecoder does: `push(view, undefined, true)`);
 * - reads run one at a time on the main thread, each delivered before the next begins.
 * TLS sockets (and a Node without `onread` for accepted sockets) deliver chunks of their
 * own through 'data' (`borrowed` false), as before.
 */
import type { Socket, TcpNetConnectOpts } from 'node:net';
import { withReusableReadBuffer } from '../nbd/socket-read.js';
import { peerSocketReadBufferBytes } from './limits.js';

/** Receives the socket's input; a `borrowed` chunk must not be kept past the call. */
export type InputReader = (chunk: Buffer, borrowed: boolean) => void;

let sharedReadBuffer: Buffer | undefined;

function readBuffer(): Buffer {
  sharedReadBuffer ??= Buffer.allocUnsafeSlow(peerSocketReadBufferBytes);
  return sharedReadBuffer;
}

export class SocketInput {
  private reader: InputReader | undefined;
  /** One chunk that arrived while no reader was set (the socket is paused until one is). */
  private held: Buffer | undefined;
  private socketValue: Socket | undefined;
  /** The socket is paused by us (adopted sockets start paused); the next reader resumes it. */
  private paused = false;

  private constructor(readonly borrowed: boolean) {}

  /** A socket whose input comes through 'data' events (TLS; the simulator's sockets). */
  static ofDataEvents(socket: Socket): SocketInput {
    const input = new SocketInput(false);
    input.socketValue = socket;
    socket.on('data', (chunk: Buffer) => input.deliver(chunk, false));
    return input;
  }

  /**
   * An accepted plain TCP socket that nothing was read from yet (the server pauses on
   * connect): its connection moves onto a socket that reads into the shared buffer, or,
   * where this Node does not allow that, it stays and delivers through 'data'. Use
   * `input.socket` from then on. Reading starts when the first reader is set.
   */
  static adopt(socket: Socket): SocketInput {
    const input = new SocketInput(true);
    const buffer = readBuffer();
    const adopted = withReusableReadBuffer(socket, buffer, (view) => input.deliver(view, true));
    if (adopted === undefined) {
      const fallback = SocketInput.ofDataEvents(socket);
      fallback.paused = true; // by the server, on connect
      return fallback;
    }
    input.socketValue = adopted;
    input.paused = true; // created paused
    return input;
  }

  /** For dialling plain TCP: pass `connectOptions()` to net.connect, then `attach` the socket it returns. */
  static forDial(): SocketInput {
    return new SocketInput(true);
  }

  /** The `onread` option that makes net.connect read into the shared buffer and deliver here. */
  connectOptions(): Pick<TcpNetConnectOpts, 'onread'> {
    const buffer = readBuffer();
    const callback = (bytes: number): boolean => {
      this.deliver(buffer.subarray(0, bytes), true);
      return true; // go on reading (pause() stops it)
    };
    return { onread: { buffer, callback } };
  }

  attach(socket: Socket): void {
    this.socketValue = socket;
  }

  get socket(): Socket {
    if (this.socketValue === undefined) throw new Error('assertion failed: SocketInput has no socket yet');
    return this.socketValue;
  }

  /** Sends the input to `reader` from now on (undefined: hold it and pause the socket). */
  setReader(reader: InputReader | undefined): void {
    this.reader = reader;
    if (reader === undefined) return;
    const held = this.held;
    this.held = undefined;
    if (held !== undefined) reader(held, false);
    if (this.reader !== undefined && this.paused && this.socketValue !== undefined && !this.socketValue.destroyed) {
      this.paused = false;
      this.socketValue.resume();
    }
  }

  private deliver(chunk: Buffer, borrowed: boolean): void {
    if (this.reader !== undefined) {
      this.reader(chunk, borrowed);
      return;
    }
    // Between two readers (the handshake's end and the link's start are one synchronous
    // step, so this is a stray byte after a failed handshake): keep it and stop reading.
    this.held = this.held === undefined ? Buffer.from(chunk) : Buffer.concat([this.held, chunk]);
    if (this.socketValue !== undefined && !this.paused) {
      this.paused = true;
      this.socketValue.pause();
    }
  }
}
