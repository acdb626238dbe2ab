/**
 * The fetch server: answers LIST and FETCH on authenticated 'fetch' links and streams log
 * files like `tail -f` across the network.
 *
 * Duties, in order of importance:
 * - ship only the durable prefix: never a byte at or beyond the source's `durableBytes`
 *   (for the primary's current file, the log writer's fdatasync'd end). Otherwise a crash
 *   could make the primary forget records a secondary has already applied;
 * - verify what it ships: the records read from its own disk pass the same checks as on
 *   receipt; a damaged durable record ends the stream with ERROR source-damaged (fetch it
 *   from another member) instead of shipping it again and again;
 * - wait, do not poll: at the durable end of a file that is not complete, it sends
 *   CAUGHT_UP once and waits for the source's next change;
 * - bounded memory: one chunk read at a time, never beyond the client's credit, and when
 *   the link's send buffer is full (PeerLink.send returns false) it waits for it to drain
 *   and sends the same frame again.
 *
 * One stream per link: a new FETCH ends the previous one (its late frames carry the old
 * request id, and the client drops them).
 */
import { MarsError } from '../core/errors.js';
import { Compressor, pickCompression, type CompressionName } from '../compress/index.js';
import { parseLogName } from '../log/index.js';
import type { PeerLink } from '../net/index.js';
import { readInto, type StorageFile } from '../storage/storage.js';
import { decodeSynced, fetchSyncedFrameType, type SyncedMessage } from './ack-protocol.js';
import { decodeLaneToken, fetchLaneFrameType, fetchSessionFrameType, parallelConnectionsMax } from './lanes.js';
import { ChangeSignal } from './change-signal.js';
import { fetchChunkBytesMax, fetchListEntriesMax, fetchSendBurstBytesMax } from './limits.js';
import type { LogInfo, LogSource } from './log-source.js';
import { decodeFetchMessage, encodeFetchMessage, encodeFetchMessageParts, fetchDataHeaderBytes, type FetchMessage, type FetchRefusalName } from './protocol.js';
import { RecordStreamVerifier } from './record-verifier.js';
import { RecentFirstFile, type RingView } from './recent-log-bytes.js';

export interface FetchServerOptions {
  /** The log source of a resource this host holds, or undefined. */
  readonly sources: (resource: string) => LogSource | undefined;
  /** Whether `peerHost` may fetch `resource` (say, it is a member); default: every authenticated peer. */
  readonly mayFetch?: (peerHost: string, resource: string) => boolean;
  /** Called when a stream starts (for logs and tests). */
  readonly onStreamStart?: (peerHost: string, logName: string, fromOffsetBytes: number) => void;
  /** Called for streams that end with an error on this side (damage, I/O). */
  readonly onStreamError?: (peerHost: string, logName: string, reason: FetchRefusalName, message: string) => void;
  /** Compressions this host sends, best first (src/compress); default none (plain DATA only). */
  readonly compressions?: readonly CompressionName[];
  /**
   * Lets other work of the process run (the daemon: a setImmediate). A stream calls it after
   * every `fetchSendBurstBytesMax` of DATA, so fetch serving never holds the event loop for
   * long while the primary's NBD requests wait. Default: no yield (tests, the simulator).
   */
  readonly yieldTurn?: () => Promise<void>;
  /** A peer that may fetch `resource` says its copy of `logName` is durable up to `syncedEndBytes` (SYNCED, near-sync mode). */
  readonly onSynced?: (peerHost: string, resource: string, logName: string, syncedEndBytes: number) => void;
}

type FetchRequest = Extract<FetchMessage, { type: 'fetch' }>;

/** Ends a stream with an ERROR message. */
class StreamRefusal extends Error {
  constructor(
    readonly reason: FetchRefusalName,
    message: string,
  ) {
    super(message);
  }
}

export class FetchServer {
  private readonly sessions = new Set<FetchSession>();
  /** Main links that announced a SESSION token, by peer and token (their lanes find them here). */
  private readonly byToken = new Map<string, FetchSession>();

  constructor(private readonly options: FetchServerOptions) {}

