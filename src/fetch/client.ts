/**
 * The fetch client: keeps local copies of a resource's log files in step with a source
 * (the primary, or any member that holds them), like `tail -f` across the network.
 *
 * - It resumes from the verified end of the local copy, after a disconnect (the link
 *   reconnects by itself with backoff) and after a restart (LocalCopies.open verifies it).
 * - Every record is verified on receipt (RecordStreamVerifier) before it is appended, so a
 *   corrupt frame (caught by the frame checksum: the link resets) or a bad record with a
 *   good frame checksum (the record checks: the link resets) never reaches the copy; the
 *   data is fetched again from the verified end. The same fault at the same offset
 *   `badRecordRetriesMax` times in a row stops fetch with FETCH_BAD_RECORD.
 * - Damage found later in a copy (replay's checks) is reported with `reportDamage`: the
 *   copy is cut there and fetched again.
 * - ENOSPC on the local log directory pauses fetch ('paused-no-space' with the error):
 *   the write is retried with capped exponential backoff, the server waits at the credit
 *   end meanwhile, and fetch resumes by itself when space returns.
 * - Memory is bounded: the server sends at most one credit window beyond what this
 *   client has processed, plus the one partial record the verifier holds.
 *
 * All events (link open and close, messages, damage reports, timers) are handled one at a
 * time, in arrival order, by one pump; the deciding is in fetch-plan.ts.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { backoffDelayMs, PeerConnection, type PeerLink, type Timers, type TimerHandle } from '../net/index.js';
import { encodeSynced, fetchSyncedFrameType } from './ack-protocol.js';
import { encodeLaneToken, fetchLaneFrameType, fetchSessionFrameType, LaneMerger, laneTokenBytes } from './lanes.js';
import { FetchError, type FetchErrorCode } from './errors.js';
import { fetchRestBytes, planFetch } from './fetch-plan.js';
import * as limits from './limits.js';
import type { LocalCopies } from './local-copies.js';
import type { LogInfo } from './log-source.js';
import { decodeFetchMessage, encodeFetchMessage, type FetchMessage } from './protocol.js';
import { RecordStreamVerifier, type RecordFault } from './record-verifier.js';
import { decompress, type CompressionName } from '../compress/index.js';

export type FetchState = 'idle' | 'source-unreachable' | 'fetching' | 'caught-up' | 'waiting-for-source' | 'paused-no-space' | 'failed' | 'stopped';

export interface FetchStatus {
  readonly state: FetchState;
  /** The log being fetched (the last local copy) and its verified length. */
  readonly logName: string | undefined;
  readonly localBytes: number;
  /**
   * Bytes the source holds that this host lacks, as far as it knows (MARS's fetch-rest);
   * null until the source has listed its logs to this client (unknown: after a restart the
   * local copy alone cannot tell how far the source has gone), and again after a damaged
   * copy was cut until the source lists them anew.
   */
  readonly fetchRestBytes: number | null;
  /** Why fetch is paused, waiting, failed or cannot reach its source. */
  readonly error: { readonly code: FetchErrorCode | MarsError['code']; readonly message: string } | undefined;
  /** When the source was last heard from (any frame, keepalives too; clock ms), if ever. */
  readonly lastContactMs: number | undefined;
  /** The compression the open link uses ('none' until the source has answered hello), undefined without a link. */
  readonly compression: CompressionName | undefined;
  /** Open connections to the source: the main link and its parallel ones (0: none). */
  readonly connections: number;
}

export interface FetchClientOptions {
  readonly resource: string;
  readonly copies: LocalCopies;
  /** Opens an authenticated 'fetch' link to the source (dialPeer with fixed options; may pick a member). */
  readonly dial: () => Promise<PeerLink>;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  /** With no local copy yet: the first log to fetch (say, where sync started). Default: the source's first. */
  readonly startLogNumber?: number;
  /**
   * With no local copy yet: where in log `startLogNumber` replay will start (a record
   * boundary: the sync's start), and the seq of the record there. The first copy begins
   * there; nothing before it is fetched.
   */
  readonly startOffsetBytes?: number;
  readonly startNextSeq?: bigint;
  /** For logs: "HOST at ADDRESS:PORT". */
  readonly name?: string;
  readonly backoffMsMin?: number;
  readonly backoffMsMax?: number;
  readonly noSpaceRetryMsMin?: number;
  readonly noSpaceRetryMsMax?: number;
  /** Called when the state (or its error) changes. */
  readonly onStatus?: (status: FetchStatus) => void;
  /**
   * A bandwidth limit (src/daemon/bandwidth.ts): received bytes are charged to it, the
   * credit window is `windowBytes()`, and a credit is renewed only once `delayMs()` is 0.
   */
  readonly pacer?: FetchPacer;
  /** Bytes the source holds that this host lacks, after each batch of data (0 when caught up or cut off). */
  readonly onRestBytes?: (bytes: number) => void;
  /** Compressions this host can receive (src/compress), said in a HELLO on every link; default none (no HELLO). */
  readonly compressions?: readonly CompressionName[];
  /** Near-sync mode of the resource: fdatasync the copy as soon as input runs dry and acknowledge each sync (SYNCED). */
  readonly nearSync?: () => boolean;
  /** Fetch connections to the source, the main one included (src/fetch/lanes.ts); default 1. */
  readonly parallelConnections?: number;
  /**
   * The host the link goes to when it is the designated primary (undefined otherwise): a
   * local copy beyond that primary's own open log is then a divergence, not a source that
   * is behind (src/fetch/fetch-plan.ts).
   */
  readonly primarySource?: () => string | undefined;
}

