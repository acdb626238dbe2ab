/**
 * A small NBD client: fixed newstyle, NBD_OPT_GO (falling back to NBD_OPT_EXPORT_NAME),
 * simple replies, pipelined requests matched by handle. Used by the demo and the tests
 * (also against nbdkit, so it must not depend on our server's quirks). An error reply
 * rejects with an NbdRequestError whose `nbdError` holds the NBD error value.
 */
import net from 'node:net';
import { ByteQueue } from './byte-queue.js';
import {
  decodeOptionReplyHeader,
  decodeSimpleReply,
  decodeUint64,
  encodeClientFlags,
  encodeGoRequest,
  encodeOption,
  encodeRequestHeader,
  type BlockSizeInfo,
} from './codec.js';
import {
  NbdClientFlag,
  NbdCommand,
  NbdCommandFlag,
  NbdHandshakeFlag,
  NbdInfo,
  NbdMagic,
  NbdOption,
  NbdReply,
  NbdWire,
  isReplyError,
} from './protocol.js';

export interface NbdClientOptions {
  readonly host: string;
  readonly port: number;
  readonly exportName: string;
  /** Time allowed for connect plus handshake. */
  readonly handshakeMsMax?: number;
}

export interface NbdWriteOptions {
  readonly fua?: boolean;
}

export interface NbdZeroOptions {
  readonly fua?: boolean;
  readonly noHole?: boolean;
}

/** A raw request, for tests that send what a well-behaved client would not. */
export interface NbdRawRequest {
  readonly type: number;
  readonly flags?: number;
  readonly offsetBytes?: number;
  readonly lengthBytes?: number;
  readonly payload?: Buffer;
  /** Length of the data the reply carries on success (READ: lengthBytes). */
  readonly replyBytes?: number;
}

/** The server answered a request with an error. */
export class NbdRequestError extends Error {
  constructor(
    readonly nbdError: number,
    message: string,
  ) {
    super(message);
    this.name = 'NbdRequestError';
  }
}

/** The server refused an option (`replyType` is the NBD_REP_ERR_* value) or broke the protocol. */
export class NbdHandshakeError extends Error {
  constructor(
    message: string,
    readonly replyType?: number,
  ) {
    super(message);
    this.name = 'NbdHandshakeError';
  }
}

const HANDSHAKE_MS_MAX_DEFAULT = 10_000;
const OPTION_REPLY_BYTES_MAX = 64 * 1024;
const CLOSE_MS_MAX = 5_000;
const EMPTY = Buffer.alloc(0);

interface Negotiated {
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
  readonly blockSize: BlockSizeInfo | undefined;
}

interface Pending {
  readonly replyBytes: number;
  readonly describe: string;
  readonly resolve: (data: Buffer) => void;
  readonly reject: (err: Error) => void;
}

/** Reads exact byte counts from a socket; in transmission, hands every arrival to a listener. */
class SocketReader {
  readonly queue = new ByteQueue();
  failure: Error | undefined;
  listener: (() => void) | undefined;
  onFailure: ((err: Error) => void) | undefined;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;

  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      this.wake();
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('NBD connection closed')));
  }

  read(n: number): Promise<Buffer> {
    if (this.queue.lengthBytes >= n) return Promise.resolve(this.queue.take(n));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = { n, resolve, reject }));
  }

  private wake(): void {
    const waiter = this.waiter;
    if (waiter !== undefined) {
      if (this.queue.lengthBytes < waiter.n) return;
      this.waiter = undefined;
      waiter.resolve(this.queue.take(waiter.n));
    }
    this.listener?.();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(this.failure);
    this.onFailure?.(this.failure);
  }
}