  /** Serves one authenticated link of the 'fetch' channel until it closes. */
  adopt(link: PeerLink): void {
    const session = new FetchSession(link, this.options, this.byToken, () => this.sessions.delete(session));
    this.sessions.add(session);
    session.attach();
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Closes every link it serves. */
  close(): void {
    for (const session of [...this.sessions]) session.close();
  }
}

class FetchSession {
  private stream: ServerStream | undefined;
  /** Parallel connections of this main link (src/fetch/lanes.ts): they carry DATA of its streams. */
  private readonly lanes: PeerLink[] = [];
  private tokenKey: string | undefined;
  /** A lane: the main session it serves; it takes no requests of its own. */
  private laneOf: FetchSession | undefined;
  /** Chosen when the client says hello; plain until then (a client that never does gets plain DATA). */
  private compressor: Compressor | undefined;
  /** The client's HELLO listed recordCheckedData: its DATA frames are checksummed over their header only. */
  private recordCheckedData = false;

  constructor(
    private readonly link: PeerLink,
    private readonly options: FetchServerOptions,
    private readonly byToken: Map<string, FetchSession>,
    private readonly onEnd: () => void,
  ) {}

  /** The links a stream's DATA may go on: this one and its open lanes. */
  dataLinks(): PeerLink[] {
    return [this.link, ...this.lanes.filter((l) => !l.closed)];
  }

  private onLaneFrame(type: number, payload: Buffer): boolean {
    if (type !== fetchSessionFrameType && type !== fetchLaneFrameType) return false;
    let key: string;
    try {
      key = `${this.link.peerHost}/${decodeLaneToken(payload).toString('hex')}`;
    } catch (err) {
      this.link.close(new MarsError('BAD_REQUEST', err instanceof Error ? err.message : String(err)));
      return true;
    }
    if (type === fetchSessionFrameType) {
      if (this.tokenKey !== undefined || this.laneOf !== undefined || this.byToken.has(key)) {
        this.link.close(new MarsError('BAD_REQUEST', 'a second SESSION, or a token in use'));
        return true;
      }
      this.tokenKey = key;
      this.byToken.set(key, this);
      return true;
    }
    const main = this.byToken.get(key);
    if (main === undefined || this.laneOf !== undefined || this.tokenKey !== undefined || main.lanes.length >= parallelConnectionsMax - 1) {
      this.link.close(new MarsError('BAD_REQUEST', 'LANE of no open session, or too many lanes'));
      return true;
    }
    this.laneOf = main;
    main.lanes.push(this.link);
    return true;
  }

  attach(): void {
    this.link.attach({
      onFrame: (frame) => this.onFrame(frame.type, frame.payload),
      onClose: () => {
        this.stream?.cancel();
        this.stream = undefined;
        if (this.tokenKey !== undefined) this.byToken.delete(this.tokenKey);
        for (const lane of this.lanes) lane.close();
        // A lane lost what it carried: its main link closes too, and the client starts the stream again.
        this.laneOf?.close();
        this.onEnd();
      },
    });
  }

  close(): void {
    this.link.close();
  }

  private onFrame(type: number, payload: Buffer): void {
    if (this.onLaneFrame(type, payload)) return;
    if (this.laneOf !== undefined) {
      this.link.close(new MarsError('BAD_REQUEST', 'a request on a parallel connection'));
      return;
    }
    if (type === fetchSyncedFrameType) {
      this.onSynced(payload);
      return;
    }
    let message: FetchMessage;
    try {
      message = decodeFetchMessage(type, payload);
    } catch (err) {
      this.link.close(new MarsError('BAD_REQUEST', err instanceof Error ? err.message : String(err)));
      return;
    }
    switch (message.type) {
      case 'list':
        void this.answerList(message);
        return;
      case 'fetch':
        this.startStream(message);
        return;
      case 'credit':
        if (this.stream?.requestId === message.requestId) this.stream.credit(message.creditEndBytes);
        return;
      case 'hello': {
        const compression = pickCompression(this.options.compressions ?? [], message.compressions);
        this.compressor = compression === 'none' ? undefined : new Compressor(compression);
        this.recordCheckedData = message.features?.includes('recordCheckedData') ?? false;
        this.send({ type: 'hello-reply', requestId: message.requestId, compression });
        return;
      }
      default:
        this.link.close(new MarsError('BAD_REQUEST', `a client sent a server's message (${message.type})`));
    }
  }