export interface FetchPacer {
  take(bytes: number): void;
  delayMs(): number;
  windowBytes(): number;
  /** Calls the listener whenever the limit changes (it resolves once the change is in force); returns the unsubscribe function. */
  subscribe?(listener: () => Promise<void>): () => void;
}

type ClientEvent =
  | { readonly kind: 'open'; readonly link: PeerLink }
  | { readonly kind: 'closed'; readonly error: MarsError | undefined }
  | { readonly kind: 'message'; readonly generation: number; readonly message: FetchMessage }
  | { readonly kind: 'data'; readonly generation: number; readonly message: DataMessage }
  | { readonly kind: 'damage'; readonly name: string; readonly offsetBytes: number; readonly done: () => void }
  | { readonly kind: 'relist' }
  | { readonly kind: 'credit'; readonly done?: () => void };

/** A DATA or DATA_Z message; a compressed chunk is being inflated (thread pool) while it waits in the queue. */
interface DataMessage {
  readonly requestId: number;
  readonly offsetBytes: number;
  readonly durableBytes: number;
  /** Log bytes the message stands for. */
  readonly rawBytes: number;
  readonly data: Buffer | Promise<Buffer>;
  /** Gives the frame's buffer back to the link's decoder (`Frame.release`), once nothing refers to `data`. */
  readonly release: (() => void) | undefined;
}

interface Stream {
  readonly requestId: number;
  readonly name: string;
  readonly verifier: RecordStreamVerifier;
  creditEndBytes: number;
  /**
   * Frame buffers to give back, with the stream offset where each one's data ends: one is
   * released once the copy holds everything up to there (appended) and the verifier no
   * longer holds a view of it (a partial record is the tail of what arrived).
   */
  readonly releases: { readonly endBytes: number; readonly release: () => void }[];
}

export class FetchClient {
  private readonly connection: PeerConnection;
  private readonly queue: ClientEvent[] = [];
  private pumping: Promise<void> | undefined;
  private link: PeerLink | undefined;
  /** Bumped at each link open and close: messages of an older link are dropped. */
  private generation = 0;
  private nextRequestId = 1;
  private listRequestId: number | undefined;
  private stream: Stream | undefined;
  private sourceLogs: LogInfo[] = [];
  /** The source has listed its logs (sourceLogs says where they end); false: fetch-rest is unknown. */
  private sourceLogsKnown = false;
  private stateValue: FetchState = 'idle';
  private errorValue: FetchStatus['error'];
  private noSpace = false;
  private badRecord: { offsetBytes: number; count: number } | undefined;
  private sleeper: { handle: TimerHandle; resolve: () => void } | undefined;
  private relistTimer: TimerHandle | undefined;
  private relistAttempt = 0;
  private creditTimer: TimerHandle | undefined;
  private unsubscribePacer: (() => void) | undefined;
  private linkCompression: CompressionName | undefined;
  private syncTimer: TimerHandle | undefined;
  private backgroundSync: Promise<void> | undefined;
  /** The latest link to the source, open or closed: when it last received anything is the last contact. */
  private contactLink: PeerLink | undefined;
  /** With parallel connections: the further links of this generation, and the merger of their DATA. */
  private lanes: PeerLink[] = [];
  private laneToken: Buffer | undefined;
  private readonly merger: LaneMerger | undefined;

