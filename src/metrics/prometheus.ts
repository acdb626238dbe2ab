/**
 * The Prometheus side: every mars_* metric (docs/metrics.md), set from one Observation per
 * scrape. Gauges are reset before each update, so a resource or member that went away
 * leaves no stale series; NBD counters and histograms only grow.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { diskStates, lagStages, rateStages, replStates, roles, type Observation, type ResourceFigure } from './observation.js';
import { nbdOps, type NbdObserver, type NbdOp } from './nbd-meter.js';
import { spaceStages } from '../space/index.js';

const r = ['resource', 'host'] as const;
const rp = ['resource', 'host', 'peer'] as const;

/** Seconds: 50 µs to 10 s. */
export const nbdLatencyBucketsS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export class MarsMetrics implements NbdObserver {
  readonly registry = new Registry();
  private readonly g = {
    up: this.gauge('mars_up', 'Whether the last observation of this host succeeded (1) or failed (0)', ['host']),
    info: this.gauge('mars_host_info', 'This host, with its cluster id as a label (always 1)', ['host', 'cluster_id']),
    hostAlive: this.gauge('mars_host_alive', 'Whether this host has a metadata link to peer (1) or not (0); itself: 1', ['host', 'peer']),
    position: this.gauge('mars_log_position_offset_bytes', 'Byte offset within its log file of each stage: log_end, durable_end, written_back (primary), fetched, replayed (secondary)', [...r, 'stage']),
    positionLog: this.gauge('mars_log_position_log_number', 'Log file number of each stage (as mars_log_position_offset_bytes)', [...r, 'stage']),
    lagBytes: this.gauge('mars_resource_lag_bytes', 'Bytes of log not yet through a stage: writeback (primary), fetch and replay (secondary)', [...r, 'stage']),
    lagS: this.gauge('mars_resource_lag_seconds', 'A secondary: age of the oldest logged write its disk does not hold yet (0 when it holds everything it knows of; the primary: 0; absent while unknown), from the stamps in the log', r),
    rate: this.gauge('mars_resource_rate_bytes_per_second', 'Bytes per second over the last 10 s: write (primary log appends), fetch, replay, sync', [...r, 'stage']),
    syncRest: this.gauge('mars_sync_remaining_bytes', 'Bytes the running full sync still has to compare or copy', r),
    syncDone: this.gauge('mars_sync_done_bytes', 'Bytes the running full sync has done', r),
    syncSize: this.gauge('mars_sync_size_bytes', 'Bytes the running full sync covers', r),
    role: this.gauge('mars_resource_role', 'Role of each member as this host knows it, one-hot', [...rp, 'role']),
    disk: this.gauge('mars_resource_disk_state', 'Disk state of each member (from its indicator), one-hot', [...rp, 'state']),
    repl: this.gauge('mars_resource_repl_state', 'Replication state of each member (from its indicator), one-hot', [...rp, 'state']),
    reachable: this.gauge('mars_member_reachable', 'Whether this host has a metadata link to the member (1) or not (0)', rp),
    unreachableS: this.gauge('mars_member_unreachable_seconds', 'Seconds since this host last had a link to the member (0: reachable)', rp),
    heldBack: this.gauge('mars_member_held_back_bytes', 'Bytes of log this host keeps only because the member still needs them', rp),
    memberEmergency: this.gauge('mars_member_emergency', 'Whether the member reports emergency mode (1) or not (0)', rp),
    splitBrain: this.gauge('mars_resource_split_brain', 'Whether this host sees a split brain of the resource (1) or not (0)', r),
    emergency: this.gauge('mars_resource_emergency', 'Whether this host is in emergency mode for the resource (1) or not (0)', r),
    hole: this.gauge('mars_resource_log_hole_number', 'The last log number skipped by an emergency (0: none)', r),
    syncMode: this.gauge('mars_resource_sync_mode', 'Sync mode as this host applies it, one-hot: off, near-sync, fallen-back', [...r, 'mode']),
    nearSyncFallbacks: this.gauge('mars_resource_near_sync_fallbacks', 'How often near-sync fell back to asynchronous since marsd started (the serving primary)', r),
    serving: this.gauge('mars_resource_state', 'State of the resource on this host, one-hot: serving, recovering, failed, stopped', [...r, 'state']),
    logFiles: this.gauge('mars_log_files', 'Log files of the resource on this host', r),
    logBytes: this.gauge('mars_log_files_bytes', 'Bytes in the log files of the resource on this host', r),
    spaceFree: this.gauge('mars_log_space_free_bytes', 'Free bytes of the filesystem holding the logs', ['host']),
    spaceSize: this.gauge('mars_log_space_size_bytes', 'Size of the filesystem holding the logs', ['host']),
    spaceStage: this.gauge('mars_log_space_stage', 'Log space stage, one-hot: ok, warn, reclaim, emergency', ['host', 'stage']),
  };
  private readonly nbdRequests = new Counter({ name: 'mars_nbd_requests_total', help: 'NBD requests answered, per operation', labelNames: [...r, 'op'], registers: [this.registry] });
  private readonly nbdErrors = new Counter({ name: 'mars_nbd_request_errors_total', help: 'NBD requests answered with an error, per operation', labelNames: [...r, 'op'], registers: [this.registry] });
  private readonly nbdBytes = new Counter({ name: 'mars_nbd_bytes_total', help: 'Device bytes of NBD requests, per operation', labelNames: [...r, 'op'], registers: [this.registry] });
  private readonly nbdLatency = new Histogram({
    name: 'mars_nbd_request_duration_seconds',
    help: 'Time from handing an NBD request to the backend to its answer, per operation',
    labelNames: [...r, 'op'],
    buckets: nbdLatencyBucketsS,
    registers: [this.registry],
  });

  constructor(private readonly host: string) {}

  private gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  request(resource: string, op: NbdOp, bytes: number, seconds: number, failed: boolean): void {
    const labels = { resource, host: this.host, op };
    this.nbdRequests.inc(labels);
    if (bytes > 0) this.nbdBytes.inc(labels, bytes);
    if (failed) this.nbdErrors.inc(labels);
    this.nbdLatency.observe(labels, seconds);
  }

  /** Zero series for every operation of a resource, so rate() has a start point. */
  private touchNbd(resource: string): void {
    for (const op of nbdOps) {
      const labels = { resource, host: this.host, op };
      this.nbdRequests.inc(labels, 0);
      this.nbdErrors.inc(labels, 0);
      this.nbdBytes.inc(labels, 0);
    }
  }

  /** The observation failed: only mars_up says so. */
  failed(): void {
    for (const gauge of Object.values(this.g)) gauge.reset();
    this.g.up.set({ host: this.host }, 0);
  }

  update(o: Observation): void {
    for (const gauge of Object.values(this.g)) gauge.reset();
    const host = o.host;
    this.g.up.set({ host }, 1);
    this.g.info.set({ host, cluster_id: o.clusterId }, 1);
    for (const h of o.hosts) this.g.hostAlive.set({ host, peer: h.host }, h.alive ? 1 : 0);
    if (o.space !== null) {
      this.g.spaceFree.set({ host }, o.space.freeBytes);
      this.g.spaceSize.set({ host }, o.space.sizeBytes);
      for (const stage of spaceStages) this.g.spaceStage.set({ host, stage }, o.space.stage === stage ? 1 : 0);
    }
    for (const res of o.resources) this.updateResource(host, res);
  }

  private updateResource(host: string, res: ResourceFigure): void {
    const l = { resource: res.name, host };
    this.touchNbd(res.name);
    for (const p of res.positions) {
      this.g.position.set({ ...l, stage: p.stage }, p.offsetBytes);
      this.g.positionLog.set({ ...l, stage: p.stage }, p.logNumber);
    }
    for (const stage of lagStages) {
      const v = res.lagBytes[stage];
      if (v !== undefined) this.g.lagBytes.set({ ...l, stage }, v);
    }
    // Unknown (a secondary that has not heard from its primary): no sample rather than a 0.
    if (res.lagS !== null) this.g.lagS.set(l, res.lagS);
    for (const stage of rateStages) {
      const v = res.ratesBytesPerS[stage];
      if (v !== undefined) this.g.rate.set({ ...l, stage }, v);
    }
    if (res.sync !== null) {
      this.g.syncRest.set(l, res.sync.restBytes);
      this.g.syncDone.set(l, res.sync.doneBytes);
      this.g.syncSize.set(l, res.sync.sizeBytes);
    } else this.g.syncRest.set(l, 0);
    this.g.splitBrain.set(l, res.splitBrain ? 1 : 0);
    this.g.emergency.set(l, res.emergency ? 1 : 0);
    this.g.hole.set(l, res.holeLogNumber);
    for (const mode of ['off', 'near-sync', 'fallen-back']) this.g.syncMode.set({ ...l, mode }, res.syncMode === mode ? 1 : 0);
    this.g.nearSyncFallbacks.set(l, res.nearSyncFallbacks);
    for (const state of ['serving', 'recovering', 'failed', 'stopped']) this.g.serving.set({ ...l, state }, res.state === state ? 1 : 0);
    this.g.logFiles.set(l, res.logFiles);
    this.g.logBytes.set(l, res.logBytes);
    for (const m of res.members) {
      const lp = { ...l, peer: m.host };
      for (const role of roles) this.g.role.set({ ...lp, role }, m.role === role ? 1 : 0);
      for (const state of diskStates) this.g.disk.set({ ...lp, state }, m.diskState === state ? 1 : 0);
      for (const state of replStates) this.g.repl.set({ ...lp, state }, m.replState === state ? 1 : 0);
      this.g.reachable.set(lp, m.reachable ? 1 : 0);
      this.g.unreachableS.set(lp, m.unreachableS);
      this.g.heldBack.set(lp, m.heldBackBytes);
      this.g.memberEmergency.set(lp, m.emergency ? 1 : 0);
    }
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

