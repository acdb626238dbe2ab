/**
 * The cluster simulator: N hosts with one resource, the real cores (sim-host.ts) on
 * simulated disks and links, one virtual clock, one seed for everything. A workload of
 * NBD-level writes, flushes and reads on the primary is mixed with planned handovers,
 * crashes and restarts, partitions and heals, slow and faulty links, pause and resume of
 * fetch, replay and sync, bit rot in secondaries' copies, log-delete, invalidate, leave and
 * join (full syncs), and emergency mode (with crashes in it). After every step the checkers run:
 *
 * - no flushed write is lost: a primary recovers to at least its last FLUSH, and its
 *   device then equals the history up to where it recovered; reads return the last write;
 *   a primary restarted in emergency mode (no recovery) holds every write up to the last
 *   FLUSH and every logged one, and beyond that only values later writes put there;
 * - anytime consistency: every secondary's device is the disk after some prefix of the
 *   primary's history, and that prefix is durable on the primary (ship only what is
 *   fdatasync'd); after a secondary's crash, once its replayer says it is past its dirty
 *   mark and, after a sync, past the sync's end (consistent, as `is-consistent` would say);
 * - log-delete never removes a log another member still needs (its saved position or its
 *   sync's start says so) unless emergency mode says so;
 * - emergency mode never fails a write (no operation on the primary fails);
 * - never two primaries serving at once;
 * - limits: the logger's shadow bytes, the simulated send buffers, the pending timers;
 * - at the end, after heal and quiescence, every member's device equals the primary's
 *   history byte for byte.
 *
 * A failure names its seed and the last events before it; the same seed replays it exactly.
 */
import { Random } from '../core/random.js';
import { fetchChunkBytesMax } from '../fetch/limits.js';
import { formatLogName } from '../log/index.js';
import { sendBufferBytesMax } from '../net/limits.js';
import { comparePositions, type ReplayPosition } from '../replay/position.js';
import { detectSplitBrain, type MemberHistory } from '../strategy/split-brain.js';
import { logDeleteHold } from '../strategy/log-deletion.js';
import { parseLogName, type LogFileName } from '../log/index.js';
import { History } from './history.js';
import { Scheduler, simTimersPendingMax } from './scheduler.js';
import type { DiskLatency } from './sim-disk.js';
import { SimHost, noMutations, type Mutations } from './sim-host.js';
import { SimNet, type NetFaults } from './sim-net.js';

export interface FaultSwitches {
  readonly crash: boolean;
  readonly partition: boolean;
  /** Resets and bit flips on links, slow links. */
  readonly netFaults: boolean;
  readonly diskLatency: boolean;
  readonly bitRot: boolean;
  readonly handover: boolean;
  readonly pause: boolean;
  /** log-delete on the members, held back by what the others report they need. */
  readonly logDelete: boolean;
  /** invalidate, leave-resource and join-resource of secondaries (each a full sync from the primary). */
  readonly membership: boolean;
  /** Log space running out: emergency mode on the primary, fetch paused for space on a secondary. */
  readonly emergency: boolean;
  /**
   * A secondary's log filesystem filled by another program: every write that needs room
   * fails with ENOSPC (fetch, replay's state, the sync's state) until the operator frees it.
   * Off in `allFaults`: a new kind of step changes the random choices of every seed, and the
   * fixed-seed cases (test/sim) were found without it; `--full-log-fs` and its own test run it.
   */
  readonly fullLogFs: boolean;
}

export const allFaults: FaultSwitches = { crash: true, partition: true, netFaults: true, diskLatency: true, bitRot: true, handover: true, pause: true, logDelete: true, membership: true, emergency: true, fullLogFs: false };

export interface SimOptions {
  readonly seed: number;
  readonly hosts: number;
  readonly steps: number;
  readonly faults: FaultSwitches;
  readonly mutations: Mutations;
  /** Lines of trace kept for a failure report. */
  readonly traceLines: number;
}

export const simOptionsDefault: Omit<SimOptions, 'seed'> = { hosts: 3, steps: 120, faults: allFaults, mutations: noMutations, traceLines: 25 };

export interface SimStats {
  writes: number;
  flushes: number;
  reads: number;
  crashes: number;
  restarts: number;
  handovers: number;
  handoversAbandoned: number;
  forced: number;
  splitBrains: number;
  partitions: number;
  bitRots: number;
  resets: number;
  corruptions: number;
  logsDeleted: number;
  invalidates: number;
  leaves: number;
  joins: number;
  syncs: number;
  emergencies: number;
  directWrites: number;
  spacePauses: number;
  syncPauses: number;
  /** Restarts of the primary in emergency mode (the device used as it is). */
  emergencyRestarts: number;
  syncResumes: number;
  /** Members that said their sync's end went off the primary's history after a --force (and were invalidated). */
  offHistory: number;
  /** Syncs that began again at a new start while fetch ran from the earlier one or its copies lay there. */
  syncStartsAgain: number;
  /** Secondaries' log filesystems filled by another program (ENOSPC for every write that needs room). */
  fills: number;
}

export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly failure: string | undefined;
  readonly step: number;
  readonly virtualMs: number;
  readonly trace: readonly string[];
  readonly stats: SimStats;
}

/** A broken invariant: the run fails with this message. */
export class SimFailure extends Error {}

const deviceBytes = 128 * 1024;
const writeBytesMax = 12 * 1024;
/** The logger's shadow budget here: small, so that admission waits for writeback often. */
const shadowBytesMax = 96 * 1024;
/** How long one operation may take in virtual time before the run calls it stuck. */
const operationMsMax = 120_000;
/** How long a planned handover waits for the new primary to replay to the old one's end. */
const handoverMsMax = 60_000;
/** Quiescence: how long the healed cluster has to converge. */
const convergeMsMax = 600_000;
const hostNames = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'];

export class ClusterSim {
  readonly scheduler = new Scheduler();
  readonly random: Random;
  readonly net: SimNet;
  readonly hosts: SimHost[] = [];
  readonly history = new History(deviceBytes);
  /** The designated primary. */
  primary: string;
  private readonly fetchSource = new Map<string, string>();
  /** Hosts that may hold records a forced failover threw away: they must converge or say that their history diverged. */
  private readonly mayDiverge = new Map<string, { logNumber: number; logHost: string }>();
  private readonly trace: string[] = [];
  private stepIndex = 0;
  /** The durable end of the current primary's history at its last crash (bounds what secondaries may hold meanwhile). */
  private durableAtCrash = 0;
  readonly stats: SimStats = { writes: 0, flushes: 0, reads: 0, crashes: 0, restarts: 0, handovers: 0, handoversAbandoned: 0, forced: 0, splitBrains: 0, partitions: 0, bitRots: 0, resets: 0, corruptions: 0, logsDeleted: 0, invalidates: 0, leaves: 0, joins: 0, syncs: 0, emergencies: 0, directWrites: 0, spacePauses: 0, syncPauses: 0, syncResumes: 0, emergencyRestarts: 0, offHistory: 0, syncStartsAgain: 0, fills: 0 };
  private readonly netFaults: NetFaults;