  constructor(private readonly options: FetchClientOptions) {
    this.merger = (options.parallelConnections ?? 1) > 1 ? new LaneMerger() : undefined;
    this.connection = new PeerConnection({
      dial: options.dial,
      name: options.name ?? `fetch ${options.resource}`,
      clock: options.clock,
      timers: options.timers,
      random: options.random,
      backoffMsMin: options.backoffMsMin ?? limits.fetchBackoffMsMin,
      backoffMsMax: options.backoffMsMax ?? limits.fetchBackoffMsMax,
      onOpen: (link) => {
        this.contactLink = link;
        this.enqueue({ kind: 'open', link });
      },
      onFrame: (frame) => this.onFrame(frame.type, frame.payload, frame.release),
      onClose: (error) => {
        this.generation++;
        this.wakeSleeper();
        this.enqueue({ kind: 'closed', error });
      },
    });
  }

  start(): void {
    if (this.stateValue !== 'idle') return;
    this.unsubscribePacer = this.options.pacer?.subscribe?.(() => new Promise<void>((done) => this.enqueue({ kind: 'credit', done })));
    this.setState('source-unreachable', undefined);
    this.connection.start();
  }

  /** Stops fetching: the link is closed, the copy being fetched is fdatasync'd. */
  async stop(): Promise<void> {
    this.connection.stop();
    this.unsubscribePacer?.();
    this.options.onRestBytes?.(0);
    this.setState('stopped', this.errorValue);
    this.wakeSleeper();
    if (this.relistTimer !== undefined) this.options.timers.clearTimeout(this.relistTimer);
    if (this.creditTimer !== undefined) this.options.timers.clearTimeout(this.creditTimer);
    if (this.syncTimer !== undefined) this.options.timers.clearTimeout(this.syncTimer);
    this.closeLanes();
    while (this.pumping !== undefined) await this.pumping;
    await this.backgroundSync;
    await this.options.copies.close();
  }

  status(): FetchStatus {
    const last = this.options.copies.last;
    return {
      state: this.stateValue,
      logName: last?.name,
      localBytes: last?.verifiedBytes ?? 0,
      fetchRestBytes: this.sourceLogsKnown ? fetchRestBytes(last, this.sourceLogs, this.options.startLogNumber ?? 0, this.options.startOffsetBytes ?? 0) : null,
      error: this.errorValue,
      lastContactMs: this.contactLink?.lastReceivedAtMs,
      compression: this.link === undefined ? undefined : this.linkCompression,
      connections: this.link === undefined ? 0 : 1 + this.lanes.filter((l) => !l.closed).length,
    };
  }

  /** The source's logs as this client last heard of them (listed, with the durable ends DATA and CAUGHT_UP brought since). */
  get knownSourceLogs(): readonly LogInfo[] {
    return this.sourceLogs;
  }

  /** Replay found damage in a local copy: cut it there and fetch it again. Resolves once cut. */
  reportDamage(name: string, offsetBytes: number): Promise<void> {
    return new Promise((done) => this.enqueue({ kind: 'damage', name, offsetBytes, done }));
  }

  /** Resolves when every queued event has been handled (for tests and an orderly shutdown). */
  async idle(): Promise<void> {
    while (this.pumping !== undefined) await this.pumping;
  }

  // ---- events ----

  private onFrame(type: number, payload: Buffer, release: (() => void) | undefined): void {
    let message: FetchMessage;
    try {
      message = decodeFetchMessage(type, payload);
    } catch (err) {
      this.connection.link?.close(new MarsError('BAD_REQUEST', err instanceof Error ? err.message : String(err)));
      return;
    }
    if (this.queue.length >= limits.fetchQueuedEventsMax) {
      this.connection.link?.close(new MarsError('BAD_REQUEST', `more than ${limits.fetchQueuedEventsMax} fetch messages queued`));
      return;
    }
    if (message.type === 'data') {
      const { requestId, offsetBytes, durableBytes, data } = message;
      this.enqueueData({ kind: 'data', generation: this.generation, message: { requestId, offsetBytes, durableBytes, rawBytes: data.length, data, release } });
    } else if (message.type === 'data-z') {
      if (message.compression !== this.linkCompression) {
        this.connection.link?.close(new MarsError('BAD_REQUEST', `DATA compressed with ${message.compression} on a link that agreed on ${this.linkCompression ?? 'nothing'}`));
        return;
      }
      // Inflation starts now, on the thread pool; the pump awaits it in order. A chunk that
      // does not inflate to exactly rawBytes is refused there and fetched again, never applied.
      const data = decompress(message.compression, message.data, message.rawBytes);
      // The compressed bytes are not read once inflation has ended (the inflated chunk is a buffer of its own).
      data.then(
        () => release?.(),
        () => release?.(),
      );
      const { requestId, offsetBytes, durableBytes, rawBytes } = message;
      this.enqueueData({ kind: 'data', generation: this.generation, message: { requestId, offsetBytes, durableBytes, rawBytes, data, release: undefined } });
    } else if (this.merger !== undefined && (message.type === 'caught-up' || message.type === 'complete')) {
      const event: ClientEvent = { kind: 'message', generation: this.generation, message };
      this.merger.control(message.requestId, message.type === 'complete' ? message.finalBytes : message.durableBytes, () => this.enqueue(event));
    } else {
      this.enqueue({ kind: 'message', generation: this.generation, message });
    }
  }

