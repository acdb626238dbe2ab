/**
 * The Replayer drives the replay engine over local log copies as they grow: a secondary's
 * replay. It follows a LogSource (LocalCopies.source), so it sees a copy only up to its
 * durable, verified end, and a copy is complete only once fetch has all of it.
 *
 * Rules:
 * - only verified records are applied: every record is read with the log scanner (magic,
 *   checksums, seq) and only up to the source's durable end; an invalid record before that
 *   end is damage of the local copy: it is reported (`onDamage`, FetchClient.reportDamage
 *   cuts and re-fetches it) and replay waits, so a damaged record is never applied;
 * - strictly in order: log N+1 is entered only once N is complete and replayed to its end,
 *   and N+1 must be the next number (the engine checks that seqs continue);
 * - the position is persisted only by the engine's checkpoint, after the device's
 *   fdatasync: when caught up (in the background: what arrives meanwhile is applied at
 *   once), when leaving a log, and when paused or stopped;
 * - pause: a paused replayer does not touch the device (fetch goes on); resume catches up.
 * - dirty mark: before a record ending beyond the persisted dirty mark is applied, a new
 *   mark is persisted (`persistDirtyMark`), `dirtyAheadBytes` beyond that record's end but
 *   never beyond the copy's durable end (so replay can always reach it again); the next
 *   one is saved in the background while replay is still below the current one (up to
 *   1.5 × `dirtyAheadBytes` ahead), so replay does not stop for each save. After a
 *   crash, replay restarts from the persisted position below the mark; until it reaches
 *   the mark found at start the device is no prefix state (`status().dirtyUntil`). The mark
 *   is a place in one history (src/strategy/replica-phase.ts): a log of its number that ends
 *   before it (a `primary --force` elsewhere cut it shorter), or of its number but another
 *   origin, never reaches it, and replay stops at the end of the log before
 *   (`REPLAY_OFF_HISTORY`) rather than go on over blocks of that other history:
 *   the position stays in the mark's log, so every start says so again, until invalidate.
 *
 * It waits for the source's next change instead of polling.
 */
import { MarsError } from '../core/errors.js';
import { doublingDelayMs, heldTimers, type Timers } from '../core/timers.js';
import { formatLogName, LogScanner, parseLogName } from '../log/index.js';
import { replayDirtyAheadBytes, replayNoSpaceRetryMsMax, replayNoSpaceRetryMsMin, replayReadChunkBytes } from './limits.js';
import { ReplayEngine, replayBatchRecordsMax, type ReplayBatchEntry } from '../replay/replay-engine.js';
import { comparePositions, type DirtyMark, type ReplayPosition } from '../replay/position.js';
import { logVerdict, placeVerdict } from '../strategy/index.js';
import type { StorageFile } from '../storage/storage.js';
import type { LogInfo, LogSource } from './log-source.js';

export type ReplayState = 'idle' | 'replaying' | 'caught-up' | 'paused' | 'paused-no-space' | 'failed' | 'stopped';

export interface ReplayerStatus {
  readonly state: ReplayState;
  /** After the last applied record. */
  readonly appliedPosition: ReplayPosition;
  /** The last position persisted (the device is durable up to it). */
  readonly persistedPosition: ReplayPosition;
  readonly appliedRecords: number;
  readonly error: { readonly code: string; readonly message: string } | undefined;
  /**
   * The persisted dirty mark while replay is below it: the device may hold records up to
   * it (written before a crash), so it is no prefix state until replay gets there.
   */
  readonly dirtyUntil: DirtyMark | undefined;
}

/** A log file replayed to its end, complete: the daemon extends the version chain with it. */
export interface ReplayedLog {
  readonly name: string;
  readonly logNumber: number;
  readonly host: string;
  readonly lengthBytes: number;
  /** The log replay enters next (its number and origin). */
  readonly next: { readonly logNumber: number; readonly host: string };
}