  private onSynced(payload: Buffer): void {
    let synced: SyncedMessage;
    try {
      synced = decodeSynced(payload);
    } catch (err) {
      this.link.close(new MarsError('BAD_REQUEST', err instanceof Error ? err.message : String(err)));
      return;
    }
    if (this.options.mayFetch?.(this.link.peerHost, synced.resource) === false) return;
    this.options.onSynced?.(this.link.peerHost, synced.resource, synced.logName, synced.syncedEndBytes);
  }

  private sourceFor(resource: string): LogSource | StreamRefusal {
    if (this.options.mayFetch?.(this.link.peerHost, resource) === false) {
      return new StreamRefusal('noResource', `${this.link.peerHost} may not fetch resource ${resource}`);
    }
    return this.options.sources(resource) ?? new StreamRefusal('noResource', `this host holds no resource ${resource}`);
  }

  private async answerList(request: Extract<FetchMessage, { type: 'list' }>): Promise<void> {
    const source = this.sourceFor(request.resource);
    const { requestId } = request;
    if (source instanceof StreamRefusal) {
      this.send({ type: 'error', requestId, reason: source.reason, message: source.message });
      return;
    }
    try {
      const logs = (await source.list()).filter((log) => (parseLogName(log.name)?.logNumber ?? 0) >= request.fromLogNumber);
      this.send({ type: 'list-reply', requestId, logs: logs.slice(0, fetchListEntriesMax), more: logs.length > fetchListEntriesMax });
    } catch (err) {
      this.send({ type: 'error', requestId, reason: 'sourceIo', message: `list: ${err instanceof Error ? err.message : String(err)}` });
    }
  }

  private startStream(request: FetchRequest): void {
    this.stream?.cancel();
    const source = this.sourceFor(request.resource);
    if (source instanceof StreamRefusal) {
      this.stream = undefined;
      this.send({ type: 'error', requestId: request.requestId, reason: source.reason, message: source.message });
      return;
    }
    const stream = new ServerStream(this.link, source, request, this.compressor, () => this.dataLinks(), this.options.yieldTurn, this.recordCheckedData);
    this.stream = stream;
    this.options.onStreamStart?.(this.link.peerHost, request.logName, request.fromOffsetBytes);
    void stream.run().then((refusal) => {
      if (this.stream === stream) this.stream = undefined;
      if (refusal === undefined) return;
      this.options.onStreamError?.(this.link.peerHost, request.logName, refusal.reason, refusal.message);
      this.send({ type: 'error', requestId: request.requestId, reason: refusal.reason, message: refusal.message });
    });
  }

  /** Small control messages; a full send buffer drops them (the client re-asks after a reconnect). */
  private send(message: FetchMessage): void {
    const { type, payload } = encodeFetchMessage(message);
    this.link.send(type, payload);
  }
}

/** Chunks read ahead of the one being sent, per stream (bounds its memory to this many chunks). */
export const fetchReadAheadChunks = 4;

/** Chunk buffers one stream keeps for reuse (ChunkBuffers); more in use at a time are allocated and left to the GC. */
export const fetchReadBuffersFreeMax = 8;

/**
 * Reads of consecutive chunks issued ahead, so that the disk (or the page cache through
 * the thread pool) works while the previous chunk is verified and sent. A chunk read
 * ahead is used only if it starts where the stream is and lies below the limit now
 * (the limit only grows); otherwise the reads ahead are dropped and read again.
 */
export class ReadAhead {
  private readonly reads: AheadRead[] = [];

