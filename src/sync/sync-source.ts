/**
 * The source side of sync (the primary): one session per authenticated 'sync' link. The
 * target asks for ranges by sending its digests; for each, in order, the source reads
 * the same range of its own device, compares, and sends only the blocks that differ
 * (coalesced runs; all-zero runs without data), then RANGE_DONE.
 *
 * It reads the underlying device, not the logger's view, while writeback keeps changing
 * it: the copy may be a mix of old and new blocks, but every change after the start
 * position (taken when the session starts) is in the log after it, so replay from there
 * on the target makes the copy exact. FINISH is answered with the end position: the
 * device held nothing beyond it while it was read.
 *
 * Bounded: at most `rangesInFlightMax` requests are queued (more is a protocol error),
 * at most `sourceReadsAheadMax` ranges are read ahead, and every frame waits for the
 * link's send buffer to drain (backpressure) before it is sent.
 */
import { randomBytes } from 'node:crypto';
import { MarsError } from '../core/errors.js';
import { Compressor, pickCompression, type CompressionName } from '../compress/index.js';
import type { Frame } from '../net/index.js';
import type { ReplayPosition } from '../replay/position.js';
import type { StorageFile } from '../storage/storage.js';
import { blocksHeaderBytes, blocksPayloadInPlace, decodeSyncMessage, encodeSyncMessage, SyncFrameType, type SyncErrorReasonName, type SyncMessage } from './codec.js';
import { allRuns, differingRuns, type Run } from './compare.js';
import { blockDigests, blocksIn, isZeroBlock } from './digest.js';
import { asSyncFailure, linkCloseError, SyncError, type SyncFailure } from './errors.js';
import { blockBytes, coldCompressorPlainQueuedBytesMax, digestBytes, rangeBytesMax, rangesInFlightMax, sourceBufferPoolMax, sourceReadsAheadMax } from './limits.js';
import { wireBytes, type AttachableSyncLink, type SyncLink } from './sync-link.js';

/** What the daemon offers of a resource this host can sync from. */
export interface SyncSourceResource {
  /** The underlying device (not the logger's view). */
  readonly device: StorageFile;
  readonly sizeBytes: number;
  /** A lower bound: every write to the device after this call is of a log record at or after this position. */
  startPosition(): ReplayPosition;
  /** An upper bound: the device holds no record beyond this position (e.g. the end of the durable log now). */
  endPosition(): ReplayPosition;
}

export interface SyncSourceOptions {
  /** The resource a target asks for, if this host serves it now; undefined refuses. */
  readonly resolve: (resource: string, peerHost: string) => SyncSourceResource | undefined;
  /** The digest seed of a session; random by default (tests fix it). */
  readonly digestSeed?: () => bigint;
  /** Called once when the session ends; `error` says why, if it failed. */
  readonly onEnd?: (session: SyncSourceSession, error: SyncFailure | undefined) => void;
  /** Compressions this host sends block data in, best first (src/compress); default none. */
  readonly compressions?: readonly CompressionName[];
}

interface Request {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly blocks: number;
  /** The target's digests; undefined for COPY (send every block). */
  readonly digests: Buffer | undefined;
  /** The range's bytes at `blocksHeaderBytes` of the buffer (room for a BLOCKS header before them). */
  read: Promise<Buffer> | undefined;
  /** The whole range buffer `read` fills (back to the pool once the link has sent the range). */
  whole: Buffer | undefined;
}

/** Bytes of one range buffer: a whole range after `blocksHeaderBytes` of room. */
const rangeBufferBytes = blocksHeaderBytes + rangeBytesMax;

/** Reads a range into `buffer` (a range buffer), after `blocksHeaderBytes` of room; a short device reads as zeroes. Returns the used part. */
async function readRange(device: StorageFile, offsetBytes: number, lengthBytes: number, whole: Buffer): Promise<Buffer> {
  const buffer = whole.subarray(0, blocksHeaderBytes + lengthBytes);
  const data = buffer.subarray(blocksHeaderBytes);
  let done = 0;
  while (done < lengthBytes) {
    const n = await device.read(data.subarray(done), offsetBytes + done);
    if (n === 0) break;
    done += n;
  }
  data.fill(0, done);
  return buffer;
}