export interface ReplayerOptions {
  readonly source: LogSource;
  readonly device: StorageFile;
  readonly deviceSizeBytes: number;
  /** Where to start (the persisted replay position). */
  readonly start: ReplayPosition;
  /** Persists a position; called only after the device's fdatasync (savePosition). */
  readonly persist: (position: ReplayPosition) => Promise<void>;
  /** The persisted dirty mark (after a restart), if any. */
  readonly dirtyMark?: DirtyMark;
  /** Persists a dirty mark durably; without it no mark is kept (replay of a primary's own log). */
  readonly persistDirtyMark?: (mark: DirtyMark) => Promise<void>;
  /** How far beyond a record's end a new mark goes (capped at the copy's durable end). */
  readonly dirtyAheadBytes?: number;
  /** Damage of a local copy at a record boundary (FetchClient.reportDamage). */
  readonly onDamage?: (name: string, offsetBytes: number, reason: string) => void | Promise<void>;
  /** A log replayed completely, before replay enters the next one. */
  readonly onLogReplayed?: (log: ReplayedLog) => void | Promise<void>;
  readonly checkpointBytes?: number;
  readonly readChunkBytes?: number;
  /**
   * Once caught up, wait this long for more data before the checkpoint (device fdatasync,
   * position saved): under a steady stream replay catches up every few milliseconds, and
   * an fdatasync each time would cost the disk most of its time. 0: checkpoint at once.
   * `checkpointSoon()` skips the wait once (a handover waits for the position).
   */
  readonly idleCheckpointMs?: number;
  /** The host's timers (for idleCheckpointMs); default the real ones. */
  readonly timers?: Timers;
}

/** What one step of the loop did. */
type Step = 'progress' | 'wait';

class ReplayStop extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/**
 * A save of replay's own state (the position, the dirty mark, the version chain) found no
 * space: each is written aside and renamed, so nothing was saved and nothing is lost, and
 * replay waits for space rather than fail. A MarsError, so the engine passes it on as it is.
 * The device's fdatasync is never retried: after a failed one the page cache may have
 * dropped the writes, and only a start from the saved position (a restart) is safe then.
 */
class StateNoSpace extends MarsError {
  constructor(cause: MarsError) {
    super('ENOSPC', cause.message, { cause });
  }
}

/** Runs a save of replay's state; ENOSPC becomes StateNoSpace (waited out), anything else stays as it is. */
async function savingState<T>(save: () => Promise<T>): Promise<T> {
  try {
    return await save();
  } catch (err) {
    throw err instanceof MarsError && err.code === 'ENOSPC' ? new StateNoSpace(err) : err;
  }
}

/** True when `ms` passed before either promise settled. */
function idleFor(timers: Timers, ms: number, ...events: Promise<void>[]): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = timers.setTimeout(() => resolve(true), ms);
    for (const e of events) {
      void e.then(() => {
        timers.clearTimeout(timer);
        resolve(false);
      });
    }
  });
}

export class Replayer {
  private readonly engine: ReplayEngine;
  /**
   * Wakes the one wait of the run loop (pause, stop, checkpointSoon). One promise per wait,
   * dropped after it: a shared one that is seldom resolved would collect a reaction at
   * every catch-up (Promise.race, idleFor) for as long as it is not.
   */
  private wakeWaiter: (() => void) | undefined;
  private wakeRequested = false;
  private stateValue: ReplayState = 'idle';
  private errorValue: ReplayerStatus['error'];
  private running: Promise<void> | undefined;
  private file: { name: string; handle: StorageFile } | undefined;
  /** The scanner of the open file, kept from step to step (see scannerAt). */
  private scan: { name: string; scanner: LogScanner } | undefined;
  /** Records read from the scanner and covered by the dirty mark, not yet applied (at most replayBatchRecordsMax). */
  private readonly pending: ReplayBatchEntry[] = [];
  private checkpointWanted = false;
  /** The last persisted dirty mark. */
  private mark: DirtyMark | undefined;
  /** The save of the next mark, while it runs (markDirty). */
  private markSaving: Promise<void> | undefined;
  /** The last save failed: no early save until one that is needed succeeds (a full filesystem is not retried for every record). */
  private earlySaveFailed = false;
  /** The mark found at start: the device may hold records up to it until replay is there. */
  private readonly startMark: DirtyMark | undefined;

