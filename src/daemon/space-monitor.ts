/**
 * The shell of log space management: looks at the log filesystem (the state directory's)
 * every `checkIntervalMs`, asks the pure stage decision (src/space) what stage it is in,
 * and acts on every resource of this host:
 *
 *   warn       says so in the daemon log, naming who holds how much log back (view too)
 *   reclaim    a secondary deletes the copies it has replayed; the primary rotates a large
 *              current log and deletes what every live member has fetched
 *   emergency  the primary stops logging (Logger.enterEmergency) and deletes every log it
 *              has written back; a secondary pauses fetch
 *
 * Leaving emergency mode (Logger.leaveEmergency) needs free space back above the
 * emergency threshold plus the hysteresis; a logger that entered it by itself (ENOSPC)
 * counts as the emergency stage for that. One tick runs at a time; a tick that fails is
 * logged and the next one tries again: the daemon never stops for lack of space.
 */
import { statfs } from 'node:fs/promises';
import type { Clock } from '../core/clock.js';
import { fileSize } from '../storage/storage.js';
import { listLogFiles } from '../log/index.js';
import { nextSpaceStage, stageRank, stageThresholds, type SpaceLimits, type SpaceStage, type StageThresholds } from '../space/index.js';
import type { Resource } from './resource.js';

export interface SpaceReport {
  readonly sizeBytes: number;
  readonly freeBytes: number;
  readonly stage: SpaceStage;
  readonly thresholds: StageThresholds;
}

export interface SpaceMonitorOptions {
  readonly dir: string;
  readonly limits: SpaceLimits;
  readonly clock: Clock;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  readonly resources: () => Iterable<Resource>;
  /** The lowest log a live member still needs (fetched or replayed) of R; MAX when none. */
  readonly reclaimFloor: (r: Resource) => number;
  /** Who holds how much log back, in words (for the daemon log). */
  readonly describeHolds: (r: Resource) => string | undefined;
  /** Called before each look (the daemon notes which members are unreachable). */
  readonly beforeCheck?: () => void;
}

/** The size and the free bytes (available to marsd) of the filesystem that holds `dir`. */
export async function lookAtFilesystem(dir: string): Promise<{ sizeBytes: number; freeBytes: number }> {
  const s = await statfs(dir);
  return { sizeBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
}

export class SpaceMonitor {
  private stage: SpaceStage = 'ok';
  private last: SpaceReport | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: SpaceMonitorOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.o.limits.checkIntervalMs);
    this.timer.unref();
    void this.check();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.running;
  }

  /** A method, so that the compiler does not narrow the flag across awaits. */
  private isStopped(): boolean {
    return this.stopped;
  }

  /** The last look at the log filesystem. */
  report(): SpaceReport | undefined {
    return this.last;
  }

  /** Looks now (also used by tests and after a log-delete); resolves when the look and its actions are done. */
  check(): Promise<void> {
    this.running ??= this.checkOnce()
      .catch((err: unknown) => this.o.log('error', `log space check failed: ${(err as Error).message}`))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async measure(): Promise<SpaceReport> {
    const { sizeBytes, freeBytes } = await lookAtFilesystem(this.o.dir);
    const resources = [...this.o.resources()];
    const inEmergency = resources.some((r) => r.emergency?.active === true);
    const previous = inEmergency ? 'emergency' : this.stage;
    const stage = nextSpaceStage(previous, { sizeBytes, freeBytes }, this.o.limits);
    return { sizeBytes, freeBytes, stage, thresholds: stageThresholds(sizeBytes, this.o.limits) };
  }

  private async checkOnce(): Promise<void> {
    if (this.stopped) return;
    this.o.beforeCheck?.();
    const report = await this.measure();
    this.last = report;
    if (report.stage !== this.stage) {
      for (const r of this.o.resources()) await r.status().catch(() => undefined); // fresh file sizes for the message
      this.stageChanged(this.stage, report);
    }
    this.stage = report.stage;
    for (const r of this.o.resources()) {
      if (this.isStopped()) return;
      await this.act(r, report).catch((err: unknown) => this.o.log('warn', `log space management of ${r.name}: ${(err as Error).message}`, { resource: r.name }));
    }
  }

  private stageChanged(before: SpaceStage, report: SpaceReport): void {
    const worse = stageRank(report.stage) > stageRank(before);
    const holds = [...this.o.resources()].map((r) => this.o.describeHolds(r)).filter((h) => h !== undefined);
    const msg = `log space: stage ${report.stage} (was ${before}): ${report.freeBytes} of ${report.sizeBytes} bytes free${holds.length > 0 ? `; ${holds.join('; ')}` : ''}`;
    this.o.log(worse && report.stage !== 'ok' ? 'warn' : 'info', msg, { stage: report.stage, freeBytes: report.freeBytes, sizeBytes: report.sizeBytes });
  }

  private async act(r: Resource, report: SpaceReport): Promise<void> {
    const logger = r.backend();
    if (logger !== undefined) {
      if (report.stage === 'emergency') {
        await logger.enterEmergency(`the log filesystem has ${report.freeBytes} of ${report.sizeBytes} bytes free`);
        await r.logDelete();
        return;
      }
      if (logger.loggerMode === 'emergency') await logger.leaveEmergency();
      if (report.stage === 'reclaim') {
        if (logger.loggerMode === 'logging') await this.rotateIfLarge(r, report);
        await r.logDelete(this.o.reclaimFloor(r));
      }
      return;
    }
    const replica = r.replica;
    if (replica === undefined) return;
    await replica.setSpacePaused(report.stage === 'emergency');
    if (stageRank(report.stage) >= stageRank('reclaim')) await r.logDelete();
  }

  /** A current log holding a large share of the filesystem is rotated, so that it can go once fetched. */
  private async rotateIfLarge(r: Resource, report: SpaceReport): Promise<void> {
    const current = (await listLogFiles(r.storage)).at(-1);
    if (current === undefined) return;
    const bytes = await fileSize(r.storage, current.name).catch(() => 0);
    if (bytes * 100 >= report.sizeBytes * this.o.limits.reclaimRotateSharePercent) await r.logRotate();
  }
}