  constructor(readonly options: SimOptions) {
    this.random = new Random(options.seed);
    const f = options.faults;
    this.netFaults = { delayMsMin: 1, delayMsMax: f.netFaults ? 40 : 5, resetChance: f.netFaults ? 0.002 : 0, corruptChance: f.netFaults ? 0.001 : 0, slowBytesPerMs: 64 };
    this.net = new SimNet(this.scheduler.timers('net'), this.scheduler, new Random(this.random.uint32()), this.netFaults, (host) => this.host(host).timers);
    const latency: DiskLatency = f.diskLatency ? { ioMsMax: 2, syncMsMax: 8 } : { ioMsMax: 0, syncMsMax: 0 };
    const names = Array.from({ length: options.hosts }, (_, i) => hostNames[i] ?? `host${i}`);
    this.primary = names[0]!;
    for (const name of names) {
      this.hosts.push(
        new SimHost(name, {
          scheduler: this.scheduler,
          net: this.net,
          random: new Random(this.random.uint32()),
          sizeBytes: deviceBytes,
          limits: { shadowBytesMax, logRotateBytes: 48 * 1024, logSyncDelayMs: 50, positionPersistIntervalMs: 500 },
          mutations: options.mutations,
          latency,
          fetchSourceOf: (host) => this.fetchSource.get(host) ?? this.primary,
          primaryOf: () => this.primary,
          replayCheckpointBytes: 16 * 1024,
        }),
      );
    }
  }

  host(name: string): SimHost {
    const h = this.hosts.find((x) => x.name === name);
    if (h === undefined) throw new Error(`no host ${name}`);
    return h;
  }

  private note(text: string): void {
    this.trace.push(`${(this.scheduler.nowMs() / 1000).toFixed(3)}s #${this.stepIndex} ${text}`);
    if (this.trace.length > this.options.traceLines) this.trace.shift();
  }