  constructor(private readonly options: ReplayerOptions) {
    this.mark = options.dirtyMark === undefined ? undefined : { ...options.dirtyMark };
    this.startMark = this.mark;
    this.engine = new ReplayEngine({
      device: options.device,
      deviceSizeBytes: options.deviceSizeBytes,
      persist: (position) => savingState(() => options.persist(position)),
      start: options.start,
      ...(options.checkpointBytes === undefined ? {} : { checkpointBytes: options.checkpointBytes }),
    });
  }

  status(): ReplayerStatus {
    return {
      state: this.stateValue,
      appliedPosition: this.engine.appliedPosition,
      persistedPosition: this.engine.persistedPosition,
      appliedRecords: this.engine.appliedRecords,
      error: this.errorValue,
      dirtyUntil: this.dirtyUntil(),
    };
  }

  start(): void {
    if (this.stateValue !== 'idle' && this.stateValue !== 'paused') return;
    this.stateValue = 'replaying';
    this.errorValue = undefined; // a pause while waiting for space leaves its message
    this.running = this.run();
  }

  /**
   * Stops touching the device: the current record finishes, the device is fdatasync'd and
   * the position persisted. While replay waits for space, there is nothing to finish and
   * no room to save a position: it just stops waiting (the dirty mark covers the device).
   */
  async pause(): Promise<void> {
    if (this.stateValue !== 'replaying' && this.stateValue !== 'caught-up' && this.stateValue !== 'paused-no-space') return;
    const waitingForSpace = this.stateValue === 'paused-no-space';
    this.stateValue = 'paused';
    await this.halt();
    if (waitingForSpace) this.errorValue = undefined; // nothing retries now: the message would mislead
  }

  resume(): void {
    if (this.stateValue === 'paused') this.start();
  }

  /** The next time replay is caught up, checkpoint at once (not after `idleCheckpointMs`). */
  checkpointSoon(): void {
    this.checkpointWanted = true;
    // Not while waiting for room: that wait keeps its backoff (a handover asks again and again).
    if (!this.waitingForSpace()) this.wakeUp();
  }

  async stop(): Promise<void> {
    const wasActive = this.stateValue === 'replaying' || this.stateValue === 'caught-up' || this.stateValue === 'paused-no-space';
    this.stateValue = 'stopped';
    // A failed checkpoint (failed by now, see halt) does not keep the rest from closing.
    if (wasActive) await this.halt().catch(() => undefined);
    await this.markSaved().catch(() => undefined); // no save of the mark may outlive the replayer either
    await this.engine.settled(); // no background checkpoint may outlive the replayer (the device closes next)
    await this.closeFile();
  }

  private async halt(): Promise<void> {
    this.wakeUp();
    await this.running;
    this.running = undefined;
    if (this.errorValue !== undefined) return;
    try {
      await this.checkpointIfDirty();
      await this.lowerMark();
    } catch (err) {
      // No room to save the position or the lowered mark: the saved mark still covers
      // everything written, as after a crash; the next start replays from the saved position.
      if (err instanceof StateNoSpace) return;
      // Anything else (a failed device fdatasync) fails replay: resume must not checkpoint again.
      const failure = err instanceof MarsError ? err : new MarsError('EIO', String(err), { cause: err });
      this.errorValue = { code: failure.code, message: failure.message };
      if (this.stateValue === 'paused') this.stateValue = 'failed';
      throw failure;
    }
  }