  /** DATA in log order: with parallel connections through the merger, else as it comes. */
  private enqueueData(event: Extract<ClientEvent, { kind: 'data' }>): void {
    if (this.merger === undefined) this.enqueue(event);
    else this.merger.data(event.message.requestId, event.message.offsetBytes, event.message.rawBytes, () => this.enqueue(event));
  }

  /** Opens the further fetch connections of this link (after HELLO_REPLY: the source knows the SESSION by then). */
  private async openLanes(token: Buffer): Promise<void> {
    const generation = this.generation;
    const dials: Promise<void>[] = [];
    for (let i = 1; i < (this.options.parallelConnections ?? 1); i++) {
      const dialled = this.options.dial().then(
        (lane) => {
          if (this.generation !== generation || !this.isRunning()) {
            lane.close();
            return;
          }
          this.lanes.push(lane);
          lane.attach({
            onFrame: (frame) => {
              if (this.generation === generation) this.onFrame(frame.type, frame.payload, frame.release);
            },
            // What it carried is lost: the main link closes too and the stream starts again at the verified end.
            onClose: () => {
              if (this.generation === generation) this.connection.link?.close(new MarsError('EIO', 'a parallel fetch connection closed'));
            },
          });
          const { type, payload } = encodeLaneToken(fetchLaneFrameType, token);
          lane.send(type, payload);
        },
        () => undefined, // fewer connections: the main link carries the rest
      );
      dials.push(dialled);
    }
    await Promise.all(dials);
  }

  private closeLanes(): void {
    for (const lane of this.lanes.splice(0)) lane.close();
    this.merger?.reset();
  }

  private enqueue(event: ClientEvent): void {
    this.queue.push(event);
    this.pumping ??= this.pump();
  }

  /** Handles queued events in order. A local I/O error (not ENOSPC) fails fetch; later events are still drained. */
  private async pump(): Promise<void> {
    for (let event = this.queue.shift(); event !== undefined; event = this.queue.shift()) {
      try {
        await this.handle(event);
        if (this.queue.length === 0 && this.isRunning()) {
          if (this.options.nearSync?.() === true && this.options.copies.unsyncedBytes > 0) this.syncInBackground();
          else this.scheduleSync();
        }
      } catch (err) {
        this.fail(err instanceof MarsError || err instanceof FetchError ? err : new MarsError('EIO', String(err)));
      }
    }
    this.pumping = undefined;
  }

  private async handle(event: ClientEvent): Promise<void> {
    if (event.kind === 'credit' && event.done !== undefined) {
      // A changed limit: whoever changed it waits until the stream runs under it.
      try {
        if (this.isRunning() && this.stream !== undefined) this.creditChanged(this.stream);
      } finally {
        event.done();
      }
      return;
    }
    if (event.kind === 'damage') {
      await this.handleDamage(event.name, event.offsetBytes).finally(event.done);
      return;
    }
    if (!this.isRunning()) return;
    switch (event.kind) {
      case 'open': {
        this.generation++;
        this.link = event.link;
        this.stream = undefined;
        this.linkCompression = 'none';
        const compressions = this.options.compressions ?? [];
        if (this.merger !== undefined) {
          this.closeLanes();
          this.laneToken = this.options.random.bytes(laneTokenBytes);
          const { type, payload } = encodeLaneToken(fetchSessionFrameType, this.laneToken);
          event.link.send(type, payload);
        }
        // Always: it also says that this client verifies the records of DATA itself (recordCheckedData).
        this.send({ type: 'hello', requestId: 0, compressions: [...compressions], features: ['recordCheckedData'] });
        this.acknowledge();
        // With parallel connections the first LIST waits for them (HELLO_REPLY, then the dials): a
        // stream's first window would otherwise all go out on the main link.
        if (this.merger === undefined) this.requestList();
        return;
      }
      case 'closed':
        this.closeLanes();
        this.link = undefined;
        this.stream = undefined;
        this.listRequestId = undefined;
        if (!this.noSpace) this.setState('source-unreachable', event.error === undefined ? undefined : { code: event.error.code, message: event.error.message });
        this.options.onRestBytes?.(0);
        return;
      case 'credit':
        this.creditTimer = undefined;
        if (this.stream !== undefined) this.creditChanged(this.stream);
        return;
      case 'relist':
        this.relistTimer = undefined;
        this.requestList();
        return;
      case 'data':
        if (event.generation !== this.generation || event.message.requestId !== this.stream?.requestId) return; // an older link's or stream's
        await this.handleData(this.stream, [event.message, ...this.takeQueuedData(event.generation, event.message.requestId)]);
        return;
      case 'message':
        if (event.generation !== this.generation) return;
        await this.handleMessage(event.message);
        return;
    }
  }