function openSocket(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/** Runs `work` with the socket, destroying the socket if it fails or takes longer than `msMax`. */
async function withDeadline<T>(socket: net.Socket, msMax: number, work: () => Promise<T>): Promise<T> {
  const timer = setTimeout(() => socket.destroy(new Error(`NBD handshake took longer than ${msMax} ms`)), msMax);
  try {
    return await work();
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function readGreeting(socket: net.Socket, reader: SocketReader): Promise<number> {
  const greeting = await reader.read(NbdWire.GREETING_BYTES);
  if (greeting.readBigUInt64BE(0) !== NbdMagic.INIT_PASSWD || greeting.readBigUInt64BE(8) !== NbdMagic.IHAVEOPT) {
    throw new NbdHandshakeError('not a newstyle NBD server');
  }
  const serverFlags = greeting.readUInt16BE(16);
  let clientFlags = 0;
  if ((serverFlags & NbdHandshakeFlag.FIXED_NEWSTYLE) !== 0) clientFlags |= NbdClientFlag.C_FIXED_NEWSTYLE;
  if ((serverFlags & NbdHandshakeFlag.NO_ZEROES) !== 0) clientFlags |= NbdClientFlag.C_NO_ZEROES;
  socket.write(encodeClientFlags(clientFlags));
  return clientFlags;
}

async function readOptionReply(reader: SocketReader, option: number): Promise<{ replyType: number; data: Buffer }> {
  const header = decodeOptionReplyHeader(await reader.read(NbdWire.OPTION_REPLY_HEADER_BYTES));
  if (header.magic !== NbdMagic.OPTION_REPLY || header.option !== option) {
    throw new NbdHandshakeError(`bad option reply (magic 0x${header.magic.toString(16)}, option ${header.option})`);
  }
  if (header.lengthBytes > OPTION_REPLY_BYTES_MAX) throw new NbdHandshakeError(`option reply of ${header.lengthBytes} bytes`);
  const data = header.lengthBytes === 0 ? EMPTY : await reader.read(header.lengthBytes);
  return { replyType: header.replyType, data };
}

/** NBD_OPT_GO; undefined if the server does not know the option. */
async function go(socket: net.Socket, reader: SocketReader, exportName: string): Promise<Negotiated | undefined> {
  socket.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName, infoRequests: [NbdInfo.BLOCK_SIZE] })));
  let sizeBytes: number | undefined;
  let transmissionFlags = 0;
  let blockSize: BlockSizeInfo | undefined;
  for (;;) {
    const { replyType, data } = await readOptionReply(reader, NbdOption.GO);
    if (replyType === NbdReply.INFO && data.length >= 2) {
      const infoType = data.readUInt16BE(0);
      if (infoType === NbdInfo.EXPORT && data.length === 12) {
        sizeBytes = decodeUint64(data, 2);
        transmissionFlags = data.readUInt16BE(10);
      } else if (infoType === NbdInfo.BLOCK_SIZE && data.length === 14) {
        blockSize = { minBytes: data.readUInt32BE(2), preferredBytes: data.readUInt32BE(6), maxBytes: data.readUInt32BE(10) };
      }
    } else if (replyType === NbdReply.ACK) {
      if (sizeBytes === undefined) throw new NbdHandshakeError('server accepted NBD_OPT_GO without NBD_INFO_EXPORT');
      return { sizeBytes, transmissionFlags, blockSize };
    } else if (replyType === NbdReply.ERR_UNSUP) {
      return undefined;
    } else if (isReplyError(replyType)) {
      throw new NbdHandshakeError(`server refused export ${JSON.stringify(exportName)}: ${replyName(replyType)}`, replyType);
    }
  }
}

async function exportNameOption(socket: net.Socket, reader: SocketReader, exportName: string, clientFlags: number): Promise<Negotiated> {
  socket.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from(exportName, 'utf8')));
  const reply = await reader.read(NbdWire.EXPORT_NAME_REPLY_BYTES);
  if ((clientFlags & NbdClientFlag.C_NO_ZEROES) === 0) await reader.read(NbdWire.EXPORT_NAME_ZEROES_BYTES);
  return { sizeBytes: decodeUint64(reply, 0), transmissionFlags: reply.readUInt16BE(8), blockSize: undefined };
}

function replyName(replyType: number): string {
  const entry = Object.entries(NbdReply).find(([, value]) => value === replyType);
  return entry === undefined ? `reply type 0x${replyType.toString(16)}` : `NBD_REP_${entry[0]}`;
}

export class NbdClient {
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
  /** Block size constraints the server announced, if it did. */
  readonly blockSize: BlockSizeInfo | undefined;