  /**
   * With a compressor, each chunk read ahead is also compressed ahead (thread pool), in read
   * order. Chunks are read into buffers of `buffers` (a read ahead that is dropped keeps its
   * buffer: the read may still be running).
   */
  constructor(
    private readonly file: StorageFile,
    private readonly compressor: Compressor | undefined,
    private readonly buffers: ChunkBuffers = new ChunkBuffers(),
  ) {}

  /**
   * The next chunk from `offsetBytes`, at most up to `limitBytes`. `lengthBytes` is what
   * was asked of the file for it: a chunk read ahead under an older, lower limit (the
   * credit grew meanwhile) is shorter than the limit now allows, and is used as it is.
   */
  async next(offsetBytes: number, limitBytes: number): Promise<{ data: Buffer; lengthBytes: number; packed: Promise<Buffer | undefined>; buffer: Buffer | undefined; view: RingView | undefined; fromMemory: boolean }> {
    const first = this.reads[0];
    if (first !== undefined && (first.offsetBytes !== offsetBytes || first.offsetBytes + first.lengthBytes > limitBytes)) this.drop();
    let end = this.reads.at(-1) === undefined ? offsetBytes : this.reads.at(-1)!.offsetBytes + this.reads.at(-1)!.lengthBytes;
    while (this.reads.length < fetchReadAheadChunks && end < limitBytes) {
      const read = this.start(end, Math.min(fetchChunkBytesMax, limitBytes - end));
      read.data.catch(() => undefined); // a read ahead that is dropped must not become an unhandled rejection
      read.packed.catch(() => undefined);
      this.reads.push(read);
      end += read.lengthBytes;
    }
    const read = this.reads.shift()!;
    return { data: await read.data, lengthBytes: read.lengthBytes, packed: read.packed, buffer: read.buffer, view: read.view, fromMemory: read.fromMemory };
  }

  /**
   * One chunk: the primary's ring answers at once when it holds the range (bytes below the
   * durable end never change), near its end with a view of itself (no copy), further
   * back with a copy into a chunk buffer; else the file is read into one.
   */
  private start(offsetBytes: number, lengthBytes: number): AheadRead {
    const view = this.file instanceof RecentFirstFile ? this.file.lendRecent(offsetBytes, lengthBytes) : undefined;
    let buffer: Buffer | undefined;
    let data: Promise<Buffer>;
    let fromMemory = view !== undefined;
    if (view !== undefined) {
      data = Promise.resolve(view.bytes);
    } else {
      buffer = this.buffers.take();
      const target = buffer.subarray(0, lengthBytes);
      fromMemory = this.file instanceof RecentFirstFile && this.file.readRecent(target, offsetBytes);
      data = fromMemory ? Promise.resolve(target) : readInto(this.file, target, offsetBytes);
    }
    const compressor = this.compressor;
    const packed = compressor === undefined ? Promise.resolve(undefined) : data.then((chunk) => compressor.compress(chunk));
    return { offsetBytes, lengthBytes, data, packed, buffer, view, fromMemory };
  }

  /** Drops the reads ahead; their views go back to the ring (a buffer is kept: its read may still be running). */
  private drop(): void {
    for (const read of this.reads) read.view?.release();
    this.reads.length = 0;
  }
}

interface AheadRead {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly data: Promise<Buffer>;
  readonly packed: Promise<Buffer | undefined>;
  /** The chunk buffer the bytes were read or copied into; undefined for a view of the ring. */
  readonly buffer: Buffer | undefined;
  readonly view: RingView | undefined;
  readonly fromMemory: boolean;
}

/**
 * Chunk buffers of one stream, reused: a fresh 1 MiB buffer per chunk read was external
 * memory that started a full collection on the primary every few MiB served (and 256 page
 * faults at first touch). A buffer comes back (`give`) only once nothing refers to it:
 * its frame is with the kernel and the stream's verifier holds no partial record in it.
 * At most `fetchReadBuffersFreeMax` wait for reuse; the rest are left to the GC.
 */
export class ChunkBuffers {
  private readonly free: Buffer[] = [];

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(fetchChunkBytesMax);
  }

  give(buffer: Buffer): void {
    if (this.free.length < fetchReadBuffersFreeMax && buffer.length === fetchChunkBytesMax) this.free.push(buffer);
  }