  private async handleMessage(message: FetchMessage): Promise<void> {
    switch (message.type) {
      case 'list-reply':
        if (message.requestId === this.listRequestId) await this.handleList(message.logs, message.more);
        return;
      case 'data':
      case 'data-z':
        return; // queued as 'data' events (onFrame)
      case 'hello-reply': {
        const theirs = message.compression;
        if (theirs !== 'none' && !(this.options.compressions ?? []).includes(theirs)) {
          this.link?.close(new MarsError('BAD_REQUEST', `the source chose ${theirs}, which this host did not offer`));
          return;
        }
        this.linkCompression = theirs;
        if (this.laneToken !== undefined && this.lanes.length === 0) {
          const generation = this.generation;
          void this.openLanes(this.laneToken).then(() => {
            if (this.generation === generation) this.enqueue({ kind: 'relist' });
          });
        }
        return;
      }
      case 'caught-up':
        if (message.requestId !== this.stream?.requestId) return;
        this.noteSource(this.stream.name, message.durableBytes, false);
        if (this.stream.verifier.receivedEndBytes >= message.durableBytes) {
          this.setState('caught-up', undefined);
          this.options.onRestBytes?.(0);
        }
        return;
      case 'complete':
        if (message.requestId === this.stream?.requestId) await this.handleComplete(this.stream, message.finalBytes);
        return;
      case 'error':
        if (message.requestId === this.stream?.requestId || message.requestId === this.listRequestId) this.handleRefusal(message.reason, message.message);
        return;
      default:
        this.link?.close(new MarsError('BAD_REQUEST', `a server sent a client's message (${message.type})`));
    }
  }

  // ---- planning ----

  private requestList(): void {
    const requestId = this.nextRequestId++;
    this.listRequestId = requestId;
    const last = this.options.copies.last;
    this.send({ type: 'list', requestId, resource: this.options.resource, fromLogNumber: last?.logNumber ?? this.options.startLogNumber ?? 0 });
  }

  /** A list from where this host's logs begin is asked for (see handleList). */
  private probing = false;

  private async handleList(logs: LogInfo[], more: boolean): Promise<void> {
    this.listRequestId = undefined;
    this.sourceLogs = logs;
    this.sourceLogsKnown = true;
    const copies = this.options.copies;
    const primarySource = this.options.primarySource?.();
    const plan = planFetch(copies.last, logs, more, this.options.startLogNumber ?? 0, await copies.names(), this.options.startOffsetBytes ?? 0, primarySource);
    const probe = this.probing;
    if (plan.action !== 'relist') this.probing = false;
    // The list began at the last copy's number (or where replay starts) and is empty: the
    // source holds nothing from there on. Whether it is behind or on another history shows
    // only in its newest log: ask once for the whole list (paged, see planWithoutEntry).
    if (plan.action === 'wait' && !probe && primarySource !== undefined && logs.length === 0 && !more) {
      this.probing = true;
      this.send({ type: 'list', requestId: (this.listRequestId = this.nextRequestId++), resource: this.options.resource, fromLogNumber: 0 });
      return;
    }
    switch (plan.action) {
      case 'fetch':
        if (plan.createCopy && !(await this.startCopy(plan.logName, plan.fromOffsetBytes))) return;
        this.relistAttempt = 0;
        if (this.noSpace && plan.createCopy) this.noSpace = false;
        this.startStream(plan.logName, plan.fromOffsetBytes);
        return;
      case 'relist':
        this.send({ type: 'list', requestId: (this.listRequestId = this.nextRequestId++), resource: this.options.resource, fromLogNumber: plan.fromLogNumber });
        return;
      case 'wait':
        this.setState('waiting-for-source', { code: 'FETCH_REMOTE', message: plan.reason });
        this.scheduleRelist();
        return;
      case 'unavailable':
        this.fail(new FetchError('FETCH_REMOTE', plan.reason));
        return;
      case 'diverged':
        this.fail(new FetchError('FETCH_DIVERGED', plan.reason));
        return;
    }
  }