function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64LE(0);
}

export class SyncSourceSession {
  /** Frame bytes (header included) sent and received on this session's link. */
  sentBytes = 0;
  receivedBytes = 0;
  dataBytesSent = 0;
  zeroBytesSent = 0;
  rangesAnswered = 0;
  /** Range reads that reused a buffer the link had sent (the rest allocated one). */
  buffersReused = 0;
  private resource: SyncSourceResource | undefined;
  private seed = 0n;
  private readonly queue: Request[] = [];
  private working = false;
  private endedWith: { error: SyncFailure | undefined } | undefined;
  /** Chosen when the target says hello before START; plain BLOCKS until then. */
  private compressor: Compressor | undefined;
  /** Range buffers the link has sent, for reuse (at most `sourceBufferPoolMax`). */
  private readonly pool: Buffer[] = [];

  constructor(private readonly link: SyncLink, readonly peerHost: string, private readonly options: SyncSourceOptions) {}

  /** Serves one authenticated 'sync' link (PeerServer's onLink hands it over). */
  static serve(link: AttachableSyncLink, options: SyncSourceOptions): SyncSourceSession {
    const session = new SyncSourceSession(link, link.peerHost, options);
    link.attach({ onFrame: (frame) => session.frameReceived(frame), onClose: (error) => session.linkClosed(error) });
    return session;
  }

  get ended(): boolean {
    return this.hasEnded();
  }

  /** A method, not a field test: the session may end while an await is pending. */
  private hasEnded(): boolean {
    return this.endedWith !== undefined;
  }

  frameReceived(frame: Frame): void {
    if (this.endedWith !== undefined) return;
    this.receivedBytes += wireBytes(frame.payload);
    let message: SyncMessage;
    try {
      message = decodeSyncMessage(frame);
    } catch (err) {
      this.fail(asSyncFailure(err, 'sync source'), 'badMessage');
      return;
    }
    try {
      this.dispatch(message);
    } catch (err) {
      this.fail(asSyncFailure(err, 'sync source'), err instanceof SyncError && err.code === 'SYNC_SIZE_MISMATCH' ? 'sizeMismatch' : 'badMessage');
    }
  }

  linkClosed(error: MarsError | undefined): void {
    this.end(error);
  }

  private dispatch(message: SyncMessage): void {
    switch (message.kind) {
      case 'start':
        this.onStart(message.resource, message.sizeBytes);
        return;
      case 'digests':
        this.onRequest(message.offsetBytes, message.digests.length / digestBytes, message.digests);
        return;
      case 'copy':
        this.onRequest(message.offsetBytes, message.blocks, undefined);
        return;
      case 'finish':
        this.onFinish();
        return;
      case 'hello': {
        const compression = pickCompression(this.options.compressions ?? [], message.compressions);
        this.compressor = compression === 'none' ? undefined : new Compressor(compression);
        // Started now, while START, ACCEPT and the first request cross: lz4's threads take
        // up to a few hundred ms to start, and the first range waited for all of it. One
        // thread: a session compresses one run at a time (answer() awaits each), so a
        // second one would cost its start (about 0.1 s of CPU) and get no job.
        this.compressor?.warmUp(1);
        return;
      }
      case 'error':
        this.end(new SyncError('SYNC_REFUSED', `the target gave up: ${message.reason}: ${message.text}`));
        this.link.close();
        return;
      default:
        throw new SyncError('SYNC_BAD_MESSAGE', `a target does not send ${message.kind}`);
    }
  }

  private onStart(name: string, sizeBytes: number): void {
    if (this.resource !== undefined) throw new SyncError('SYNC_BAD_MESSAGE', 'START twice');
    const resource = this.options.resolve(name, this.peerHost);
    if (resource === undefined) {
      this.fail(new SyncError('SYNC_REFUSED', `resource ${name} is not served here`), 'unknownResource');
      return;
    }
    if (resource.sizeBytes !== sizeBytes) throw new SyncError('SYNC_SIZE_MISMATCH', `resource ${name} has ${resource.sizeBytes} bytes here, the target ${sizeBytes}`);
    let startPosition: ReplayPosition;
    try {
      startPosition = resource.startPosition();
    } catch (err) {
      this.fail(asSyncFailure(err, `resource ${name} has no start position now`), 'busy');
      return;
    }
    this.resource = resource;
    this.seed = (this.options.digestSeed ?? randomSeed)();
    this.sendMessage({ kind: 'accept', sizeBytes, digestSeed: this.seed, startPosition });
  }