  /**
   * After a clean checkpoint the device holds exactly the records up to the saved
   * position: a mark ahead of it (written in batches) would make the next start report
   * the device dirty as after a crash. Kept while replay is still below the mark found at
   * start (what a crash may have left beyond is still there).
   */
  private async lowerMark(): Promise<void> {
    const persist = this.options.persistDirtyMark;
    await this.markSaved().catch(() => undefined); // one save of the mark at a time
    const mark = this.mark;
    if (persist === undefined || mark === undefined || this.dirtyUntil() !== undefined) return;
    const position = this.engine.appliedPosition;
    if (comparePositions(position, mark) >= 0) return;
    const lowered: DirtyMark = { logNumber: position.logNumber, logHost: position.logHost, offsetBytes: position.offsetBytes };
    try {
      await savingState(() => persist(lowered));
    } finally {
      // Lowered whatever the save's outcome: a save that reported ENOSPC from its directory
      // fsync may have put the lower mark in place already, and a mark in memory lower than
      // the one on disk only means an earlier save of the next one.
      this.mark = lowered;
    }
  }

  private active(): boolean {
    return this.stateValue === 'replaying' || this.stateValue === 'caught-up';
  }

  /** A promise resolved by the next wakeUp (at once if one came since the last wait began). */
  private nextWake(): Promise<void> {
    if (this.wakeRequested) {
      this.wakeRequested = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.wakeWaiter = resolve;
    });
  }

  private wakeUp(): void {
    const waiter = this.wakeWaiter;
    this.wakeWaiter = undefined;
    if (waiter === undefined) this.wakeRequested = true;
    else waiter();
  }

  /** A method, so that the compiler does not narrow the state across awaits. */
  private waitingForSpace(): boolean {
    return this.stateValue === 'paused-no-space';
  }

  /**
   * Follows the source until paused, stopped or failed. A save of replay's state that finds
   * no space (StateNoSpace) does not fail replay: it says 'paused-no-space' and tries again
   * after a capped exponential backoff (`replayNoSpaceRetryMsMin`..`Max`, from the start
   * again once replay got further), from the applied position: the device holds exactly
   * what was applied, and each save is whole or not there. A secondary's log filesystem
   * fills when fetch runs ahead of replay; space returns once replay lets copies go.
   */
  private async run(): Promise<void> {
    let attempt = 0;
    let appliedAtFailure = -1;
    for (;;) {
      try {
        await this.follow();
        return;
      } catch (err) {
        if (err instanceof StateNoSpace && !this.active()) {
          this.engine.forgetFailure(err);
          return; // paused or stopped meanwhile: halt() checkpoints if there is room, resume starts over
        }
        if (!(err instanceof StateNoSpace)) {
          const stop = err instanceof ReplayStop ? err : err instanceof MarsError ? new ReplayStop(err.code, err.message) : new ReplayStop('EIO', String(err));
          this.errorValue = { code: stop.code, message: stop.message };
          this.stateValue = 'failed';
          return;
        }
        this.engine.forgetFailure(err); // a background checkpoint's failure, met here already
        const applied = this.engine.appliedRecords;
        attempt = appliedAtFailure >= 0 && applied > appliedAtFailure ? 1 : attempt + 1;
        appliedAtFailure = applied;
        const delayMs = doublingDelayMs(attempt - 1, replayNoSpaceRetryMsMin, replayNoSpaceRetryMsMax);
        this.stateValue = 'paused-no-space';
        this.errorValue = { code: 'ENOSPC', message: `${err.message}; retrying in ${delayMs} ms` };
        await idleFor(this.options.timers ?? heldTimers, delayMs, this.nextWake());
        if (!this.waitingForSpace()) return; // paused or stopped meanwhile
        this.stateValue = 'replaying';
        this.errorValue = undefined;
      }
    }
  }

  private async follow(): Promise<void> {
    while (this.active()) {
      const changed = this.options.source.nextChange();
      const woken = this.nextWake();
      if ((await this.step()) === 'progress') continue;
      if (!this.active()) break;
      this.stateValue = 'caught-up';
      const idleMs = this.checkpointWanted ? 0 : (this.options.idleCheckpointMs ?? 0);
      if (idleMs > 0 && this.dirty() && !(await idleFor(this.options.timers ?? heldTimers, idleMs, changed, woken))) {
        if (this.active()) this.stateValue = 'replaying';
        continue; // more data (or a wake) came first: no checkpoint yet
      }
      // Asked for (a handover waits for the position): at once, at the applied position.
      // Else in the background: records that arrive during its fdatasyncs are applied at
      // once (a checkpoint under load takes up to a second). Its failure fails replay here.
      let checkpoint: Promise<void> | undefined;
      if (this.checkpointWanted) {
        this.checkpointWanted = false;
        await this.checkpointIfDirty();
      } else if (this.dirty()) {
        checkpoint = this.engine.checkpointInBackground();
      }
      if (!this.active()) break; // paused or stopped during the checkpoint: keep that state
      this.stateValue = 'caught-up';
      await Promise.race(checkpoint === undefined ? [changed, woken] : [changed, woken, checkpoint]);
      if (this.active()) this.stateValue = 'replaying';
    }
  }

  /** Replays what is there of the current log, or enters the next one. */
  private async step(): Promise<Step> {
    const position = this.engine.appliedPosition;
    const name = formatLogName(position.logNumber, position.logHost);
    const info = await this.options.source.info(name);
    if (info === undefined) {
      await this.checkMissing(name, position.logNumber);
      return 'wait';
    }
    if (position.offsetBytes < info.durableBytes) return this.replayRange(info, position);
    if (position.offsetBytes > info.durableBytes || !info.complete) return 'wait';
    return this.enterNext(info, position);
  }

  /** The current log is not in the source: wait for fetch, unless another history holds its place. */
  private async checkMissing(name: string, logNumber: number): Promise<void> {
    const logs = await this.options.source.list();
    // The same name may have appeared meanwhile (fetch created the copy since the look): that is no rival.
    const rival = logs.find((log) => log.name !== name && parseLogName(log.name)?.logNumber === logNumber);
    if (rival !== undefined) throw new ReplayStop('FETCH_DIVERGED', `replay is in ${name}, but the local copies hold ${rival.name}`);
  }

  private async enterNext(info: LogInfo, position: ReplayPosition): Promise<Step> {
    const logs = await this.options.source.list();
    const next = logs.find((log) => (parseLogName(log.name)?.logNumber ?? 0) > position.logNumber);
    if (next === undefined) return 'wait';
    const parsed = parseLogName(next.name)!;
    if (parsed.logNumber !== position.logNumber + 1) throw new ReplayStop('LOG_CORRUPT', `replay finished ${info.name}, but the next local copy is ${next.name}`);
    await savingState(async () => this.options.onLogReplayed?.({ name: info.name, logNumber: position.logNumber, host: position.logHost, lengthBytes: info.durableBytes, next: { logNumber: parsed.logNumber, host: parsed.host } }));
    const mark = this.dirtyUntil();
    if (mark !== undefined) {
      // Leaving the mark's log before the mark, or entering its number under another origin: off its history.
      const left = mark.logNumber === position.logNumber ? logVerdict(mark, { logHost: position.logHost, lengthBytes: info.durableBytes }, 'dirty-mark') : undefined;
      const entered = placeVerdict({ logNumber: parsed.logNumber, logHost: parsed.host, offsetBytes: 0 }, mark, 'passed', 'dirty-mark');
      const off = left?.kind === 'off-history' ? left : entered.kind === 'off-history' ? entered : undefined;
      if (off !== undefined) throw new ReplayStop('REPLAY_OFF_HISTORY', off.reason);
    }
    await this.closeFile();
    this.engine.enterLog(parsed.logNumber, parsed.host);
    await this.engine.checkpoint();
    return 'progress';
  }

  /**
   * Applies the verified records of `info` from `position` up to its durable end. The
   * records one read chunk holds are applied as one batch (ReplayEngine.applyBatch: in
   * order, contiguous writes gathered into one pwritev), each covered by the dirty mark
   * before the batch goes to the device; a batch is written before the chunk is read
   * into again (its payloads are views of the chunk).
   */
  private async replayRange(info: LogInfo, position: ReplayPosition): Promise<Step> {
    const scanner = await this.scannerAt(info.name, position);
    let applied = 0;
    try {
      try {
        for (let e = await scanner.next(); e !== undefined && this.active(); e = await scanner.next()) {
          if (e.endOffsetBytes > info.durableBytes) {
            // Beyond what fetch has verified: given back, so that the next step goes on with
            // this scanner and its buffer (a new one faults in 8 MiB of fresh pages).
            scanner.unread(e);
            break;
          }
          await this.markDirty(info, e.endOffsetBytes);
          this.pending.push({ record: e.record, endOffsetBytes: e.endOffsetBytes });
          applied++;
          if (this.pending.length >= replayBatchRecordsMax) await this.flushPending();
        }
      } finally {
        // The valid records read so far are applied, whatever stopped the scan (they are
        // covered by the mark already); a failed write leaves the position before them.
        await this.flushPending();
      }
    } catch (err) {
      if (!(err instanceof MarsError) || (err.code !== 'LOG_CORRUPT' && err.code !== 'LOG_SEQ_GAP')) throw err;
      const at = scanner.position().offsetBytes;
      if (err.code === 'LOG_SEQ_GAP' && at === 0) throw new ReplayStop('LOG_SEQ_GAP', err.message);
      await this.damaged(info.name, at, err.message);
      return applied > 0 ? 'progress' : 'wait';
    }
    const end = scanner.position().offsetBytes;
    if (this.active() && end < info.durableBytes && applied === 0) {
      await this.damaged(info.name, end, 'an invalid record before the verified end of the local copy');
      return 'wait';
    }
    return applied > 0 ? 'progress' : 'wait';
  }

  /**
   * In one run the device holds exactly the records applied (in order), whatever the mark
   * ahead of them; only the mark found at start says what a crash may have left beyond. It
   * is reached on its own history only (same log number, same origin, at least its offset).
   */
  private dirtyUntil(): DirtyMark | undefined {
    const mark = this.startMark;
    // In a later log: replay left the mark's log only past the mark (enterNext stops otherwise).
    return mark !== undefined && placeVerdict(this.engine.appliedPosition, mark, 'passed', 'dirty-mark').kind !== 'reached' ? { ...mark } : undefined;
  }

  /**
   * Returns once the persisted dirty mark covers a record ending at `endOffsetBytes` of
   * `info` (the current log): at once when it does, else after the save in flight (if it
   * covers the record) or a new one. Once replay is within `dirtyAheadBytes / 2` of the
   * mark and the copy holds more, the next mark (`dirtyAheadBytes` further, capped at the
   * copy's durable end) is saved in the background, so that replay following fetch does
   * not stop for a save (two fdatasyncs and a rename) every `dirtyAheadBytes`; a mark is
   * then at most 1.5 × `dirtyAheadBytes` beyond the record being applied. `this.mark` is
   * only ever what has been persisted; one save at a time.
   */
  private async markDirty(info: LogInfo, endOffsetBytes: number): Promise<void> {
    if (this.options.persistDirtyMark === undefined) return;
    const position = this.engine.appliedPosition;
    const record = { logNumber: position.logNumber, offsetBytes: endOffsetBytes };
    const covers = (mark: DirtyMark | undefined): boolean => mark !== undefined && comparePositions(record, mark) <= 0;
    if (!covers(this.mark)) {
      // A save started early that failed (say, ENOSPC while fetch filled the filesystem) is
      // not the end of replay: the mark is saved again now that it is needed, and only
      // that save's failure stops replay.
      await this.markSaved().catch(() => undefined);
      if (!covers(this.mark)) {
        this.saveMark(this.nextMark(info, position, endOffsetBytes));
        await this.markSaved();
      }
    }
    const mark = this.mark!;
    const aheadBytes = this.options.dirtyAheadBytes ?? replayDirtyAheadBytes;
    if (this.markSaving === undefined && !this.earlySaveFailed && mark.logNumber === position.logNumber && info.durableBytes > mark.offsetBytes && mark.offsetBytes - endOffsetBytes < aheadBytes / 2) {
      this.saveMark({ ...mark, offsetBytes: Math.min(info.durableBytes, mark.offsetBytes + aheadBytes) });
    }
  }

  /** The mark for a record ending at `endOffsetBytes`: `dirtyAheadBytes` beyond it, capped at the copy's durable end. */
  private nextMark(info: LogInfo, position: ReplayPosition, endOffsetBytes: number): DirtyMark {
    const aheadBytes = this.options.dirtyAheadBytes ?? replayDirtyAheadBytes;
    return { logNumber: position.logNumber, logHost: position.logHost, offsetBytes: Math.max(endOffsetBytes, Math.min(info.durableBytes, endOffsetBytes + aheadBytes)) };
  }

  /** Starts saving `mark` (none may be in flight); it becomes `this.mark` once durable. */
  private saveMark(mark: DirtyMark): void {
    const persist = this.options.persistDirtyMark!;
    const saving: Promise<void> = savingState(() => persist(mark))
      .then(
        () => {
          this.mark = mark;
          this.earlySaveFailed = false;
        },
        (err: unknown) => {
          this.earlySaveFailed = true;
          throw err;
        },
      )
      .finally(() => {
        if (this.markSaving === saving) this.markSaving = undefined;
      });
    saving.catch(() => undefined); // a failure is met by whoever waits for it (markSaved), or by the next save
    this.markSaving = saving;
  }

  /** Waits for the mark save in flight, if any; its failure is thrown here (the persisted mark is then the old one or the new). */
  private async markSaved(): Promise<void> {
    const saving = this.markSaving;
    if (saving === undefined) return;
    await saving;
  }

  private async damaged(name: string, offsetBytes: number, reason: string): Promise<void> {
    await this.closeFile();
    await this.options.onDamage?.(name, offsetBytes, reason);
  }

  private dirty(): boolean {
    const applied = this.engine.appliedPosition;
    const persisted = this.engine.persistedPosition;
    return applied.logNumber !== persisted.logNumber || applied.logHost !== persisted.logHost || applied.offsetBytes !== persisted.offsetBytes;
  }

  private async checkpointIfDirty(): Promise<void> {
    const applied = this.engine.appliedPosition;
    const persisted = this.engine.persistedPosition;
    if (applied.logNumber === persisted.logNumber && applied.logHost === persisted.logHost && applied.offsetBytes === persisted.offsetBytes) return;
    await this.engine.checkpoint();
  }

  /**
   * The scanner of `name` at `position`: the one of the last step when it stopped there
   * (so its read buffer, 8 MiB, is allocated once per log file, not at every step of a
   * replay that follows fetch closely), else a new one. The local copy only grows while
   * its file is open here: a cut (damage) closes the file, and the scanner with it.
   */
  private async scannerAt(name: string, position: ReplayPosition): Promise<LogScanner> {
    const kept = this.scan;
    if (kept !== undefined && kept.name === name && this.file?.name === name && kept.scanner.position().offsetBytes === position.offsetBytes) return kept.scanner;
    const file = await this.openFile(name);
    const scanner = new LogScanner(file, name, {
      fromOffsetBytes: position.offsetBytes,
      expectSeq: position.nextSeq,
      readChunkBytes: this.options.readChunkBytes ?? replayReadChunkBytes,
      tailMayGrow: true,
      reuseBuffer: true, // each batch is applied before the chunk is read into again
      beforeRefill: () => this.flushPending(),
    });
    this.scan = { name, scanner };
    return scanner;
  }

  /** Applies the records read but not yet applied, as one batch (they are views of the scanner's buffer). */
  private async flushPending(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending.splice(0);
    const at = this.engine.appliedPosition;
    await this.engine.applyBatch(batch, { logNumber: at.logNumber, logHost: at.logHost });
  }

  private async openFile(name: string): Promise<StorageFile> {
    if (this.file?.name === name) return this.file.handle;
    await this.closeFile();
    const handle = await this.options.source.open(name);
    this.file = { name, handle };
    return handle;
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    this.scan = undefined;
    this.pending.length = 0; // applied by now: every step flushes before it returns
    await file?.handle.close().catch(() => undefined);
  }
}