  /** Creates the copy of the next log; ENOSPC pauses and asks the source again later. */
  private async startCopy(name: string, baseBytes: number): Promise<boolean> {
    try {
      await this.options.copies.startCopy(name, baseBytes, baseBytes > 0 ? this.options.startNextSeq : undefined);
      this.acknowledge(); // the new copy exists durably (empty): a flush just after a rotation needs no more
      return true;
    } catch (err) {
      if (!(err instanceof MarsError) || err.code !== 'ENOSPC') throw err;
      this.noSpace = true;
      this.setState('paused-no-space', { code: err.code, message: err.message });
      this.scheduleRelist(this.options.noSpaceRetryMsMin ?? limits.noSpaceRetryMsMin, this.options.noSpaceRetryMsMax ?? limits.noSpaceRetryMsMax);
      return false;
    }
  }

  private scheduleRelist(minMs = this.options.backoffMsMin ?? limits.fetchBackoffMsMin, maxMs = this.options.backoffMsMax ?? limits.fetchBackoffMsMax): void {
    const delayMs = backoffDelayMs(this.relistAttempt++, this.options.random, minMs, maxMs);
    this.relistTimer = this.options.timers.setTimeout(() => this.enqueue({ kind: 'relist' }), delayMs);
  }

  private startStream(name: string, fromOffsetBytes: number): void {
    const last = this.options.copies.last;
    const verifier = new RecordStreamVerifier(fromOffsetBytes, last?.name === name ? last.nextSeq : undefined);
    const stream: Stream = { requestId: this.nextRequestId++, name, verifier, creditEndBytes: fromOffsetBytes + this.windowBytes(), releases: [] };
    this.stream = stream;
    this.merger?.expect(stream.requestId, fromOffsetBytes);
    this.setState('fetching', undefined);
    this.send({ type: 'fetch', requestId: stream.requestId, resource: this.options.resource, logName: name, fromOffsetBytes, creditEndBytes: stream.creditEndBytes });
  }

  // ---- data ----

  /**
   * Verifies DATA messages in order and appends their verified records in one gathered
   * write: the messages that queued up while the previous append ran go to disk together,
   * so the copy keeps pace with the link however long one write takes to come back.
   */
  private async handleData(stream: Stream, messages: readonly DataMessage[]): Promise<void> {
    const { verifier } = stream;
    const parts: Buffer[] = [];
    let fault: RecordFault | undefined;
    let refused: MarsError | undefined;
    for (const message of messages) {
      if (message.offsetBytes !== verifier.receivedEndBytes || message.offsetBytes + message.rawBytes > stream.creditEndBytes) {
        refused = new MarsError('BAD_REQUEST', `data at ${message.offsetBytes}+${message.rawBytes}, expected ${verifier.receivedEndBytes} within credit ${stream.creditEndBytes}`);
        break;
      }
      let data: Buffer;
      try {
        data = await message.data;
      } catch (err) {
        refused = err instanceof MarsError ? err : new MarsError('BAD_REQUEST', String(err));
        break;
      }
      this.noteSource(stream.name, message.durableBytes, false);
      const result = verifier.push(data);
      if (message.release !== undefined) stream.releases.push({ endBytes: message.offsetBytes + message.rawBytes, release: message.release });
      parts.push(...result.verified);
      fault = result.fault;
      if (fault !== undefined) break;
    }
    if (parts.length > 0) {
      const generation = this.generation;
      if (!(await this.appendWithRetry(parts, verifier.nextSeq, generation))) return;
      this.options.pacer?.take(parts.reduce((sum, part) => sum + part.length, 0));
      this.options.onRestBytes?.(this.status().fetchRestBytes ?? 0);
      if (this.options.copies.unsyncedBytes >= limits.fetchSyncBytesMax) this.syncInBackground();
    }
    releaseAppended(stream);
    if (refused !== undefined) {
      // What came before the refused message is verified and kept; the rest is fetched again.
      this.stream = undefined;
      this.link?.close(refused);
      return;
    }
    if (fault !== undefined) {
      this.badRecordReceived(stream.name, fault);
      return;
    }
    this.badRecord = undefined;
    if (this.stateValue !== 'fetching') this.setState('fetching', undefined);
    this.refreshCredit(stream);
  }

  /** The DATA messages of the same link and stream queued right behind the one being handled. */
  private takeQueuedData(generation: number, requestId: number): DataMessage[] {
    const taken: DataMessage[] = [];
    let takenBytes = 0;
    for (let next = this.queue[0]; next !== undefined && takenBytes < limits.fetchAppendBatchBytesMax; next = this.queue[0]) {
      if (next.kind !== 'data' || next.generation !== generation || next.message.requestId !== requestId) break;
      this.queue.shift();
      taken.push(next.message);
      takenBytes += next.message.rawBytes;
    }
    return taken;
  }

