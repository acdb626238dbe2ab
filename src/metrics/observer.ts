/**
 * The sampler: asks the daemon for its state (the same data `view all` and `view-hosts`
 * show), reads the stamps of the oldest unapplied records from the logs, measures the
 * primary's write rate, and turns it all into an Observation. It samples once every
 * `sampleIntervalMs` for the history and the status page's event stream; a scrape takes
 * a fresh one. Concurrent requests share one observation in progress.
 */
import type { Clock } from '../core/clock.js';
import type { HostStatus } from '../daemon/daemon.js';
import type { HostLine } from '../daemon/cluster-ops.js';
import { RateMeter } from '../daemon/rate-meter.js';
import { paths } from '../daemon/state-dir.js';
import { LagTracker } from '../daemon/replication-lag.js';
import { FsStorage } from '../storage/fs-storage.js';
import { History } from './history.js';
import { sampleIntervalMs } from './limits.js';
import { observationOf, type Measured, type Observation } from './observation.js';

export interface ObserveSource {
  observe(): Promise<{ status: HostStatus; hosts: HostLine[]; durable: Map<string, { logNumber: number; endOffsetBytes: number }> }>;
}

export interface ObserverOptions {
  dir: string;
  clock: Clock;
  source: () => ObserveSource | undefined;
}

export class Observer {
  readonly history = new History();
  private latestValue: Observation | undefined;
  private inProgress: Promise<Observation> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly listeners = new Set<(o: Observation) => void>();
  private readonly writeMeters = new Map<string, { meter: RateMeter; appendedBytes: number }>();
  private readonly lag = new LagTracker();

  constructor(private readonly o: ObserverOptions) {}

  get latest(): Observation | undefined {
    return this.latestValue;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      this.observe().then(
        (o) => {
          this.history.add(o);
          for (const listener of this.listeners) listener(o);
        },
        () => undefined,
      );
    }, sampleIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  /** Calls `listener` with each sample until the returned function is called. */
  subscribe(listener: (o: Observation) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A fresh observation (shared with any taken concurrently). Rejects while the daemon is not running. */
  observe(): Promise<Observation> {
    this.inProgress ??= this.take().finally(() => {
      this.inProgress = undefined;
    });
    return this.inProgress;
  }

  private async take(): Promise<Observation> {
    const source = this.o.source();
    if (source === undefined) throw new Error('marsd is starting');
    const { status, hosts, durable } = await source.observe();
    const nowMs = this.o.clock.nowMs();
    const measured = new Map<string, Measured>();
    for (const r of status.resources) {
      const m: Measured = {};
      const d = durable.get(r.name);
      if (d !== undefined) m.durable = d;
      if (r.logger !== undefined) m.writeRateBytesPerS = Math.round(this.writeRate(r.name, r.logger.appendedBytes));
      await this.measureLag(r, nowMs, m);
      measured.set(r.name, m);
    }
    const observation = observationOf({ status, hosts, nowMs, measured });
    this.latestValue = observation;
    return observation;
  }

  private writeRate(name: string, appendedBytes: number): number {
    const entry = this.writeMeters.get(name);
    if (entry === undefined || appendedBytes < entry.appendedBytes) {
      this.writeMeters.set(name, { meter: new RateMeter(this.o.clock), appendedBytes });
      return 0;
    }
    entry.meter.add(appendedBytes - entry.appendedBytes);
    entry.appendedBytes = appendedBytes;
    return entry.meter.rateBytesPerS();
  }

  /** A secondary: the stamp of the oldest record its disk does not hold yet; or, when it is not here to read, since when it has been behind. */
  private async measureLag(r: HostStatus['resources'][number], nowMs: number, m: Measured): Promise<void> {
    const replica = r.replica;
    const facts = { fetchRestBytes: replica === undefined ? 0 : replica.fetch.restBytes, replayRestBytes: replica?.replay.restBytes ?? 0, replayPosition: replica?.replay.position ?? null };
    Object.assign(m, await this.lag.measure(r.name, new FsStorage(paths.resourceDir(this.o.dir, r.name)), facts, nowMs));
  }
}