  /** A DIGESTS (digests given) or COPY (undefined) request for a range. */
  private onRequest(offsetBytes: number, blocks: number, digests: Buffer | undefined): void {
    const resource = this.resource;
    const what = digests === undefined ? 'COPY' : 'DIGESTS';
    if (resource === undefined) throw new SyncError('SYNC_BAD_MESSAGE', `${what} before START`);
    if (offsetBytes >= resource.sizeBytes) throw new SyncError('SYNC_BAD_MESSAGE', `${what} at ${offsetBytes}, past the end (${resource.sizeBytes})`);
    const lengthBytes = Math.min(blocks * blockBytes, resource.sizeBytes - offsetBytes);
    if (blocksIn(lengthBytes) !== blocks) throw new SyncError('SYNC_BAD_MESSAGE', `${what} for ${blocks} blocks at ${offsetBytes} runs past the end (${resource.sizeBytes})`);
    if (this.queue.length >= rangesInFlightMax) throw new SyncError('SYNC_BAD_MESSAGE', `more than ${rangesInFlightMax} ranges asked for at once`);
    this.queue.push({ offsetBytes, lengthBytes, blocks, digests, read: undefined, whole: undefined });
    this.startReads(resource.device);
    if (!this.working) void this.work();
  }

  private onFinish(): void {
    const resource = this.resource;
    if (resource === undefined || this.queue.length > 0) throw new SyncError('SYNC_BAD_MESSAGE', 'FINISH before every range was answered');
    let endPosition: ReplayPosition;
    try {
      endPosition = resource.endPosition();
    } catch (err) {
      this.fail(asSyncFailure(err, 'no end position now'), 'busy');
      return;
    }
    this.sendMessage({ kind: 'finished', endPosition });
  }

  /** Starts the device reads of the first `sourceReadsAheadMax` queued requests. */
  private startReads(device: StorageFile): void {
    for (let i = 0; i < Math.min(sourceReadsAheadMax, this.queue.length); i++) {
      const request = this.queue[i]!;
      if (request.read !== undefined) continue;
      const reused = this.pool.pop();
      if (reused !== undefined) this.buffersReused++;
      request.whole = reused ?? Buffer.allocUnsafeSlow(rangeBufferBytes);
      request.read = readRange(device, request.offsetBytes, request.lengthBytes, request.whole);
      request.read.catch(() => undefined); // awaited in work(); this only stops an unhandled rejection while queued
    }
  }

  /** Answers queued requests in order, one at a time. */
  private async work(): Promise<void> {
    this.working = true;
    try {
      while (this.endedWith === undefined && this.queue.length > 0) {
        const request = this.queue[0]!;
        let buffer: Buffer;
        try {
          buffer = await request.read!;
        } catch (err) {
          this.fail(asSyncFailure(err, 'sync source read'), 'sourceIo');
          return;
        }
        if (this.hasEnded()) return;
        if (!(await this.answer(request, buffer))) return;
        this.queue.shift();
        if (this.resource !== undefined) this.startReads(this.resource.device);
      }
    } finally {
      this.working = false;
    }
  }