  /**
   * The limit changed (or its timer ran out). A credit already granted cannot be taken
   * back, so when it reaches further than the new window, the stream starts again at the
   * verified end with the new window: the source drops the old one (a new FETCH ends it),
   * and a lowered limit holds from now on instead of after the old window.
   */
  private creditChanged(stream: Stream): void {
    const last = this.options.copies.last;
    if (stream.creditEndBytes - stream.verifier.receivedEndBytes > this.windowBytes() && last?.name === stream.name) {
      this.startStream(stream.name, last.verifiedBytes);
      return;
    }
    this.refreshCredit(stream);
  }

  /** The credit window: the whole one, or a smaller one while a bandwidth limit applies. */
  private windowBytes(): number {
    return this.options.pacer?.windowBytes() ?? limits.fetchWindowBytes;
  }

  /**
   * Renews the credit once a quarter of the window is used. Under a bandwidth limit, only
   * once the limit allows: otherwise a timer tries again (the source waits at the credit end).
   */
  private refreshCredit(stream: Stream): void {
    const receivedEndBytes = stream.verifier.receivedEndBytes;
    const window = this.windowBytes();
    if (stream.creditEndBytes - receivedEndBytes > window - window / 4) return;
    const delayMs = this.options.pacer?.delayMs() ?? 0;
    if (delayMs > 0) {
      this.creditTimer ??= this.options.timers.setTimeout(() => this.enqueue({ kind: 'credit' }), delayMs);
      return;
    }
    stream.creditEndBytes = receivedEndBytes + window;
    this.send({ type: 'credit', requestId: stream.requestId, creditEndBytes: stream.creditEndBytes });
  }

  /** Appends, retrying ENOSPC with backoff; false when the link changed meanwhile (the data is dropped). */
  private async appendWithRetry(data: readonly Buffer[], nextSeq: bigint | undefined, generation: number): Promise<boolean> {
    const o = this.options;
    for (let attempt = 0; ; attempt++) {
      try {
        await o.copies.append(data, nextSeq);
        if (this.noSpace) {
          this.noSpace = false;
          this.setState('fetching', undefined);
        }
        return true;
      } catch (err) {
        if (!(err instanceof MarsError) || err.code !== 'ENOSPC') throw err;
        const delayMs = backoffDelayMs(attempt, o.random, o.noSpaceRetryMsMin ?? limits.noSpaceRetryMsMin, o.noSpaceRetryMsMax ?? limits.noSpaceRetryMsMax);
        this.noSpace = true;
        this.setState('paused-no-space', { code: err.code, message: `${err.message}; retrying in ${delayMs} ms` });
        await this.sleep(delayMs);
        if (this.generation !== generation || !this.isRunning()) return false;
      }
    }
  }

  /** An fdatasync that does not hold up the next append (one at a time). */
  private syncInBackground(): void {
    if (this.backgroundSync !== undefined) return;
    this.backgroundSync = this.options.copies
      .sync()
      .then(() => this.acknowledge())
      .catch((err: unknown) => {
        if (this.isRunning()) this.fail(err instanceof MarsError ? err : new MarsError('EIO', String(err)));
      })
      .finally(() => {
        this.backgroundSync = undefined;
        // Near-sync: what arrived during this fdatasync is synced (and acknowledged) right after it.
        if (this.options.nearSync?.() === true && this.options.copies.unsyncedBytes > 0 && this.isRunning()) this.syncInBackground();
      });
  }

  /** An fdatasync of the copy within `fetchSyncIntervalMs`, once, when its input has run dry. */
  private scheduleSync(): void {
    if (this.syncTimer !== undefined || this.options.copies.unsyncedBytes === 0) return;
    this.syncTimer = this.options.timers.setTimeout(() => {
      this.syncTimer = undefined;
      if (!this.isRunning()) return;
      this.options.copies
        .sync()
        .then(() => this.acknowledge())
        .catch((err: unknown) => {
          if (this.isRunning()) this.fail(err instanceof MarsError ? err : new MarsError('EIO', String(err)));
        });
    }, limits.fetchSyncIntervalMs);
  }

  /** Near-sync: tells the source how far the copy being fetched is durable (SYNCED, src/fetch/ack-protocol.ts). */
  private acknowledge(): void {
    const last = this.options.copies.last;
    if (this.options.nearSync?.() !== true || this.link === undefined || last === undefined) return;
    this.link.send(fetchSyncedFrameType, encodeSynced({ resource: this.options.resource, logName: last.name, syncedEndBytes: last.syncedBytes }));
  }