  /** Runs the simulation; never throws (a failure is in the result). */
  async run(): Promise<SimResult> {
    let failure: string | undefined;
    try {
      await this.boot();
      for (this.stepIndex = 1; this.stepIndex <= this.options.steps; this.stepIndex++) {
        await this.step();
        await this.scheduler.runFor(this.random.int(30));
        this.check();
      }
      this.stepIndex = this.options.steps + 1;
      await this.converge();
    } catch (err) {
      failure = err instanceof SimFailure ? err.message : `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
      this.note(`FAIL ${failure.split('\n')[0]!}`);
    }
    this.stats.resets = this.net.resets;
    this.stats.syncs = this.hosts.reduce((sum, h) => sum + h.syncsDone, 0);
    this.stats.syncStartsAgain = this.hosts.reduce((sum, h) => sum + h.syncStartsAgain, 0);
    this.stats.corruptions = this.net.corruptions;
    for (const h of this.hosts) h.timers.kill();
    return { seed: this.options.seed, ok: failure === undefined, failure, step: this.stepIndex, virtualMs: this.scheduler.nowMs(), trace: [...this.trace], stats: { ...this.stats } };
  }

  /** Waits (in virtual time) for an operation of the cores; stuck beyond `boundMs` is a failure. */
  async perform<T>(what: string, op: Promise<T>, boundMs = operationMsMax): Promise<T> {
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    op.then(
      (value) => (outcome = { ok: true, value }),
      (error: unknown) => (outcome = { ok: false, error }),
    );
    const startMs = this.scheduler.nowMs();
    await this.scheduler.runUntil(() => outcome !== undefined, startMs + boundMs);
    if (outcome === undefined) throw new SimFailure(`${what} did not finish within ${boundMs} ms of virtual time`);
    if (!outcome.ok) throw new SimFailure(`${what} failed: ${outcome.error instanceof Error ? outcome.error.message : String(outcome.error)}`);
    return outcome.value;
  }

  private async boot(): Promise<void> {
    for (const h of this.hosts) await h.create(this.primary);
    for (const h of this.hosts) {
      if (h.name === this.primary) await this.perform(`start ${h.name} as primary`, h.startPrimary());
      else await this.perform(`start ${h.name} as secondary`, h.startSecondary());
    }
    this.noteReports();
    this.note(`${this.hosts.length} hosts, ${this.primary} primary`);
  }

  private primaryLogger(): import('../logger/logger.js').Logger | undefined {
    const role = this.host(this.primary).role;
    return role.kind === 'primary' ? role.logger : undefined;
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.random.int(items.length)];
  }

  private async step(): Promise<void> {
    const f = this.options.faults;
    const down = this.hosts.filter((h) => !h.up);
    const secondaries = this.hosts.filter((h) => h.role.kind === 'secondary');
    const choices: [number, () => Promise<void>][] = [
      [40, () => this.write()],
      [8, () => this.flush()],
      [8, () => this.read()],
      [8, () => this.scheduler.runFor(1 + this.random.int(2_000))],
    ];
    if (f.crash && down.length < this.hosts.length - 1) choices.push([3, sync(() => this.crash())]);
    // A member replaying to its sync's end when the primary dies is the case a --force must
    // not report consistent on a mixed disk: made likelier than a random crash would make it.
    const toSyncEnd = secondaries.some((h) => h.role.kind === 'secondary' && h.role.phase.kind === 'replaying' && h.role.phase.syncEnd !== undefined);
    if (f.crash && f.handover && toSyncEnd && this.host(this.primary).up) choices.push([4, sync(() => this.crash(this.host(this.primary)))]);
    if (down.length > 0) choices.push([8, () => this.restart(this.pick(down)!)]);
    if (f.partition) choices.push([3, sync(() => this.partition())], [4, sync(() => this.heal())]);
    if (f.netFaults) choices.push([2, sync(() => this.slowLink())]);
    if (f.pause && secondaries.length > 0) choices.push([5, () => this.toggleSwitch(this.pick(secondaries)!)]);
    const syncing = this.hosts.filter((h) => h.role.kind === 'syncing' || (h.syncPaused && h.up));
    if (f.pause && syncing.length > 0) choices.push([4, () => this.toggleSync(this.pick(syncing)!)]);
    if (f.handover && secondaries.length > 0 && this.primaryLogger() !== undefined) choices.push([3, () => this.handover(this.pick(secondaries)!)]);
    if (f.handover && secondaries.length > 0 && !this.host(this.primary).up) choices.push([3, () => this.forceFailover(this.pick(secondaries)!)]);
    if (f.bitRot && secondaries.length > 0) choices.push([2, sync(() => this.bitRot(this.pick(secondaries)!))]);
    if (f.logDelete) choices.push([3, () => this.logDelete(this.pick(this.hosts.filter((h) => h.up))!)]);
    if (f.emergency) {
      const p = this.host(this.primary);
      if (p.role.kind === 'primary' && !p.inEmergency()) choices.push([1, () => this.enterEmergency(p)]);
      if (p.inEmergency()) choices.push([5, () => this.leaveEmergency(p)]);
      if (secondaries.length > 0) choices.push([2, () => this.toggleSpacePause(this.pick(secondaries)!)]);
    }
    if (f.fullLogFs) {
      const full = this.hosts.filter((h) => h.logDisk.full);
      const fillable = this.hosts.filter((h) => h.role.kind === 'secondary' || h.role.kind === 'syncing');
      if (fillable.length > 0 && full.length === 0) choices.push([2, sync(() => this.fill(this.pick(fillable)!))]);
      if (full.length > 0) choices.push([4, sync(() => this.unfill(full[0]!))]);
    }
    const offHistory = this.hosts.filter((h) => h.offHistory() !== undefined && !h.logDisk.full);
    if (offHistory.length > 0) choices.push([4, () => this.invalidateOffHistory(this.pick(offHistory)!)]);
    if (f.membership) {
      // invalidate and join-resource write state files: on a full log filesystem they fail with ENOSPC, so the operator frees space first.
      const members = this.hosts.filter((h) => h.name !== this.primary && !h.logDisk.full && (h.role.kind === 'secondary' || h.role.kind === 'syncing'));
      const left = this.hosts.filter((h) => h.role.kind === 'left' && !h.logDisk.full);
      if (members.length > 0) choices.push([2, () => this.invalidate(this.pick(members)!)]);
      if (members.length > 0 && left.length === 0) choices.push([1, () => this.leave(this.pick(members)!)]);
      if (left.length > 0) choices.push([3, () => this.join(this.pick(left)!)]);
    }
    let roll = this.random.int(choices.reduce((sum, [w]) => sum + w, 0));
    for (const [weight, action] of choices) {
      if (roll < weight) return action();
      roll -= weight;
    }
  }

  // ---- the workload ----

  private async write(): Promise<void> {
    const logger = this.primaryLogger();
    if (logger === undefined) return;
    const lengthBytes = this.random.chance(0.5) ? 512 * (1 + this.random.int(writeBytesMax / 512)) : 1 + this.random.int(writeBytesMax);
    const offsetBytes = this.random.chance(0.5) ? 512 * this.random.int((deviceBytes - lengthBytes) / 512) : this.random.int(deviceBytes - lengthBytes + 1);
    const data = this.random.bytes(lengthBytes);
    const fua = this.random.chance(0.1);
    const direct = logger.loggerMode !== 'logging';
    // Emergency mode never fails a write: perform() fails the run if it does.
    await this.perform(`write ${lengthBytes} bytes at ${offsetBytes} on ${this.primary}${direct ? ' (emergency mode)' : ''}`, logger.write(offsetBytes, data, fua));
    const logSeq = Number(logger.status().logPosition.nextSeq) - 1;
    let seq: number;
    if (direct) {
      seq = this.history.lastSeq + 1;
      const w = this.directWindows.at(-1);
      if (w?.afterSeq === logSeq) w.count++;
      else this.directWindows.push({ afterSeq: logSeq, count: 1, hole: logger.durableLogEnd().logNumber + 1 });
      this.stats.directWrites++;
    } else {
      seq = this.historyIndex(logSeq);
    }
    this.history.append({ seq, offsetBytes, data });
    if (fua) this.history.flushedSeq = seq;
    this.stats.writes++;
    this.note(`write #${seq} ${lengthBytes}@${offsetBytes}${fua ? ' FUA' : ''}${direct ? ' direct' : ''} on ${this.primary}`);
  }

  private async flush(): Promise<void> {
    const logger = this.primaryLogger();
    if (logger === undefined) return;
    await this.perform(`flush on ${this.primary}`, logger.flush());
    this.history.flushedSeq = this.history.lastSeq;
    this.stats.flushes++;
    this.note(`flush through #${this.history.lastSeq} on ${this.primary}`);
  }

  private async read(): Promise<void> {
    const logger = this.primaryLogger();
    if (logger === undefined) return;
    const lengthBytes = 1 + this.random.int(2 * writeBytesMax);
    const offsetBytes = this.random.int(deviceBytes - lengthBytes + 1);
    const got = await this.perform(`read ${lengthBytes} bytes at ${offsetBytes} on ${this.primary}`, logger.read(offsetBytes, lengthBytes));
    this.stats.reads++;
    const want = this.history.image.subarray(offsetBytes, offsetBytes + lengthBytes);
    if (!got.equals(want)) {
      const at = firstDifference(got, want);
      throw new SimFailure(`read of ${lengthBytes} bytes at ${offsetBytes} on primary ${this.primary} differs from the history at byte ${offsetBytes + at} (after record #${this.history.lastSeq})`);
    }
  }

  // ---- faults ----

  private crash(which?: SimHost): void {
    // The primary may crash in emergency mode too: it restarts in it (restartInEmergency).
    const h = which ?? this.pick(this.hosts.filter((x) => x.up));
    if (h === undefined) return;
    const silent = this.random.chance(0.5);
    if (h.name === this.primary) {
      const logger = this.primaryLogger();
      if (logger !== undefined) this.durableAtCrash = this.historyIndex(Number(logger.durableLogEnd().nextSeq) - 1, true);
    }
    h.crash(silent);
    this.stats.crashes++;
    this.note(`crash ${h.name}${silent ? ' (power loss)' : ' (kill -9)'}${h.name === this.primary ? ', the primary' : ''}`);
  }

  private async restart(h: SimHost): Promise<void> {
    this.stats.restarts++;
    if (h.name !== this.primary) {
      await this.perform(`restart of ${h.name} as secondary`, h.startSecondary());
      this.note(`restart ${h.name} as secondary, replay from #${h.appliedSeq()}`);
      return;
    }
    const { start, emergency } = await this.perform(`restart of ${h.name} as primary (recovery)`, h.startPrimary());
    if (emergency) return this.restartedInEmergency(h, start);
    const recovered = this.historyIndex(Number(start.nextSeq) - 1, true);
    this.note(`restart ${h.name} as primary, recovered through #${recovered} (flushed #${this.history.flushedSeq}, written #${this.history.lastSeq})`);
    if (recovered < this.history.flushedSeq) throw new SimFailure(`${h.name} recovered through record #${recovered}, but a FLUSH was answered after #${this.history.flushedSeq}: a flushed write was lost`);
    if (recovered > this.history.lastSeq) throw new SimFailure(`${h.name} recovered through record #${recovered}, but only #${this.history.lastSeq} were written`);
    const want = this.history.imageAt(recovered);
    const got = h.deviceImage();
    if (!got.equals(want)) throw new SimFailure(`after recovery through #${recovered} the device of ${h.name} differs from the history at byte ${firstDifference(got, want)}`);
    this.truncateHistory(Number(start.nextSeq) - 1, true);
  }

  /**
   * The primary restarted in emergency mode: no recovery, the device as the crash left it.
   * Nothing answered may be lost: the device holds every write up to the last FLUSH (or FUA)
   * and every logged write (the entry into emergency mode wrote them back and made the device
   * durable); each byte beyond that is its value then or one that a later (direct) write put
   * there, whole or torn. The history then goes on from the device as it is: the later
   * writes that survived, in part or whole, become direct writes of the current emergency.
   */
  private restartedInEmergency(h: SimHost, start: ReplayPosition): void {
    const logSeq = Number(start.nextSeq) - 1;
    let window = this.directWindows.at(-1);
    if (window === undefined || window.afterSeq !== logSeq) {
      // No direct write yet in this emergency.
      if (window !== undefined && window.afterSeq > logSeq) throw new SimFailure(`${h.name} restarted in emergency mode after log record #${logSeq}, before the direct writes after #${window.afterSeq}`);
      window = { afterSeq: logSeq, count: 0, hole: start.logNumber + 1 };
      this.directWindows.push(window);
    }
    const logged = this.historyIndex(logSeq);
    const base = Math.max(this.history.flushedSeq, logged);
    const want = this.history.imageAt(base);
    const got = h.deviceImage();
    const later = this.history.records.slice(base);
    const runs: { offsetBytes: number; endBytes: number }[] = [];
    for (let b = 0; b < got.length; b++) {
      if (got[b] === want[b]) continue;
      const written = later.some((r) => b >= r.offsetBytes && b < r.offsetBytes + r.data.length && r.data[b - r.offsetBytes] === got[b]);
      if (!written) throw new SimFailure(`${h.name} restarted in emergency mode: its device byte ${b} holds a value no write after #${base} put there (flushed #${this.history.flushedSeq}, logged #${logged}): an answered write was lost`);
      const run = runs.at(-1);
      if (run?.endBytes === b) run.endBytes++;
      else runs.push({ offsetBytes: b, endBytes: b + 1 });
    }
    const lastBefore = this.history.lastSeq;
    this.history.truncate(base);
    window.count = base - logged;
    for (const run of runs) {
      this.history.append({ seq: this.history.lastSeq + 1, offsetBytes: run.offsetBytes, data: Buffer.from(got.subarray(run.offsetBytes, run.endBytes)) });
      window.count++;
    }
    this.history.flushedSeq = this.history.lastSeq;
    this.stats.emergencyRestarts++;
    this.note(`restart ${h.name} as primary in emergency mode: the device as it is, #${base} and ${runs.length} ranges of the ${lastBefore - base} later direct writes`);
  }

  private partition(): void {
    const a = this.pick(this.hosts)!;
    const others = this.hosts.filter((h) => h !== a);
    if (this.random.chance(0.3)) {
      for (const b of others) this.net.partition(a.name, b.name);
      this.note(`partition: ${a.name} alone`);
    } else {
      const b = this.pick(others)!;
      this.net.partition(a.name, b.name);
      this.note(`partition: ${a.name} | ${b.name}`);
    }
    this.stats.partitions++;
  }

  private heal(): void {
    if (this.net.partitionCount === 0) return;
    this.net.healAll();
    this.note('heal every partition and slow link');
  }

  private slowLink(): void {
    const [a, b] = [this.pick(this.hosts)!, this.pick(this.hosts)!];
    if (a === b) return;
    this.net.setSlow(a.name, b.name, true);
    this.note(`slow link ${a.name} - ${b.name}`);
  }

  private async toggleSwitch(h: SimHost): Promise<void> {
    switch (this.random.int(2)) {
      case 0:
        if (h.fetchPaused) await this.perform(`resume-fetch on ${h.name}`, h.resumeFetch());
        else await this.perform(`pause-fetch on ${h.name}`, h.pauseFetch());
        this.note(`${h.fetchPaused ? 'pause' : 'resume'}-fetch ${h.name}`);
        return;
      default:
        if (h.replayPaused) h.resumeReplay();
        else await this.perform(`pause-replay on ${h.name}`, h.pauseReplay());
        this.note(`${h.replayPaused ? 'pause' : 'resume'}-replay ${h.name}`);
    }
  }

  /** pause-sync or resume-sync of a member (the switch also holds for a sync that starts later, and across restarts). */
  private async toggleSync(h: SimHost): Promise<void> {
    if (h.syncPaused) {
      h.resumeSync();
      this.stats.syncResumes++;
    } else {
      await this.perform(`pause-sync on ${h.name}`, h.pauseSync());
      this.stats.syncPauses++;
    }
    const p = h.role.kind === 'syncing' ? h.role.target.progress() : undefined;
    this.note(`${h.syncPaused ? 'pause' : 'resume'}-sync ${h.name}${p === undefined ? '' : ` (${p.doneBytes} of ${p.sizeBytes} bytes copied)`}`);
  }

  /** Bit rot in a part of a secondary's copies that its (paused) replay has not read yet: replay must find it and fetch again. */
  private bitRot(h: SimHost): void {
    if (h.role.kind !== 'secondary') return;
    const replay = h.role.replayer.status();
    if (replay.state !== 'paused' && replay.state !== 'idle') return;
    const at = replay.appliedPosition;
    const last = h.role.copies.last;
    const inLater = last !== undefined && last.logNumber > at.logNumber;
    const name = inLater ? last.name : formatLogName(at.logNumber, at.logHost);
    const fromBytes = inLater ? 0 : at.offsetBytes;
    const image = h.logDisk.mem.image(name);
    if (image === undefined || image.length <= fromBytes) return;
    const bit = fromBytes * 8 + this.random.int((image.length - fromBytes) * 8);
    h.logDisk.mem.flipBit(name, bit);
    this.stats.bitRots++;
    this.note(`bit rot in ${h.name}'s ${name} at byte ${bit >> 3}`);
  }

  // ---- log space: emergency mode ----

  /** Direct writes of emergency mode: `count` of them after log record #afterSeq (in the history, in no log). */
  private directWindows: { afterSeq: number; count: number; hole: number }[] = [];

  /**
   * The history index of log record #seq; `withDirectAfter`: with the direct writes right
   * after it (what the primary's device holds), or, given the log a secondary's replay is
   * in, with those of a hole it is past (it came through the hole by a sync).
   */
  private historyIndex(seq: number, withDirectAfter: boolean | { pastLog: number } = false): number {
    let index = seq;
    for (const w of this.directWindows) {
      const after = typeof withDirectAfter === 'boolean' ? withDirectAfter : withDirectAfter.pastLog > w.hole;
      if (w.afterSeq < seq || (after && w.afterSeq === seq)) index += w.count;
    }
    return index;
  }

  /** The history index a secondary's device is at, from its replay. */
  private appliedIndex(h: SimHost): number {
    if (h.role.kind !== 'secondary') return -1;
    const p = h.role.replayer.status().appliedPosition;
    return this.historyIndex(Number(p.nextSeq) - 1, { pastLog: p.logNumber });
  }

  /** The lineage now ends at log record #seq (and the direct writes after it, if `withDirectAfter`). */
  private truncateHistory(seq: number, withDirectAfter: boolean): void {
    this.history.truncate(this.historyIndex(seq, withDirectAfter));
    this.directWindows = this.directWindows.filter((w) => w.afterSeq < seq || (withDirectAfter && w.afterSeq === seq));
  }

  /**
   * The primary's log filesystem is full: emergency mode, and every log it wrote goes
   * (as the daemon's space monitor does). The members then stop before the hole.
   */
  private async enterEmergency(p: SimHost): Promise<void> {
    const deleted = await this.perform(`emergency mode on ${p.name}`, p.enterEmergency('the log filesystem is full'));
    this.stats.emergencies++;
    this.stats.logsDeleted += deleted.length;
    this.note(`emergency mode on ${p.name}: direct writes; logs deleted: ${deleted.join(' ') || 'none'}`);
  }

  private async leaveEmergency(p: SimHost): Promise<void> {
    const left = await this.perform(`leave emergency mode on ${p.name}`, p.leaveEmergency());
    if (left) this.note(`space back on ${p.name}: logging again after the hole at log ${p.hole()}`);
  }

  /**
   * The log filesystem of a secondary is low (or fine again): fetch stops without the
   * operator's switch, and the copies it has replayed go, whoever else needs them (the
   * daemon's space monitor does that at its emergency stage; the primary never waits).
   */
  private async toggleSpacePause(h: SimHost): Promise<void> {
    const paused = !h.spacePaused;
    await this.perform(`${paused ? 'space pause' : 'space back'} on ${h.name}`, h.setSpacePaused(paused));
    let deleted: string[] = [];
    if (paused) deleted = await this.perform(`log-delete for space on ${h.name}`, h.deleteLogs(Number.MAX_SAFE_INTEGER, () => undefined));
    this.stats.spacePauses += paused ? 1 : 0;
    this.stats.logsDeleted += deleted.length;
    this.note(`${h.name}: log space ${paused ? `low, fetch paused${deleted.length > 0 ? `, deleted ${deleted.join(' ')}` : ''}` : 'back, fetch resumes'}`);
  }

  /**
   * Another program fills a secondary's log filesystem: every write that needs space fails
   * with ENOSPC (fetch pauses; replay cannot save its position, dirty mark or version chain
   * and must wait, never fail) until the operator frees it (`unfill`).
   */
  private fill(h: SimHost): void {
    h.logDisk.fill();
    this.stats.fills++;
    this.note(`${h.name}: its log filesystem is full (another program)`);
  }

  private unfill(h: SimHost): void {
    h.logDisk.unfill();
    this.note(`${h.name}: its log filesystem has room again`);
  }

  // ---- membership: invalidate, leave, join ----

  /** invalidate on a secondary: its history is forgotten, a full sync from the primary follows (also how a split brain is resolved). */
  private async invalidate(h: SimHost): Promise<void> {
    await this.perform(`invalidate on ${h.name}`, h.invalidate());
    this.mayDiverge.delete(h.name);
    this.stats.invalidates++;
    this.note(`invalidate ${h.name}: full sync from ${this.primary}`);
  }

  /** The operator's answer to a member that says its sync's end went off the primary's history. */
  private async invalidateOffHistory(h: SimHost): Promise<void> {
    this.note(`${h.name} says: ${h.offHistory() ?? ''}; the operator invalidates it`);
    this.stats.offHistory++;
    await this.invalidate(h);
  }

  /** leave-resource: no longer a member; its indicator goes, so it holds no log back. */
  private async leave(h: SimHost): Promise<void> {
    await this.perform(`leave-resource on ${h.name}`, h.leave());
    this.mayDiverge.delete(h.name);
    this.reportedNeeds.delete(h.name);
    this.stats.leaves++;
    this.note(`leave-resource ${h.name}`);
  }

  private async join(h: SimHost): Promise<void> {
    await this.perform(`join-resource on ${h.name}`, h.join());
    this.stats.joins++;
    this.note(`join-resource ${h.name}: full sync from ${this.primary}`);
  }

  // ---- log deletion ----

  /**
   * log-delete on `h`, as the daemon runs it: the hold is the lowest log another member
   * reported it needs (a down member's last report stands), by the same pure decision.
   */
  private async logDelete(h: SimHost): Promise<void> {
    const others = this.hosts.filter((x) => x !== h && !x.left).map((x) => ({ host: x.name, needsLog: this.reportedNeeds.get(x.name) }));
    // As the daemon: a member's own report replaces the start of a sync served to it; one that left holds nothing.
    for (const o of this.hosts) if (o.left || (o !== h && this.reportedNeeds.has(o.name))) h.syncHolds.delete(o.name);
    const hole = this.host(this.primary).hole();
    const hold = logDeleteHold(others, hole, 'replayed', h.role.kind === 'primary' ? h.syncHolds : []);
    const floor = hold === undefined ? Number.MAX_SAFE_INTEGER : hold.logNumber + (this.options.mutations.deleteNeededLog ? 1 : 0);
    const deleted = await this.perform(`log-delete on ${h.name}`, h.deleteLogs(floor, (files) => this.checkDeletion(h, files)));
    this.stats.logsDeleted += deleted.length;
    if (deleted.length > 0) this.note(`log-delete on ${h.name}: ${deleted.join(' ')}${hold === undefined ? '' : ` (held by ${hold.host} at log ${hold.logNumber})`}`);
  }

  /**
   * A log goes only if no other member still needs it: each member's need is what its
   * disk says (the replay position a restart starts from), whatever it reported; a member
   * that holds a complete durable copy of the log itself does not need it from here.
   */
  private checkDeletion(deleter: SimHost, files: readonly LogFileName[]): void {
    for (const f of files) {
      const size = deleter.logDisk.mem.view(f.name)?.length ?? 0;
      for (const m of this.hosts) {
        if (m === deleter || m.name === this.primary || m.left) continue;
        const need = m.positionOnDisk() ?? m.syncStartOnDisk();
        if (need === undefined || need.logNumber > f.logNumber) continue;
        // Stopped before an emergency's hole: it needs invalidate anyway (the hold skips it on purpose).
        if (need.logNumber < this.host(this.primary).hole()) continue;
        if ((m.logDisk.mem.durableView(f.name)?.length ?? -1) >= size) continue;
        throw new SimFailure(`log-delete on ${deleter.name} removes ${f.name}, but ${m.name} still needs it (its replay stands in log ${need.logNumber} and it holds no complete copy)`);
      }
    }
  }

  /** What each member last told the others it needs (the indicator's needsLog; kept while it is down). */
  private readonly reportedNeeds = new Map<string, number>();
  private noteReports(): void {
    for (const h of this.hosts) {
      const need = h.ownNeed();
      if (need !== undefined) this.reportedNeeds.set(h.name, need);
    }
  }

  // ---- roles ----

  /**
   * primary R (planned): the old primary stops serving (its log durable, written back),
   * the new one replays up to the old one's end and starts the next log; the old one and
   * every other member then fetch from the new one.
   */
  private async handover(target: SimHost): Promise<void> {
    const old = this.host(this.primary);
    if (this.net.blocked(old.name, target.name)) return;
    // Refused in a split brain, as marsadm primary refuses it without --force.
    if (this.splitBrainHosts().has(target.name)) return;
    // Refused in emergency mode, and for a member that stopped before the hole (emergencyBlocksHandover in the daemon).
    if (target.spacePaused || target.logDisk.full || old.inEmergency() || (target.role.kind === 'secondary' && target.role.replayer.status().persistedPosition.logNumber < old.hole())) return;
    if (target.fetchPaused) await this.perform(`resume-fetch on ${target.name}`, target.resumeFetch());
    if (target.replayPaused) target.resumeReplay();
    const end = await this.perform(`${old.name} stops serving`, old.retire());
    this.note(`handover ${old.name} -> ${target.name}: ${old.name} stopped at #${Number(end.nextSeq) - 1} (${end.logNumber}:${end.offsetBytes})`);
    if (!this.options.mutations.earlyHandover) {
      const replayed = (): boolean => {
        if (target.role.kind !== 'secondary') return false;
        // It must hold a copy of the old primary's last log itself (even an empty one), or the
        // members replaying at its start would wait for a log that nobody serves; and a
        // position in a later log of another history is no replay of this one.
        if ((target.logDisk.mem.view(formatLogName(end.logNumber, end.logHost))?.length ?? -1) < end.offsetBytes) return false;
        const p: ReplayPosition = target.role.replayer.status().persistedPosition;
        return p.logNumber > end.logNumber || (p.logHost === end.logHost && comparePositions(p, end) >= 0);
      };
      if (target.role.kind === 'secondary') target.role.replayer.checkpointSoon();
      const done = await this.scheduler.runUntil(replayed, this.scheduler.nowMs() + handoverMsMax);
      if (!done) {
        this.stats.handoversAbandoned++;
        this.note(`handover abandoned: ${target.name} did not replay to ${end.logNumber}:${end.offsetBytes}; ${old.name} serves again`);
        await this.perform(`${old.name} serves again`, old.openLogger(nextLogStart(end, old.name)));
        return;
      }
    }
    await this.perform(`${target.name} stops fetch and replay`, target.stopSecondary());
    await this.perform(`${target.name} starts as primary`, target.openLogger(nextLogStart(end, target.name)));
    this.primary = target.name;
    this.fetchSource.clear();
    await this.perform(`${old.name} becomes secondary`, old.becomeSecondary());
    for (const h of this.hosts) if (h !== old && h !== target && (h.role.kind === 'secondary' || h.role.kind === 'syncing')) await this.perform(`${h.name} fetches from ${target.name}`, h.restartFetch());
    this.stats.handovers++;
    this.note(`handover done: ${target.name} primary from #${Number(end.nextSeq)}`);
  }

  /**
   * primary R --force on a secondary while the primary is down: it replays what it holds,
   * then becomes primary with that; what it lacks is lost (and counted). Every other member
   * may hold more of the old history: it must converge or detect the split brain.
   */
  private async forceFailover(target: SimHost): Promise<void> {
    if (target.role.kind !== 'secondary' || target.logDisk.full) return; // the operator frees space first
    const role = target.role;
    const old = this.primary;
    // A member that holds no copy of the log its replay stands in has no history to go on
    // (the daemon's join syncs first); it is not a candidate.
    if ((role.copies.last?.logNumber ?? 0) < role.replayer.status().appliedPosition.logNumber) return;
    // After a crash a secondary's device may hold records beyond its persisted position
    // until replay is back at its dirty mark: the daemon refuses --force then, so does this.
    if (target.replayingToConsistency()) return;
    // --force on the other side of a split brain picks that side's history; the reference
    // history here follows one lineage only, so such a member is not forced.
    if (this.mayDiverge.has(target.name)) return;
    // A member that stopped before the old primary's hole may be forced: its disk is an
    // older state of the history, and its next log takes a number below the old primary's
    // newest. Members that hold logs beyond it learn from fetch that the history diverged
    // (src/fetch/fetch-plan.ts): a split brain, resolved by invalidate.
    if (target.replayPaused) target.resumeReplay();
    if (role.fetch !== undefined) await this.perform(`${target.name} stops fetch`, role.fetch.stop());
    role.fetch = undefined;
    const settled = (): boolean => role.replayer.status().state !== 'replaying';
    if (!(await this.scheduler.runUntil(settled, this.scheduler.nowMs() + handoverMsMax))) throw new SimFailure(`${target.name} did not finish replaying its local copies`);
    await this.perform(`${target.name} stops replay`, target.stopSecondary());
    const end = role.replayer.status().appliedPosition;
    const kept = this.historyIndex(Number(end.nextSeq) - 1);
    // Its history ends where it replayed: what it fetched beyond (say, a damaged rest) goes.
    await this.perform(`${target.name} cuts its copies at the replayed end`, role.copies.cutAt(formatLogName(end.logNumber, end.logHost), end.offsetBytes).then(() => role.copies.close()));
    await this.perform(`${target.name} starts as primary (--force)`, target.openLogger(nextLogStart(end, target.name)));
    this.note(`primary --force ${target.name} (${old} down): keeps #${kept} of #${this.history.lastSeq}, loses ${this.history.lastSeq - kept} records`);
    this.truncateHistory(Number(end.nextSeq) - 1, false);
    this.durableAtCrash = Math.min(this.durableAtCrash, kept);
    this.primary = target.name;
    this.fetchSource.clear();
    // A member is back on the lineage once its replay entered the new primary's first log.
    for (const h of this.hosts) if (h !== target) this.mayDiverge.set(h.name, { logNumber: end.logNumber + 1, logHost: target.name });
    this.mayDiverge.delete(target.name);
    // A sync in progress starts again from offset 0 when its source is the new primary (the
    // sync target's rule). A sync that is done but not yet replayed to its end goes on: the
    // member becomes consistent if its replay reaches the end on the new history, or says it
    // needs invalidate (src/strategy/replica-phase.ts, off-history); the operator then does.
    for (const h of this.hosts) if (h !== target && (h.role.kind === 'secondary' || h.role.kind === 'syncing')) await this.perform(`${h.name} fetches from ${target.name}`, h.restartFetch());
    this.stats.forced++;
  }

  /** Why a member says its history diverged from the primary's (split brain), or undefined. */
  private divergence(h: SimHost): string | undefined {
    if (h.role.kind !== 'secondary') return undefined;
    const f = h.role.fetch?.status();
    if (f?.state === 'failed' && f.error?.code === 'FETCH_DIVERGED') return f.error.message;
    const r = h.role.replayer.status();
    if (r.state === 'failed') return `${r.error?.code ?? ''}: ${r.error?.message ?? ''}`;
    return undefined;
  }

  /**
   * The members in a split brain with the primary, as the pure detector the daemon uses
   * decides it from the two members' log histories and fetch reports. Asked pair by pair:
   * over all members at once it names only the earliest split (docs/simulator.md).
   */
  private splitBrainHosts(): Set<string> {
    const member = (h: SimHost): MemberHistory => {
      const logs = h.logDisk.mem
        .listNow()
        .map((name) => parseLogName(name))
        .filter((p) => p !== undefined)
        .map((p) => [p.logNumber, p.host, h.logDisk.mem.view(formatLogName(p.logNumber, p.host))?.length ?? 0] as const);
      const diverged = this.divergence(h);
      return { host: h.name, logs, ...(diverged === undefined ? {} : { diverged }) };
    };
    const primary = member(this.host(this.primary));
    const hosts = new Set<string>();
    for (const h of this.hosts) if (h.name !== this.primary && detectSplitBrain([member(h), primary]) !== undefined) hosts.add(h.name);
    return hosts;
  }

  /**
   * A secondary whose fetch failed (not diverged) because the primary cannot serve what its
   * replay needs: the primary has no copy of its replay's log though it holds later ones
   * (it joined by a sync after it), or its copy holds no record there (the hole before a
   * sync's start). Only invalidate gets it going again.
   */
  private primaryLacksNeed(h: SimHost): boolean {
    if (h.role.kind !== 'secondary') return false;
    const f = h.role.fetch?.status();
    if (f?.state !== 'failed' || f.error?.code === 'FETCH_DIVERGED') return false;
    // Its copies (or its replay's start) lie beyond the primary's own open log: another history (fetch-plan.ts).
    if (f.error?.message.includes('another history') === true) return true;
    const need = h.positionOnDisk();
    const p = this.host(this.primary);
    if (need === undefined || p.role.kind !== 'primary') return false;
    const copy = p.logDisk.mem.view(formatLogName(need.logNumber, need.logHost));
    if (copy === undefined) return p.logFilesNow().some((x) => x.logNumber > need.logNumber);
    const at = need.offsetBytes;
    return at + 8 <= copy.length && copy.subarray(at, at + 8).every((b) => b === 0);
  }

  private converged(h: SimHost): boolean {
    return this.history.isLatest(h.deviceImage());
  }

  // ---- checkers ----

  /** The prefix a secondary's device matches (cached while neither its device nor the history changed). */
  private readonly prefixCache = new Map<string, { key: string; k: number }>();
  private prefixOfDevice(h: SimHost): number {
    const key = `${h.deviceDisk.ops}/${h.deviceDisk.crashes}/${this.history.lastSeq}/${this.history.truncations}`;
    const cached = this.prefixCache.get(h.name);
    if (cached?.key === key) return cached.k;
    const k = this.history.prefixOf(h.deviceImage());
    this.prefixCache.set(h.name, { key, k });
    return k;
  }

  private check(): void {
    this.noteReports();
    for (const [name, first] of this.mayDiverge) {
      const h = this.host(name);
      if (h.role.kind !== 'secondary') continue;
      const at = h.role.replayer.status().appliedPosition;
      const holdsFirst = h.logDisk.mem.view(formatLogName(first.logNumber, first.logHost)) !== undefined;
      if (holdsFirst && (at.logNumber > first.logNumber || (at.logNumber === first.logNumber && at.logHost === first.logHost))) this.mayDiverge.delete(name);
    }
    const serving = this.hosts.filter((h) => h.role.kind === 'primary');
    if (serving.length > 1) throw new SimFailure(`two primaries serving at once: ${serving.map((h) => h.name).join(', ')}`);
    const logger = this.primaryLogger();
    const durable = logger === undefined ? this.durableAtCrash : this.historyIndex(Number(logger.durableLogEnd().nextSeq) - 1, true);
    for (const h of this.hosts) {
      if (h.role.kind !== 'secondary' || h.replayingToConsistency() || this.mayDiverge.has(h.name)) continue;
      const k = this.prefixOfDevice(h);
      if (k < 0) throw new SimFailure(`the device of ${h.name} (replayed through #${h.appliedSeq()}) is not the disk after any prefix of ${this.primary}'s history (#${this.history.lastSeq} records)`);
      if (k > durable) throw new SimFailure(`the device of ${h.name} holds record #${k}, but ${this.primary}'s log is durable only through #${durable}`);
    }
    const limits = logger?.status();
    if (limits !== undefined && limits.shadowBytes > shadowBytesMax) throw new SimFailure(`the shadow index of ${this.primary} holds ${limits.shadowBytes} bytes, over its limit of ${shadowBytesMax}`);
    if (this.scheduler.pendingCount > simTimersPendingMax) throw new SimFailure(`${this.scheduler.pendingCount} timers pending, over ${simTimersPendingMax}`);
    if (this.net.maxQueuedBytes > sendBufferBytesMax + fetchChunkBytesMax + 4096) throw new SimFailure(`a link queued ${this.net.maxQueuedBytes} bytes, over its send buffer`);
  }

  /** Heal everything, restart every host, resume every switch; then every member must converge on the history. */
  private async converge(): Promise<void> {
    this.net.faults = { ...this.netFaults, resetChance: 0, corruptChance: 0 };
    this.net.healAll();
    const primary = this.host(this.primary);
    if (!primary.up) await this.restart(primary);
    for (const h of this.hosts) if (!h.up) await this.restart(h);
    if (primary.inEmergency() && !(await this.perform(`leave emergency mode on ${primary.name}`, primary.leaveEmergency()))) throw new SimFailure(`${primary.name} cannot leave emergency mode after the heal`);
    for (const h of this.hosts) if (h.spacePaused) await this.perform(`space back on ${h.name}`, h.setSpacePaused(false));
    for (const h of this.hosts) if (h.logDisk.full) this.unfill(h);
    for (const h of this.hosts) if (h.role.kind === 'left') await this.join(h);
    for (const h of this.hosts) {
      if (h.fetchPaused) await this.perform(`resume-fetch on ${h.name}`, h.resumeFetch());
      if (h.replayPaused) h.resumeReplay();
      if (h.syncPaused) h.resumeSync();
    }
    this.note('healed; every host up, every switch on');
    const logger = this.primaryLogger();
    if (logger === undefined) throw new SimFailure(`${this.primary} is not serving after the heal`);
    await this.perform(`flush on ${this.primary}`, logger.flush());
    const last = this.history.lastSeq;
    const settledHost = (h: SimHost): boolean => {
      if (h.name === this.primary) return true;
      if (!this.mayDiverge.has(h.name)) return this.appliedIndex(h) >= last;
      return this.divergence(h) !== undefined || (h.role.kind === 'secondary' && h.role.fetch?.status().state === 'caught-up' && this.converged(h));
    };
    const caughtUp = (): boolean => this.hosts.every(settledHost);
    // The operator's part: a member whose fetch failed because the primary never held (or
    // no longer holds) what its replay needs is invalidated, as docs/operations.md says.
    const deadlineMs = this.scheduler.nowMs() + convergeMsMax;
    for (let round = 0; round <= this.hosts.length; round++) {
      const stuck = (): SimHost[] => this.hosts.filter((h) => this.primaryLacksNeed(h) || h.offHistory() !== undefined);
      await this.scheduler.runUntil(() => caughtUp() || stuck().length > 0, deadlineMs);
      const hosts = stuck();
      if (hosts.length === 0) break;
      for (const h of hosts) {
        if (h.offHistory() !== undefined) {
          await this.invalidateOffHistory(h);
          continue;
        }
        if (h.role.kind === 'secondary' && h.role.fetch?.status().error?.message.includes('another history') === true) this.stats.offHistory++;
        this.note(`${h.name}: fetch failed, ${this.primary} lacks what its replay needs (${describeLag(h, last)}); the operator invalidates it`);
        await this.invalidate(h);
      }
    }
    if (!(await this.scheduler.runUntil(caughtUp, deadlineMs)) && !this.hosts.every((h) => settledHost(h) || (this.mayDiverge.has(h.name) && this.splitBrainHosts().has(h.name)))) {
      const behind = this.hosts.filter((h) => !settledHost(h)).map((h) => describeLag(h, last));
      throw new SimFailure(`no convergence within ${convergeMsMax} ms after the heal: ${behind.join('; ')}`);
    }
    await this.perform(`drain on ${this.primary}`, logger.drain());
    this.check();
    const split = this.splitBrainHosts();
    for (const h of this.hosts) {
      if (this.mayDiverge.has(h.name) && !this.converged(h)) {
        if (!split.has(h.name)) throw new SimFailure(`${h.name} holds another history than ${this.primary} after the forced failover, and no split brain is detected`);
        this.stats.splitBrains++;
        this.note(`split brain detected on ${h.name}, not merged${this.divergence(h) === undefined ? '' : `: ${this.divergence(h)!}`}`);
        continue;
      }
      const got = h.deviceImage();
      if (!got.equals(this.history.image)) throw new SimFailure(`after quiescence the device of ${h.name} differs from the history (#${last}) at byte ${firstDifference(got, this.history.image)}`);
    }
    this.note(`converged: ${this.hosts.length} devices equal after #${last}`);
  }
}

/** A step that acts at once, as one of the steps that return a promise. */
function sync(action: () => void): () => Promise<void> {
  return () => {
    action();
    return Promise.resolve();
  };
}

function nextLogStart(end: ReplayPosition, host: string): ReplayPosition {
  return { logNumber: end.logNumber + 1, logHost: host, offsetBytes: 0, nextSeq: end.nextSeq };
}

function describeLag(h: SimHost, last: number): string {
  if (h.role.kind === 'syncing') {
    const p = h.role.target.progress();
    return `${h.name} syncing (${p.state}, ${p.doneBytes} of ${p.sizeBytes} bytes${p.lastError === undefined ? '' : `, ${p.lastError.message}`}; fetch ${h.role.fetch?.status().state ?? 'off'})`;
  }
  if (h.role.kind !== 'secondary') return `${h.name} is ${h.role.kind}`;
  const f = h.role.fetch?.status();
  const r = h.role.replayer.status();
  return `${h.name} replayed #${h.appliedSeq()} of #${last} (fetch ${f?.state ?? 'off'}${f?.error === undefined ? '' : ` ${f.error.code}: ${f.error.message}`}, replay ${r.state}${r.error === undefined ? '' : ` ${r.error.code}: ${r.error.message}`})`;
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** One line for a result: the seed, ok or where and why it failed. */
export function describeResult(r: SimResult): string {
  const s = r.stats;
  const what = `${s.writes} writes, ${s.flushes} flushes, ${s.crashes} crashes, ${s.handovers} handovers, ${s.forced} forced (${s.splitBrains} split brains, ${s.offHistory} off the history), ${s.partitions} partitions, ${s.resets} resets, ${s.corruptions} corrupt chunks, ${s.bitRots} bit rots, ${s.logsDeleted} logs deleted, ${s.invalidates} invalidates, ${s.leaves} leaves, ${s.joins} joins, ${s.syncs} syncs done (${s.syncPauses} pause-sync, ${s.syncResumes} resume-sync), ${s.emergencies} emergencies (${s.directWrites} direct writes, ${s.emergencyRestarts} restarts in it), ${s.spacePauses} space pauses, ${s.fills} full log filesystems; ${(r.virtualMs / 1000).toFixed(1)} s virtual`;
  return r.ok ? `seed ${r.seed}: ok (${what})` : `seed ${r.seed}: FAIL at step ${r.step}: ${r.failure ?? ''}`;
}

export async function runSimulation(options: SimOptions): Promise<SimResult> {
  return new ClusterSim(options).run();
}
