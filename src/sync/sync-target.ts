/**
 * The target side of sync (a joining or invalidated secondary). Over each link to the
 * source it sends START, learns the start position, then asks for the device range by
 * range with its own digests (`rangesInFlight` at a time, rate-limited), writes the
 * blocks that come back, and persists its progress — the device fdatasync'd first, then
 * the state file — so a disconnect or a restart resumes from there. When every range is
 * written it sends FINISH and records the end position: the copy is consistent once
 * replay from the start position has reached the end position.
 *
 * States: 'syncing' (a link is up), 'paused' (by the operator; nothing moves),
 * 'source-unreachable' (no link: not yet, or lost; the daemon reconnects), 'done',
 * 'failed' (a local I/O error, or the devices differ in size: the operator must act).
 * A state file that finds no space does not fail the sync: `error` says so, the copy goes
 * on, and the start and end positions are saved once there is room (`persistWhenRoom`).
 */
import { systemClock, type Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { doublingDelayMs } from '../core/timers.js';
import { systemTimers, type Frame, type Timers } from '../net/index.js';
import type { ReplayPosition } from '../replay/position.js';
import type { Storage, StorageFile } from '../storage/storage.js';
import { decodeSyncMessage, encodeSyncMessage, type SyncMessage } from './codec.js';
import { blockDigests } from './digest.js';
import { asSyncFailure, linkCloseError, SyncError, type SyncFailure } from './errors.js';
import { blockBytes, progressPersistBytes, progressPersistIntervalMs, rangesInFlightMax, rateBurstBytes, rateBytesPerSDefault, syncNoSpaceRetryMsMax, syncNoSpaceRetryMsMin } from './limits.js';
import { ProgressBook } from './progress.js';
import { RangeModePolicy } from './range-mode.js';
import { loadSyncState, saveSyncState, syncStateFileName, type SyncStateRecord } from './state-file.js';
import { Signal, wireBytes, type AttachableSyncLink, type SyncLink } from './sync-link.js';
import { TargetSession, type Slot } from './target-session.js';
import { TokenBucket } from './token-bucket.js';
import { decompress, type CompressionName } from '../compress/index.js';

export type SyncTargetState = 'syncing' | 'paused' | 'source-unreachable' | 'done' | 'failed';

/** What `view` shows of a sync (`sync-rest` is restBytes). */
export interface SyncProgress {
  readonly state: SyncTargetState;
  readonly paused: boolean;
  readonly sizeBytes: number;
  /** Bytes from the start of the device that are copied. */
  readonly doneBytes: number;
  readonly restBytes: number;
  /** Copy rate over the last few seconds. */
  readonly rateBytesPerS: number;
  readonly rateLimitBytesPerS: number;
  readonly startPosition: ReplayPosition | undefined;
  readonly endPosition: ReplayPosition | undefined;
  /** Frame bytes (headers included) sent and received by this object, over every link. */
  readonly sentBytes: number;
  readonly receivedBytes: number;
  /** Block data and zero runs received. */
  readonly dataBytes: number;
  readonly zeroBytes: number;
  /** Ranges asked for with digests, and as plain copies (copy mode). */
  readonly rangesCompared: number;
  readonly rangesCopied: number;
  /** Links this object has synced over. */
  readonly sessions: number;
  /** Times the copy started again because a session's source was another host. */
  readonly sourceChanges: number;
  readonly lastError: SyncFailure | undefined;
  /** The compression the source used for block data on the current link, once it has sent some. */
  readonly compression: CompressionName | undefined;
}

export interface SyncTargetOptions {
  readonly resource: string;
  /** The target device (read for digests, written with the source's blocks). */
  readonly device: StorageFile;
  /** Bytes to sync; default: the device's size. */
  readonly sizeBytes?: number;
  /** Where the state file lives (the resource's directory). */
  readonly storage: Storage;
  readonly stateFileName?: string;
  readonly clock?: Clock;
  readonly timers?: Timers;
  /** Bytes per second; 0 (default) is unlimited. */
  readonly rateBytesPerS?: number;
  /**
   * Limits shared with other transfers of the host (src/daemon/bandwidth.ts): frame bytes
   * are charged to it too, and no range is asked for while `delayMs()` is above 0 (which
   * is also how sync yields to a fetch that is behind).
   */
  readonly pacer?: { take(bytes: number): void; delayMs(): number; limitBytesPerS(): number };
  /** Compressions this host can receive block data in (said in a HELLO before START); default none. */
  readonly compressions?: readonly CompressionName[];
  /** Ranges in flight, 1..rangesInFlightMax. */
  readonly rangesInFlight?: number;
  readonly persistIntervalMs?: number;
  readonly persistBytes?: number;
  /** Ask for plain copies of ranges after many almost wholly different ones (range-mode.ts); default true. */
  readonly copyMode?: boolean;
  /** Start paused (the daemon restores the operator's switch). */
  readonly paused?: boolean;
  readonly onStateChange?: (state: SyncTargetState) => void;
  /** Called once the first session's start position is persisted (fetch may begin at its log). */
  readonly onStartPosition?: (position: ReplayPosition) => void;
  /** Called when a session's source is another host than the copy so far came from: the copy starts again at offset 0. */
  readonly onSourceChanged?: (change: { from: string | undefined; to: string; discardedBytes: number }) => void;
}

export class SyncTarget {
  private stateValue: SyncTargetState;
  private pausedValue: boolean;
  private closedValue = false;
  private book: ProgressBook;
  /** The host the copy so far came from (absent: none yet, or a state file that did not say). */
  private sourceHost: string | undefined;
  private startPosition: ReplayPosition | undefined;
  private endPosition: ReplayPosition | undefined;
  private session: TargetSession | undefined;
  private writing = 0;
  private readonly writes = new Set<Promise<void>>();
  private teardown: Promise<void> = Promise.resolve();
  private persistChain: Promise<unknown> = Promise.resolve();
  private persistQueued = false;
  private persistedBytes: number;
  private lastPersistMs: number;
  private readonly bucket: TokenBucket;
  private modes: RangeModePolicy;
  /** Notified whenever in-flight work shrinks (for pause). */
  private readonly quiet = new Signal();
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly stateFile: string;
  private readonly rangesInFlight: number;
  private readonly done: Promise<void>;
  private settleDone: { resolve: () => void; reject: (error: SyncFailure) => void } | undefined;
  private counters = { sentBytes: 0, receivedBytes: 0, dataBytes: 0, zeroBytes: 0, rangesCompared: 0, rangesCopied: 0, sessions: 0, sourceChanges: 0 };
  private lastError: SyncFailure | undefined;
  /** The last save of the state file found no space (persistProgress). */
  private noSpace = false;
  /** Waits of persistWhenRoom for their next try; close() ends them. */
  private readonly roomWaits = new Set<() => void>();
  /** Messages of a session waiting behind a compressed run being inflated (absent: none). */
  private readonly inbound = new WeakMap<TargetSession, { chain: Promise<void>; pending: number }>();
  private compressionValue: CompressionName | undefined;

  private constructor(private readonly options: SyncTargetOptions, readonly sizeBytes: number, stored: SyncStateRecord | undefined) {
    this.clock = options.clock ?? systemClock;
    this.timers = options.timers ?? systemTimers;
    this.stateFile = options.stateFileName ?? syncStateFileName;
    this.rangesInFlight = Math.max(1, Math.min(rangesInFlightMax, options.rangesInFlight ?? rangesInFlightMax));
    this.bucket = new TokenBucket(this.clock, options.rateBytesPerS ?? rateBytesPerSDefault, rateBurstBytes);
    this.book = new ProgressBook(sizeBytes, stored?.nextBytes ?? 0);
    this.modes = new RangeModePolicy(options.copyMode ?? true);
    this.persistedBytes = this.book.doneBytes;
    this.lastPersistMs = this.clock.nowMs();
    this.startPosition = stored?.startPosition;
    this.sourceHost = stored?.sourceHost;
    this.endPosition = stored?.endPosition;
    this.pausedValue = options.paused ?? false;
    this.stateValue = this.endPosition !== undefined ? 'done' : this.pausedValue ? 'paused' : 'source-unreachable';
    this.done = new Promise<void>((resolve, reject) => (this.settleDone = { resolve, reject }));
    this.done.catch(() => undefined); // nobody need wait; whenDone() hands out the same promise
    if (this.stateValue === 'done') this.settle(undefined);
  }

  /**
   * Opens a target over a device, resuming from its state file if that belongs to the same
   * resource and size (otherwise the sync starts afresh and the old file is replaced).
   */
  static async open(options: SyncTargetOptions): Promise<SyncTarget> {
    const sizeBytes = options.sizeBytes ?? (await options.device.size());
    let stored = await loadSyncState(options.storage, options.stateFileName ?? syncStateFileName);
    if (stored !== undefined && (stored.resource !== options.resource || stored.sizeBytes !== sizeBytes)) stored = undefined;
    return new SyncTarget(options, sizeBytes, stored);
  }

  get state(): SyncTargetState {
    return this.stateValue;
  }

  progress(): SyncProgress {
    return {
      state: this.stateValue,
      paused: this.pausedValue,
      sizeBytes: this.sizeBytes,
      doneBytes: this.book.doneBytes,
      restBytes: this.book.restBytes,
      rateBytesPerS: this.book.rateBytesPerS(this.clock.nowMs()),
      rateLimitBytesPerS: this.rateLimitBytesPerS(),
      startPosition: this.startPosition,
      endPosition: this.endPosition,
      ...this.counters,
      lastError: this.lastError,
      compression: this.compressionValue,
    };
  }

  /** Resolves when the sync is done (at once if it already was); rejects if it failed or was closed. */
  whenDone(): Promise<void> {
    return this.done;
  }

  /** Syncs over an authenticated link (dialPeer(..., channel: 'sync')), receiving its frames directly. */
  attach(link: AttachableSyncLink): void {
    const session = this.linkOpened(link);
    link.attach({
      onFrame: (frame) => {
        if (session !== undefined) this.handleFrame(session, frame);
      },
      onClose: (error) => {
        if (session !== undefined) this.endSession(session, error, false);
      },
    });
  }

  /** A link to the source opened (PeerConnection's onOpen); its frames go to frameReceived. */
  linkOpened(link: SyncLink): TargetSession | undefined {
    if (this.closedValue || this.stateValue === 'done' || this.stateValue === 'failed') {
      link.close();
      return undefined;
    }
    if (this.session !== undefined) this.endSession(this.session, undefined, true);
    const session = new TargetSession(link, this.sizeBytes);
    this.session = session;
    this.counters.sessions++;
    this.setState(this.pausedValue ? 'paused' : 'syncing');
    void this.startSession(session);
    return session;
  }

  /** A frame from the current link (PeerConnection's onFrame). */
  frameReceived(frame: Frame): void {
    if (this.session !== undefined) this.handleFrame(this.session, frame);
  }

  /** The current link closed (PeerConnection's onClose). */
  linkClosed(error: MarsError | undefined): void {
    if (this.session !== undefined) this.endSession(this.session, error, false);
  }

  /** Stops asking for ranges; resolves once nothing is in flight and the progress is persisted. */
  async pause(): Promise<void> {
    this.pausedValue = true;
    if (this.stateValue === 'syncing' || this.stateValue === 'source-unreachable') this.setState('paused');
    while (!this.quiescent()) await this.quiet.wait();
    await this.teardown;
    await this.persistProgress(false);
  }

  resume(): void {
    this.pausedValue = false;
    if (this.stateValue === 'paused') this.setState(this.session === undefined ? 'source-unreachable' : 'syncing');
    this.book.resetRate();
    this.session?.wake.notify();
  }

  /** The tightest limit that applies (0 = none). */
  private rateLimitBytesPerS(): number {
    const rates = [this.bucket.rateBytesPerS, this.options.pacer?.limitBytesPerS() ?? 0].filter((r) => r > 0);
    return rates.length === 0 ? 0 : Math.min(...rates);
  }

  /** Changes the rate limit (bytes per second, 0 = unlimited). */
  setRate(rateBytesPerS: number): void {
    this.bucket.setRate(rateBytesPerS);
    this.session?.wake.notify();
  }

  /** Stops (daemon shutdown): closes the link, waits for writes, persists the progress. */
  async close(): Promise<void> {
    this.closedValue = true;
    for (const wake of this.roomWaits) wake(); // a save waiting for room gives up now
    this.roomWaits.clear();
    if (this.session !== undefined) this.endSession(this.session, new SyncError('SYNC_CLOSED', 'sync target closed'), true);
    await this.teardown;
    if (this.stateValue !== 'done' && this.stateValue !== 'failed') this.settle(new SyncError('SYNC_CLOSED', 'sync target closed before the sync finished'));
  }

  /** A method, so that the compiler does not narrow the flag across awaits. */
  private isClosed(): boolean {
    return this.closedValue;
  }

  private async startSession(session: TargetSession): Promise<void> {
    await this.teardown;
    if (!session.isOpen()) return;
    if (session.peerHost !== undefined && this.startPosition !== undefined && session.peerHost !== this.sourceHost) this.startAgainFrom(session.peerHost);
    session.nextBytes = this.book.doneBytes;
    const resumeFromBytes = Math.floor(session.nextBytes / blockBytes) * blockBytes;
    const compressions = this.options.compressions ?? [];
    if (compressions.length > 0) this.send(session, { kind: 'hello', compressions });
    this.send(session, { kind: 'start', resource: this.options.resource, sizeBytes: this.sizeBytes, resumeFromBytes });
  }

  /**
   * The source is another host than the one the copy so far came from (a new primary, or a
   * state file that did not say). Its blocks may hold writes the new host's history never
   * had — after a forced failover it does not — and replay from either start position
   * cannot undo them: the copy starts again at offset 0 with the new host's start
   * position. The device keeps its bytes, so ranges compared by digest find most of them
   * equal and only the differing blocks travel again. Called once the previous session's
   * writes are done; the state file keeps the old claim until the new start is persisted,
   * and a restart before that comes here again.
   */
  private startAgainFrom(host: string): void {
    const discardedBytes = this.book.doneBytes;
    const from = this.sourceHost;
    this.book = new ProgressBook(this.sizeBytes, 0);
    this.modes = new RangeModePolicy(this.options.copyMode ?? true);
    this.startPosition = undefined;
    this.sourceHost = undefined;
    this.persistedBytes = 0;
    this.counters.sourceChanges++;
    this.options.onSourceChanged?.({ from, to: host, discardedBytes });
  }

  private handleFrame(session: TargetSession, frame: Frame): void {
    if (!session.open) return;
    const bytes = wireBytes(frame.payload);
    this.counters.receivedBytes += bytes;
    this.bucket.take(bytes);
    this.options.pacer?.take(bytes);
    let message: SyncMessage;
    try {
      message = decodeSyncMessage(frame);
    } catch (err) {
      this.sessionFailed(session, asSyncFailure(err, 'sync target'));
      return;
    }
    if (message.kind === 'blocks-z') {
      const m = message;
      if (!(this.options.compressions ?? []).includes(m.compression)) {
        this.sessionFailed(session, new SyncError('SYNC_BAD_MESSAGE', `BLOCKS_Z in ${m.compression}, which this host did not offer`));
        return;
      }
      this.compressionValue = m.compression;
      // Inflated on the thread pool, bounded by rawBytes; what does not inflate to exactly
      // rawBytes ends the session (the range is asked for again), never written.
      const inflating = decompress(m.compression, m.data, m.rawBytes);
      inflating.catch(() => undefined);
      this.inOrder(session, async () => this.dispatch(session, { kind: 'blocks', offsetBytes: m.offsetBytes, data: await inflating }));
      return;
    }
    const release = frame.release;
    if (this.inbound.get(session) !== undefined) {
      this.inOrder(session, () => Promise.resolve(this.dispatch(session, message, release)));
      return;
    }
    try {
      this.dispatch(session, message, release);
    } catch (err) {
      this.sessionFailed(session, asSyncFailure(err, 'sync target'));
    }
  }

  /** Handles a message after those still being inflated, in arrival order. */
  private inOrder(session: TargetSession, handle: () => Promise<void>): void {
    const entry = this.inbound.get(session) ?? { chain: Promise.resolve(), pending: 0 };
    entry.pending++;
    entry.chain = entry.chain
      .then(async () => {
        if (session.open) await handle();
      })
      .catch((err: unknown) => {
        if (session.open) this.sessionFailed(session, asSyncFailure(err, 'sync target'));
      })
      .finally(() => {
        if (--entry.pending === 0 && this.inbound.get(session) === entry) this.inbound.delete(session);
      });
    this.inbound.set(session, entry);
  }

  /** `release` gives the frame's buffer back to the link (a BLOCKS payload: once its range is written). */
  private dispatch(session: TargetSession, m: SyncMessage, release?: () => void): void {
    switch (m.kind) {
      case 'accept':
        this.onAccept(session, m);
        return;
      case 'blocks':
        session.addRun(m.offsetBytes, m.data.length, { positionBytes: m.offsetBytes, data: m.data }, release);
        this.counters.dataBytes += m.data.length;
        return;
      case 'zeroes':
        session.addRun(m.offsetBytes, m.lengthBytes, { positionBytes: m.offsetBytes, zeroBytes: m.lengthBytes });
        this.counters.zeroBytes += m.lengthBytes;
        return;
      case 'range-done': {
        const slot = session.rangeDone(m.offsetBytes, m.blocks, m.differingBlocks);
        if (slot.mode === 'digests') this.modes.answered(slot.blocks, slot.differingBlocks);
        this.writeRange(slot);
        this.quiet.notify();
        session.wake.notify();
        return;
      }
      case 'finished':
        this.onFinished(session, m.endPosition);
        return;
      case 'error':
        throw m.reason === 'sizeMismatch' ? new SyncError('SYNC_SIZE_MISMATCH', `the source says: ${m.text}`) : new SyncError('SYNC_REFUSED', `the source gave up: ${m.reason}: ${m.text}`);
      default:
        throw new SyncError('SYNC_BAD_MESSAGE', `a source does not send ${m.kind}`);
    }
  }

  private onAccept(session: TargetSession, m: Extract<SyncMessage, { kind: 'accept' }>): void {
    if (session.accepted) throw new SyncError('SYNC_BAD_MESSAGE', 'ACCEPT twice');
    if (m.sizeBytes !== this.sizeBytes) throw new SyncError('SYNC_SIZE_MISMATCH', `the source has ${m.sizeBytes} bytes, the target ${this.sizeBytes}`);
    session.accepted = true;
    session.digestSeed = m.digestSeed;
    // The first session's start position is kept for good: every later copy is newer than it.
    const first = this.startPosition === undefined;
    if (first) {
      this.startPosition = m.startPosition;
      this.sourceHost = session.peerHost;
    }
    void (async () => {
      if (first) {
        if (!(await this.persistWhenRoom())) return;
        // The save may have waited for room while the link dropped and another source began
        // the sync again: only the start that is still the target's is announced.
        if (this.startPosition !== m.startPosition) return;
        this.options.onStartPosition?.(m.startPosition);
      }
      await this.pump(session);
    })().catch((err: unknown) => this.fail(asSyncFailure(err, 'sync target')));
  }

  /** Asks for ranges while the link is up, not paused, below the in-flight limit and the rate. */
  private async pump(session: TargetSession): Promise<void> {
    while (session.open) {
      if (session.nextBytes >= this.sizeBytes) {
        this.maybeFinish(session);
        return;
      }
      if (this.pausedValue || session.slots.length + this.writing >= this.rangesInFlight) {
        await session.wake.wait();
        continue;
      }
      const delayMs = Math.max(this.bucket.delayMs(), this.options.pacer?.delayMs() ?? 0);
      if (delayMs > 0) {
        await this.sleep(session, delayMs);
        continue;
      }
      await this.ask(session, session.newSlot(this.modes.next()));
    }
  }

  /** Sends the request for one range: COPY, or DIGESTS after reading and digesting the target's range. */
  private async ask(session: TargetSession, slot: Slot): Promise<void> {
    if (slot.mode === 'copy') {
      this.counters.rangesCopied++;
      slot.sent = true;
      this.send(session, { kind: 'copy', offsetBytes: slot.offsetBytes, blocks: slot.blocks });
      return;
    }
    session.reading = true;
    let digests: Buffer;
    try {
      digests = await this.readDigests(session, slot);
    } finally {
      session.reading = false;
      this.quiet.notify();
    }
    if (!session.isOpen()) return;
    this.counters.rangesCompared++;
    slot.sent = true;
    this.send(session, { kind: 'digests', offsetBytes: slot.offsetBytes, digests });
  }

  private async readDigests(session: TargetSession, slot: Slot): Promise<Buffer> {
    const buffer = session.readBuffer.subarray(0, slot.lengthBytes);
    let done = 0;
    while (done < slot.lengthBytes) {
      const n = await this.options.device.read(buffer.subarray(done), slot.offsetBytes + done);
      if (n === 0) break;
      done += n;
    }
    if (done < slot.lengthBytes) buffer.fill(0, done); // a device shorter than the resource reads as zeroes
    return blockDigests(buffer, session.digestSeed);
  }

  private async sleep(session: TargetSession, delayMs: number): Promise<void> {
    const handle = this.timers.setTimeout(() => session.wake.notify(), delayMs);
    await session.wake.wait();
    this.timers.clearTimeout(handle);
  }

  private writeRange(slot: Slot): void {
    this.writing++;
    const write = this.applyRange(slot).finally(() => {
      this.writes.delete(write);
      this.writing--;
      this.quiet.notify();
      this.session?.wake.notify();
    });
    this.writes.add(write);
  }

  private async applyRange(slot: Slot): Promise<void> {
    try {
      if (slot.jobs.length > 0) await this.options.device.writeBatch(slot.jobs);
    } catch (err) {
      this.fail(asSyncFailure(err, 'sync target write'));
      return;
    } finally {
      // Every write of the batch has settled: the received buffers may be reused.
      for (const release of slot.releases.splice(0)) release();
    }
    if (this.stateValue === 'failed') return;
    this.book.finished(slot.offsetBytes, slot.lengthBytes, this.clock.nowMs());
    this.maybePersist();
    if (this.session !== undefined) this.maybeFinish(this.session);
  }

  private maybeFinish(session: TargetSession): void {
    if (!session.open || !session.accepted || session.finishSent || session.slots.length > 0 || session.nextBytes < this.sizeBytes || !this.book.complete) return;
    session.finishSent = true;
    this.send(session, { kind: 'finish' });
  }

  private onFinished(session: TargetSession, endPosition: ReplayPosition): void {
    if (!session.finishSent || this.endPosition !== undefined) throw new SyncError('SYNC_BAD_MESSAGE', 'FINISHED before FINISH');
    this.endPosition = endPosition;
    void (async () => {
      await Promise.allSettled([...this.writes]);
      if (!(await this.persistWhenRoom())) return;
      this.setState('done');
      this.endSession(session, undefined, true);
      this.settle(undefined);
    })();
  }

  private maybePersist(): void {
    const pendingBytes = this.book.doneBytes - this.persistedBytes;
    const dueByTime = this.clock.nowMs() - this.lastPersistMs >= (this.options.persistIntervalMs ?? progressPersistIntervalMs);
    if (this.persistQueued || pendingBytes <= 0) return;
    // While the state file finds no space, once per interval (each try costs a device fdatasync).
    if (this.noSpace && !dueByTime) return;
    if (pendingBytes >= (this.options.persistBytes ?? progressPersistBytes) || dueByTime) void this.persistProgress(false);
  }

  /**
   * persistProgress(true) until it lands: while the state file finds no space, again after
   * a capped exponential backoff (`syncNoSpaceRetryMsMin`..`Max`). False once the target
   * failed or closed.
   */
  private async persistWhenRoom(): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.isClosed() || this.stateValue === 'failed') return false; // a closed target writes nothing more
      if (await this.persistProgress(true)) return true;
      if (!this.noSpace) return false;
      const delayMs = doublingDelayMs(attempt, syncNoSpaceRetryMsMin, syncNoSpaceRetryMsMax);
      await new Promise<void>((resolve) => {
        const handle = this.timers.setTimeout(() => {
          this.roomWaits.delete(wake);
          resolve();
        }, delayMs);
        const wake = (): void => {
          this.timers.clearTimeout(handle);
          resolve();
        };
        this.roomWaits.add(wake);
      });
    }
  }

  /**
   * Persists the copied prefix: device fdatasync first, then the state file, so the file
   * never claims more than the device holds. Serialized; false if it failed (the target
   * fails) or if the state file found no space (`noSpace`: nothing changed, the copy goes on).
   */
  private persistProgress(force: boolean): Promise<boolean> {
    this.persistQueued = true;
    const run = this.persistChain.then(async () => {
      this.persistQueued = false;
      const startPosition = this.startPosition;
      if (startPosition === undefined || this.stateValue === 'failed') return false;
      const nextBytes = this.book.doneBytes; // every write below it has completed
      if (!force && nextBytes === this.persistedBytes) return true;
      const endPosition = this.book.complete ? this.endPosition : undefined;
      try {
        // The device is synced first so that the file never claims more than it holds; a
        // file that claims nothing (the start position of a fresh copy) needs no device
        // sync, and on a busy disk that sync stood before the first request.
        if (nextBytes > 0) await this.options.device.sync();
      } catch (err) {
        this.fail(asSyncFailure(err, 'sync target persist'));
        return false;
      }
      try {
        const sourceHost = this.sourceHost;
        await saveSyncState(this.options.storage, { resource: this.options.resource, sizeBytes: this.sizeBytes, nextBytes, startPosition, endPosition, ...(sourceHost === undefined ? {} : { sourceHost }) }, this.stateFile);
      } catch (err) {
        if (err instanceof MarsError && err.code === 'ENOSPC') {
          this.noSpace = true;
          this.lastPersistMs = this.clock.nowMs();
          this.lastError = new MarsError('ENOSPC', `${err.message}: the sync goes on and saves its progress once there is room`, { cause: err });
          return false;
        }
        this.fail(asSyncFailure(err, 'sync target persist'));
        return false;
      }
      if (this.noSpace) {
        this.noSpace = false;
        this.lastError = undefined;
      }
      this.persistedBytes = nextBytes;
      this.lastPersistMs = this.clock.nowMs();
      return true;
    });
    this.persistChain = run;
    return run;
  }

  private send(session: TargetSession, message: SyncMessage): void {
    const frame = encodeSyncMessage(message);
    if (!session.open) return;
    if (session.link.send(frame.type, frame.payload)) {
      this.counters.sentBytes += wireBytes(frame.payload);
      this.bucket.take(wireBytes(frame.payload));
      this.options.pacer?.take(wireBytes(frame.payload));
    } else {
      this.endSession(session, new SyncError('SYNC_REFUSED', 'the sync link closed or its send buffer is full'), true);
    }
  }

  private quiescent(): boolean {
    const s = this.session;
    return this.writing === 0 && (s === undefined || (s.slots.length === 0 && !s.reading));
  }

  /** A protocol error or refusal on one link: the link is closed; a size mismatch fails the target. */
  private sessionFailed(session: TargetSession, error: SyncFailure): void {
    if (error instanceof SyncError && error.code === 'SYNC_SIZE_MISMATCH') this.fail(error);
    else this.endSession(session, error, true);
  }

  private endSession(session: TargetSession, error: SyncFailure | undefined, closeLink: boolean): void {
    if (!session.open) return;
    session.open = false;
    session.wake.notify();
    this.quiet.notify();
    if (closeLink) session.link.close(error === undefined ? undefined : linkCloseError(error));
    if (this.session === session) this.session = undefined;
    if (error !== undefined) this.lastError = error;
    if (this.stateValue === 'syncing') this.setState('source-unreachable');
    this.book.resetRate();
    // Ranges asked for and not answered are dropped; the next link resumes from the copied prefix.
    this.teardown = this.teardown.then(async () => {
      await Promise.allSettled([...this.writes]);
      await this.persistProgress(false);
    });
  }

  /** A local failure (device I/O, size mismatch): nothing more happens until the operator acts. */
  private fail(error: SyncFailure): void {
    if (this.stateValue === 'failed' || this.stateValue === 'done') return;
    this.lastError = error;
    this.setState('failed');
    if (this.session !== undefined) this.endSession(this.session, error, true);
    this.settle(error);
  }

  private settle(error: SyncFailure | undefined): void {
    const s = this.settleDone;
    if (s === undefined) return;
    this.settleDone = undefined;
    if (error === undefined) s.resolve();
    else s.reject(error);
  }

  private setState(state: SyncTargetState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.options.onStateChange?.(state);
  }
}