  get freeCount(): number {
    return this.free.length;
  }
}

/**
 * The chunk buffers of a stream that are sent or being sent, in stream order. One goes
 * back to its ChunkBuffers only once its frame is with the kernel (`written`) and the
 * stream's verifier has verified past its end (the verifier holds views of the chunks of
 * a partial record until the record ends).
 */
export class LentChunks {
  private readonly lent: { readonly endBytes: number; readonly buffer: Buffer | undefined; readonly view: RingView | undefined; written: boolean }[] = [];

  constructor(private readonly buffers: ChunkBuffers) {}

  /** A chunk whose bytes end at `endBytes` of the stream, read into `buffer` (or a view of the ring), is about to be sent. */
  lend(endBytes: number, buffer: Buffer | undefined, view?: RingView): { written: boolean } {
    const entry = { endBytes, buffer, view, written: false };
    this.lent.push(entry);
    return entry;
  }

  written(entry: { written: boolean }, verifiedEndBytes: number): void {
    entry.written = true;
    this.recycle(verifiedEndBytes);
  }

  recycle(verifiedEndBytes: number): void {
    while (this.lent.length > 0 && this.lent[0]!.written && this.lent[0]!.endBytes <= verifiedEndBytes) {
      const entry = this.lent.shift()!;
      if (entry.buffer !== undefined) this.buffers.give(entry.buffer);
      entry.view?.release();
    }
  }

  get count(): number {
    return this.lent.length;
  }
}


/** One FETCH: from an offset to the durable end, then on as the file grows, until complete. */
class ServerStream {
  readonly requestId: number;
  private creditEndBytes: number;
  private cancelled = false;
  private readonly wake = new ChangeSignal();
  private sentData = 0;

  constructor(
    private readonly link: PeerLink,
    private readonly source: LogSource,
    private readonly request: FetchRequest,
    private readonly compressor: Compressor | undefined,
    private readonly dataLinks: () => PeerLink[],
    private readonly yieldTurn: (() => Promise<void>) | undefined,
    /** DATA frames go with their checksum over the DATA header only (the client said it verifies the records). */
    private readonly recordCheckedData: boolean,
  ) {
    this.requestId = request.requestId;
    this.creditEndBytes = request.creditEndBytes;
  }

  credit(creditEndBytes: number): void {
    if (creditEndBytes <= this.creditEndBytes) return;
    this.creditEndBytes = creditEndBytes;
    this.wake.notify();
  }

  cancel(): void {
    this.cancelled = true;
    this.wake.notify();
  }