  private async handleComplete(stream: Stream, finalBytes: number): Promise<void> {
    const { verifier } = stream;
    if (verifier.receivedEndBytes !== finalBytes || verifier.partialBytes > 0) {
      this.link?.close(new MarsError('BAD_REQUEST', `${stream.name} complete at ${finalBytes}, but ${verifier.receivedEndBytes} bytes arrived (${verifier.partialBytes} of them a partial record)`));
      return;
    }
    this.noteSource(stream.name, finalBytes, true);
    await this.options.copies.sync();
    this.acknowledge();
    this.stream = undefined;
    this.requestList();
  }

  private badRecordReceived(name: string, fault: RecordFault): void {
    const count = this.badRecord?.offsetBytes === fault.offsetBytes ? this.badRecord.count + 1 : 1;
    this.badRecord = { offsetBytes: fault.offsetBytes, count };
    const message = `${name} at offset ${fault.offsetBytes}: received a bad record (${fault.reason})`;
    if (count >= limits.badRecordRetriesMax) {
      this.fail(new FetchError('FETCH_BAD_RECORD', `${message}, ${count} times in a row`));
      return;
    }
    this.stream = undefined;
    this.link?.close(new MarsError('LOG_CORRUPT', message));
  }

  private handleRefusal(reason: string, message: string): void {
    this.stream = undefined;
    this.listRequestId = undefined;
    switch (reason) {
      case 'sourceIo':
        this.link?.close(new MarsError('EIO', `source: ${message}`));
        return;
      case 'sourceDamaged':
        this.fail(new FetchError('FETCH_SOURCE_DAMAGED', message));
        return;
      case 'beyondDurable':
        this.fail(new FetchError('FETCH_DIVERGED', message));
        return;
      case 'noResource':
        // The source does not serve the resource now: its marsd restarts and recovers it, or
        // it has not taken the role yet. It is waited for (and asked again), not a failure:
        // for this resource the source is as good as unreachable (PrimaryUnreachable).
        this.setState('source-unreachable', { code: 'FETCH_REMOTE', message: `the source does not serve resource ${this.options.resource} now: ${message}` });
        this.scheduleRelist();
        return;
      default:
        this.fail(new FetchError('FETCH_REMOTE', `${reason}: ${message}`));
    }
  }

  private async handleDamage(name: string, offsetBytes: number): Promise<void> {
    if (this.stateValue === 'stopped') return;
    this.stream = undefined;
    await this.options.copies.cutAt(name, offsetBytes);
    this.sourceLogs = [];
    this.sourceLogsKnown = false;
    if (this.link !== undefined && this.isRunning()) this.requestList();
  }

  // ---- helpers ----

  private noteSource(name: string, durableBytes: number, complete: boolean): void {
    this.sourceLogs = this.sourceLogs.map((log) => (log.name === name ? { name, durableBytes: Math.max(log.durableBytes, durableBytes), complete: log.complete || complete } : log));
  }

  private send(message: FetchMessage): void {
    const { type, payload } = encodeFetchMessage(message);
    this.link?.send(type, payload);
  }

  private isRunning(): boolean {
    return this.stateValue !== 'stopped' && this.stateValue !== 'failed' && this.stateValue !== 'idle';
  }

  private setState(state: FetchState, error: FetchStatus['error']): void {
    const changed = state !== this.stateValue || error?.message !== this.errorValue?.message;
    this.stateValue = state;
    this.errorValue = error;
    if (changed) this.options.onStatus?.(this.status());
  }

  private fail(err: MarsError | FetchError): void {
    if (this.stateValue === 'stopped') return;
    this.setState('failed', { code: err.code, message: err.message });
    this.connection.stop();
  }

  private sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const handle = this.options.timers.setTimeout(() => {
        this.sleeper = undefined;
        resolve();
      }, delayMs);
      this.sleeper = { handle, resolve };
    });
  }

  private wakeSleeper(): void {
    const sleeper = this.sleeper;
    if (sleeper === undefined) return;
    this.sleeper = undefined;
    this.options.timers.clearTimeout(sleeper.handle);
    sleeper.resolve();
  }
}

/** Releases the frame buffers of a stream whose bytes are all in the copy and none in the verifier's partial record. */
function releaseAppended(stream: Stream): void {
  const appendedEndBytes = stream.verifier.verifiedEndBytes;
  while (stream.releases.length > 0 && stream.releases[0]!.endBytes <= appendedEndBytes) stream.releases.shift()!.release();
}
