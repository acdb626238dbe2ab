/**
 * A TCP proxy for fault injection between a fetch client and its server: it forwards
 * both directions and lets a test damage the server-to-client stream, either as raw bytes
 * (the frame checksum must catch it) or inside a DATA frame whose checksums it recomputes
 * (only the record checksums can catch it).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder } from '../../src/net/index.js';
import { FetchFrameType } from '../../src/fetch/index.js';

export type Damage =
  /** Flip one bit of the raw stream once the stream has carried this many bytes. */
  | { kind: 'raw'; atStreamBytes: number }
  /** Flip one bit of a record inside a DATA frame (or of the compressed bytes of a DATA_Z frame), and re-frame it so that the frame checksum is valid. */
  | { kind: 'in-data'; atDataFrame: number };

/** The plumbing of a loopback TCP proxy for tests: it listens, pairs each connection with one to the target, and closes both. */
export abstract class LoopbackProxy {
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  /** Listens on 127.0.0.1 (port 0); each connection is paired with one to `targetPort()`. */
  protected async listenOn(targetPort: () => number): Promise<void> {
    const server = createServer((downstream) => this.pair(downstream, targetPort()));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  }

  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Carries the bytes of one pair: client side `downstream`, server side `upstream`. */
  protected abstract forward(downstream: Socket, upstream: Socket): void;

  private pair(downstream: Socket, port: number): void {
    const upstream = connect({ host: '127.0.0.1', port });
    for (const s of [downstream, upstream]) {
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        downstream.destroy();
        upstream.destroy();
      });
    }
    this.forward(downstream, upstream);
  }
}

export class FaultyProxy extends LoopbackProxy {
  /** Damages still to do, in order; each is used once. */
  readonly damages: Damage[] = [];
  damaged = 0;

  static async listen(targetPort: () => number): Promise<FaultyProxy> {
    const proxy = new FaultyProxy();
    await proxy.listenOn(targetPort);
    return proxy;
  }

  protected forward(downstream: Socket, upstream: Socket): void {
    downstream.pipe(upstream);
    // Every frame is decoded and sent again (unchanged unless damaged), so both kinds of damage work on any connection.
    const decoder = new FrameDecoder();
    let streamBytes = 0;
    let dataFrames = 0;
    upstream.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        let payload = frame.payload;
        const damage = this.damages[0];
        if ((frame.type === FetchFrameType.data || frame.type === FetchFrameType.dataCompressed) && damage?.kind === 'in-data' && dataFrames++ >= damage.atDataFrame) payload = this.flipInData(payload);
        let bytes = encodeFrame(frame.type, payload);
        const raw = this.damages[0];
        if (raw?.kind === 'raw' && streamBytes <= raw.atStreamBytes && raw.atStreamBytes < streamBytes + bytes.length) {
          bytes = Buffer.from(bytes);
          const at = raw.atStreamBytes - streamBytes;
          bytes[at] = (bytes[at] ?? 0) ^ 0x10;
          this.damages.shift();
          this.damaged++;
        }
        streamBytes += bytes.length;
        downstream.write(bytes);
      }
    });
  }

  /** A bit of the first record's payload area (after the 24-byte message header and the 64-byte record header). */
  private flipInData(payload: Buffer): Buffer {
    const copy = Buffer.from(payload);
    const at = Math.min(copy.length - 1, 24 + 64 + 7);
    copy[at] = (copy[at] ?? 0) ^ 0x01;
    this.damages.shift();
    this.damaged++;
    return copy;
  }
}