  /** Sends the differing runs of one range (every block, for COPY) and its RANGE_DONE; false if the link went away. */
  private async answer(request: Request, buffer: Buffer): Promise<boolean> {
    const data = buffer.subarray(blocksHeaderBytes);
    const isZero = (i: number): boolean => isZeroBlock(data, i * blockBytes, Math.min((i + 1) * blockBytes, data.length));
    const runs = request.digests === undefined ? allRuns(request.blocks, isZero) : differingRuns(blockDigests(data, this.seed), request.digests, isZero);
    let differingBlocks = 0;
    for (const run of runs) {
      if (!(await this.sendRun(request, run, buffer))) return false;
      differingBlocks += run.blocks;
    }
    await this.link.writable();
    if (this.hasEnded()) return false;
    // Once RANGE_DONE has left the link, so has every run of this range: the buffer may be reused.
    const whole = request.whole;
    const release = whole === undefined ? undefined : (): void => this.recycle(whole);
    const frame = encodeSyncMessage({ kind: 'range-done', offsetBytes: request.offsetBytes, blocks: request.blocks, differingBlocks });
    this.sendFrame(frame.type, frame.payload, release);
    this.rangesAnswered++;
    return !this.hasEnded();
  }

  /**
   * Sends one run. A data run's BLOCKS payload is built in place, without a copy: its
   * 8-byte header overwrites the end of the block before the run (or the room before the
   * range), and that block is never sent as data — a data block before a data run would
   * belong to the same run.
   */
  private async sendRun(request: Request, run: Run, buffer: Buffer): Promise<boolean> {
    await this.link.writable();
    if (this.hasEnded()) return false;
    const start = run.firstBlock * blockBytes;
    const lengthBytes = Math.min(run.blocks * blockBytes, request.lengthBytes - start);
    const offsetBytes = request.offsetBytes + start;
    if (run.kind === 'zero') {
      this.zeroBytesSent += lengthBytes;
      this.sendMessage({ kind: 'zeroes', offsetBytes, lengthBytes });
    } else {
      this.dataBytesSent += lengthBytes;
      // Compressed on the thread pool; a run that does not compress goes as plain BLOCKS, and
      // so does one that would wait for a compressor still starting while the link is idle.
      const compressor = this.compressor;
      const cold = compressor !== undefined && !compressor.warm && (this.link.sendQueuedBytes ?? 0) < coldCompressorPlainQueuedBytesMax;
      const packed = cold ? undefined : await compressor?.compress(buffer.subarray(blocksHeaderBytes + start, blocksHeaderBytes + start + lengthBytes));
      if (this.hasEnded()) return false;
      if (packed !== undefined && compressor !== undefined) this.sendMessage({ kind: 'blocks-z', offsetBytes, compression: compressor.name, rawBytes: lengthBytes, data: packed });
      else this.sendBlocks(blocksPayloadInPlace(buffer, blocksHeaderBytes + start, lengthBytes, offsetBytes));
    }
    return !this.hasEnded();
  }

  /** A BLOCKS payload goes out as it lies in the range buffer: the frame header is written before it, not joined to it. */
  private sendBlocks(payload: Buffer): void {
    const sent = this.link.sendParts === undefined ? this.link.send(SyncFrameType.blocks, payload) : this.link.sendParts(SyncFrameType.blocks, [payload]);
    if (sent) this.sentBytes += wireBytes(payload);
    else this.end(new MarsError('PEER_CLOSED', 'sync link closed or its send buffer is full'));
  }

  private recycle(whole: Buffer): void {
    if (this.pool.length < sourceBufferPoolMax && !this.hasEnded()) this.pool.push(whole);
  }

  private sendMessage(message: SyncMessage): void {
    const frame = encodeSyncMessage(message);
    this.sendFrame(frame.type, frame.payload);
  }

  private sendFrame(type: number, payload: Buffer, onWritten?: () => void): void {
    if (this.link.send(type, payload, onWritten)) this.sentBytes += wireBytes(payload);
    else this.end(new MarsError('PEER_CLOSED', 'sync link closed or its send buffer is full'));
  }

  /** Tells the target why (best effort), closes the link and ends the session. */
  private fail(error: SyncFailure, reason: SyncErrorReasonName): void {
    if (this.endedWith !== undefined) return;
    const frame = encodeSyncMessage({ kind: 'error', reason, text: error.message });
    this.link.send(frame.type, frame.payload);
    this.end(error);
    this.link.close(linkCloseError(error));
  }

  private end(error: SyncFailure | undefined): void {
    if (this.endedWith !== undefined) return;
    this.endedWith = { error };
    this.queue.length = 0;
    this.options.onEnd?.(this, error);
  }
}