  /** Streams until complete, cancelled or the link closes; returns why it failed, if it did. */
  async run(): Promise<StreamRefusal | undefined> {
    let file: StorageFile | undefined;
    try {
      const name = this.request.logName;
      if ((await this.source.info(name)) === undefined) return new StreamRefusal('noLog', `this host holds no log ${name}`);
      file = await this.source.open(name);
      return await this.pump(file);
    } catch (err) {
      if (err instanceof StreamRefusal) return err;
      return new StreamRefusal('sourceIo', `${this.request.logName}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await file?.close().catch(() => undefined);
    }
  }

  private async pump(file: StorageFile): Promise<StreamRefusal | undefined> {
    const name = this.request.logName;
    const verifier = new RecordStreamVerifier(this.request.fromOffsetBytes);
    let sentEndBytes = this.request.fromOffsetBytes;
    let caughtUpSent = false;
    // What the source said last: bytes below its durable end stay durable, so the source
    // is asked again only once the stream has reached that end (not for every chunk).
    let known: LogInfo | undefined;
    const buffers = new ChunkBuffers();
    const ahead = new ReadAhead(file, this.compressor, buffers);
    const lent = new LentChunks(buffers);
    let burstBytes = 0;
    while (!this.cancelled && !this.link.closed) {
      const changed = this.source.nextChange();
      const woken = this.wake.next();
      if (known === undefined || sentEndBytes >= Math.min(known.durableBytes, this.creditEndBytes)) {
        known = await this.source.info(name);
        if (known === undefined) return new StreamRefusal('noLog', `log ${name} was removed`);
      }
      const info = known;
      if (info.complete && sentEndBytes > info.durableBytes) {
        return new StreamRefusal('beyondDurable', `${name} is complete at ${info.durableBytes} bytes; the request starts at ${sentEndBytes}`);
      }
      const limitBytes = Math.min(info.durableBytes, this.creditEndBytes);
      if (sentEndBytes < limitBytes) {
        const next = await ahead.next(sentEndBytes, limitBytes);
        const chunk = this.verified(verifier, sentEndBytes, next.data, next.lengthBytes, next.fromMemory);
        lent.recycle(verifier.verifiedEndBytes);
        // Compressed off the event loop (thread pool) while it was read ahead; sent plain when it does not compress.
        const packed = await next.packed;
        const message: FetchMessage =
          packed === undefined || this.compressor === undefined
            ? { type: 'data', requestId: this.requestId, offsetBytes: sentEndBytes, durableBytes: info.durableBytes, data: chunk }
            : { type: 'data-z', requestId: this.requestId, offsetBytes: sentEndBytes, durableBytes: info.durableBytes, compression: this.compressor.name, rawBytes: chunk.length, data: packed };
        const entry = lent.lend(sentEndBytes + chunk.length, next.buffer, next.view);
        const sent = await this.sendBulk(message, () => lent.written(entry, verifier.verifiedEndBytes));
        if (!sent) return undefined;
        sentEndBytes += chunk.length;
        caughtUpSent = false;
        burstBytes += chunk.length;
        if (burstBytes >= fetchSendBurstBytesMax && this.yieldTurn !== undefined) {
          burstBytes = 0;
          await this.yieldTurn();
        }
        continue;
      }
      if (sentEndBytes === info.durableBytes && info.complete) {
        if (verifier.partialBytes > 0) throw new StreamRefusal('sourceDamaged', `${name} ends inside a record at ${verifier.verifiedEndBytes}`);
        await this.sendBulk({ type: 'complete', requestId: this.requestId, finalBytes: sentEndBytes });
        return undefined;
      }
      if (sentEndBytes === info.durableBytes && !caughtUpSent) {
        caughtUpSent = await this.sendBulk({ type: 'caught-up', requestId: this.requestId, durableBytes: info.durableBytes });
      }
      await Promise.race([changed, woken]);
      burstBytes = 0;
    }
    return undefined;
  }

  /** Checks the records of the next piece of the durable prefix before it leaves the host. */
  private verified(verifier: RecordStreamVerifier, offsetBytes: number, chunk: Buffer, lengthBytes: number, fromMemory: boolean): Buffer {
    const name = this.request.logName;
    if (chunk.length < lengthBytes) throw new StreamRefusal('sourceIo', `${name} ends at ${offsetBytes + chunk.length}, before its durable end`);
    const { fault } = verifier.push(chunk, fromMemory);
    if (fault !== undefined) throw new StreamRefusal('sourceDamaged', `${name} at offset ${fault.offsetBytes}: ${fault.reason}`);
    return chunk;
  }

  /** Sends one frame without dropping it: waits for the send buffer to drain when full. False once the stream is over. */
  private async sendBulk(message: FetchMessage, onWritten?: () => void): Promise<boolean> {
    const { type, parts } = encodeFetchMessageParts(message);
    // DATA goes round-robin over the main link and its lanes; everything else on the main link.
    const links = message.type === 'data' || message.type === 'data-z' ? this.dataLinks() : [this.link];
    const link = links[this.sentData++ % links.length]!;
    // The records in a DATA chunk carry their own checksums, which the client verifies: no CRC32C pass over the chunk.
    const checkedBytes = message.type === 'data' && this.recordCheckedData ? fetchDataHeaderBytes : 0;
    for (;;) {
      if (this.cancelled || this.link.closed || link.closed) return false;
      if (link.sendParts(type, parts, onWritten, checkedBytes)) return true;
      await link.writable();
    }
  }
}