  private readonly pending = new Map<bigint, Pending>();
  private readonly closed: Promise<void>;
  private idleWaiters: (() => void)[] = [];
  private nextHandle = 1n;
  private disconnecting = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly reader: SocketReader,
    negotiated: Negotiated,
  ) {
    this.sizeBytes = negotiated.sizeBytes;
    this.transmissionFlags = negotiated.transmissionFlags;
    this.blockSize = negotiated.blockSize;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    reader.listener = () => this.parseReplies();
    reader.onFailure = (err) => this.failAll(err);
    if (reader.failure !== undefined) this.failAll(reader.failure);
    this.parseReplies();
  }

  static async connect(options: NbdClientOptions): Promise<NbdClient> {
    const socket = await openSocket(options.host, options.port);
    const reader = new SocketReader(socket);
    const negotiated = await withDeadline(socket, options.handshakeMsMax ?? HANDSHAKE_MS_MAX_DEFAULT, async () => {
      const clientFlags = await readGreeting(socket, reader);
      const viaGo = (clientFlags & NbdClientFlag.C_FIXED_NEWSTYLE) !== 0 ? await go(socket, reader, options.exportName) : undefined;
      return viaGo ?? (await exportNameOption(socket, reader, options.exportName, clientFlags));
    });
    return new NbdClient(socket, reader, negotiated);
  }

  /** The export names a server lists (NBD_OPT_LIST), then a clean NBD_OPT_ABORT. */
  static async list(options: { readonly host: string; readonly port: number; readonly handshakeMsMax?: number }): Promise<string[]> {
    const socket = await openSocket(options.host, options.port);
    const reader = new SocketReader(socket);
    return withDeadline(socket, options.handshakeMsMax ?? HANDSHAKE_MS_MAX_DEFAULT, async () => {
      const clientFlags = await readGreeting(socket, reader);
      if ((clientFlags & NbdClientFlag.C_FIXED_NEWSTYLE) === 0) throw new NbdHandshakeError('server cannot list exports');
      socket.write(encodeOption(NbdOption.LIST));
      const names: string[] = [];
      for (;;) {
        const { replyType, data } = await readOptionReply(reader, NbdOption.LIST);
        if (replyType === NbdReply.ACK) break;
        if (isReplyError(replyType)) throw new NbdHandshakeError(`listing refused: ${replyName(replyType)}`, replyType);
        if (replyType === NbdReply.SERVER && data.length >= 4) {
          const nameBytes = Math.min(data.readUInt32BE(0), data.length - 4);
          names.push(data.toString('utf8', 4, 4 + nameBytes));
        }
      }
      socket.write(encodeOption(NbdOption.ABORT));
      await readOptionReply(reader, NbdOption.ABORT).catch(() => undefined);
      socket.destroy();
      return names;
    });
  }

  get inflightCount(): number {
    return this.pending.size;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.request({ type: NbdCommand.READ, offsetBytes, lengthBytes, replyBytes: lengthBytes });
  }

  async write(offsetBytes: number, data: Buffer, options: NbdWriteOptions = {}): Promise<void> {
    const flags = options.fua === true ? NbdCommandFlag.FUA : 0;
    await this.request({ type: NbdCommand.WRITE, flags, offsetBytes, lengthBytes: data.length, payload: data });
  }

  async flush(): Promise<void> {
    await this.request({ type: NbdCommand.FLUSH });
  }

  async trim(offsetBytes: number, lengthBytes: number, options: NbdWriteOptions = {}): Promise<void> {
    const flags = options.fua === true ? NbdCommandFlag.FUA : 0;
    await this.request({ type: NbdCommand.TRIM, flags, offsetBytes, lengthBytes });
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, options: NbdZeroOptions = {}): Promise<void> {
    const flags = (options.fua === true ? NbdCommandFlag.FUA : 0) | (options.noHole === true ? NbdCommandFlag.NO_HOLE : 0);
    await this.request({ type: NbdCommand.WRITE_ZEROES, flags, offsetBytes, lengthBytes });
  }

  /** Sends one request as given and resolves with the reply's data (empty unless `replyBytes`). */
  request(raw: NbdRawRequest): Promise<Buffer> {
    if (this.reader.failure !== undefined) return Promise.reject(this.reader.failure);
    if (this.disconnecting) return Promise.reject(new Error('NBD client is closing'));
    const handle = this.nextHandle++;
    const lengthBytes = raw.lengthBytes ?? raw.payload?.length ?? 0;
    const header = encodeRequestHeader({ flags: raw.flags ?? 0, type: raw.type, handle, offsetBytes: raw.offsetBytes ?? 0, lengthBytes });
    const describe = `command ${raw.type} at ${raw.offsetBytes ?? 0}+${lengthBytes}`;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(handle, { replyBytes: raw.replyBytes ?? 0, describe, resolve, reject });
      if (raw.payload === undefined) {
        this.socket.write(header);
        return;
      }
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(raw.payload);
      this.socket.uncork();
    });
  }

  /** Waits for in-flight requests, sends NBD_CMD_DISC and waits for the server to close. */
  async close(): Promise<void> {
    if (!this.disconnecting) {
      await this.idle();
      this.disconnecting = true;
      if (this.reader.failure === undefined) {
        this.socket.write(encodeRequestHeader({ flags: 0, type: NbdCommand.DISC, handle: this.nextHandle++, offsetBytes: 0, lengthBytes: 0 }));
        this.socket.end();
      }
      const timer = setTimeout(() => this.socket.destroy(), CLOSE_MS_MAX);
      timer.unref();
    }
    await this.closed;
  }

  /** Drops the connection at once (a client that vanishes). */
  destroy(): void {
    this.socket.destroy();
  }

  private idle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private parseReplies(): void {
    const queue = this.reader.queue;
    while (queue.lengthBytes >= NbdWire.SIMPLE_REPLY_HEADER_BYTES) {
      const reply = decodeSimpleReply(queue.peek(NbdWire.SIMPLE_REPLY_HEADER_BYTES));
      const pending = this.pending.get(reply.handle);
      if (reply.magic !== NbdMagic.SIMPLE_REPLY || pending === undefined) {
        this.socket.destroy(new Error(`bad NBD reply (magic 0x${reply.magic.toString(16)}, handle ${reply.handle})`));
        return;
      }
      const dataBytes = reply.error === 0 ? pending.replyBytes : 0;
      if (queue.lengthBytes < NbdWire.SIMPLE_REPLY_HEADER_BYTES + dataBytes) return;
      queue.skip(NbdWire.SIMPLE_REPLY_HEADER_BYTES);
      const data = dataBytes === 0 ? EMPTY : queue.take(dataBytes);
      this.pending.delete(reply.handle);
      if (reply.error === 0) pending.resolve(data);
      else pending.reject(new NbdRequestError(reply.error, `${pending.describe} failed with NBD error ${reply.error}`));
    }
    this.wakeIdle();
  }

  private failAll(err: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const entry of pending) entry.reject(err);
    this.wakeIdle();
  }

  private wakeIdle(): void {
    if (this.pending.size !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
