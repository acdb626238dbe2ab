/**
 * The resources of this host and the reconciler's shell. On every change of a resource's
 * metadata keys (and of this host's record), the resource's loop asks the pure planner
 * (src/strategy) for the next step, carries it out against the local Resource, and
 * repeats until only the indicator is left to report; it then writes
 * `resource/R/actual/HOST` if that changed. One loop per resource at a time; a change
 * that arrives meanwhile makes it run once more.
 */
import { join } from 'node:path';
import { MarsError } from '../core/errors.js';
import { rm } from 'node:fs/promises';
import { actualKey, dataKey, desiredKey, hostKey, parseKey } from '../meta/index.js';
import { desiredValue, encodeReplication, nextStep, onPrimaryChange, onRivalHistory, parseDesired, resourceSpec, rivalResyncsMax, type IndicatorReplication, type RivalHistoryDecision, type LocalState, type ResourceSpec, type Step, type Switches } from '../strategy/index.js';
import { comparePositions } from '../replay/position.js';
import { parseLogName } from '../log/index.js';
import { loadSyncState } from '../sync/index.js';
import type { JsonValue } from '../meta/index.js';
import type { Cluster } from './cluster.js';
import { resourceConfigFile } from './resource-config.js';
import { Resource, type ResourceContext } from './resource.js';
import { exists, paths } from './state-dir.js';
import { leaveIfEvicted } from './resource-commands.js';
import { LagTracker } from './replication-lag.js';
import { defaultDaemonIntervals } from './daemon-intervals.js';

/** Steps one reconcile pass may take before it stops and reports (a planner that never settles is a bug). */
export const reconcileStepsMax = 16;

export interface ResourceSetOptions {
  readonly dir: string;
  readonly cluster: Cluster;
  readonly ctx: Omit<ResourceContext, 'onFailed' | 'onChange'>;
  /** The resource stopped serving: its NBD export must disconnect its clients. */
  readonly closeExport: (name: string) => void;
  /** The addresses of the NBD clients of an export (reported by the primary, for handover). */
  readonly clients: (name: string) => string[];
  /** This host became primary of R, or stopped being it (hooks). */
  readonly onRoleChange: (name: string, role: 'primary' | 'secondary') => void;
  /** The indicator refresh interval (src/daemon/daemon-intervals.ts; default indicatorRefreshMs). */
  readonly indicatorRefreshMs?: number;
}

/** Log files a member names in its indicator (split brain shows as one number with two origins). */
export const recentLogsReported = 8;

/**
 * A running secondary's replication progress (states, rests) in its indicator is
 * refreshed at most this often, unless its switches or consistency change: the amounts
 * change with every write, and the metadata must not. Every running resource's indicator
 * is looked at this often (its device size too, for resize). MARS_INTERVALS changes it
 * (src/daemon/daemon-intervals.ts).
 */
export const indicatorRefreshMs = defaultDaemonIntervals.indicatorRefreshMs;

interface Loop {
  dirty: boolean;
  readonly done: Promise<void>;
}

export class ResourceSet {
  private readonly resources = new Map<string, Resource>();
  private readonly loops = new Map<string, Loop>();
  private readonly invalidating = new Set<string>();
  /** Resyncs in a row per resource after a rival history found mid-sync (src/strategy/rival-history.ts); cleared once consistent. */
  private readonly rivalResyncs = new Map<string, number>();
  /** Resources this host is joining right now (join-resource): an old removal of this host from them does not count. */
  private readonly joining = new Set<string>();
  private stopping = false;
  private readonly replication = new Map<string, { atMs: number; value: IndicatorReplication }>();
  /** How far the log reaches here (a primary's durable end, a secondary's copy end), as last reported: refreshed at most every refreshMs. */
  private readonly logReach = new Map<string, { atMs: number; value: Record<string, JsonValue> }>();
  private readonly lag = new LagTracker();
  private readonly refreshTimer: ReturnType<typeof setInterval>;

  /** How often indicators are refreshed (see indicatorRefreshMs). */
  readonly refreshMs: number;

  constructor(private readonly o: ResourceSetOptions) {
    this.refreshMs = o.indicatorRefreshMs ?? indicatorRefreshMs;
    o.cluster.onChange((keys) => this.onKeys(keys));
    this.refreshTimer = setInterval(() => {
      for (const r of this.resources.values()) if (r.stateKind === 'serving') void this.schedule(r.name);
    }, this.refreshMs);
    this.refreshTimer.unref();
  }

  /** The replication part of a running secondary's indicator, recomputed when due (see indicatorRefreshMs). */
  private async replicationReport(name: string, resource: Resource): Promise<IndicatorReplication | undefined> {
    const replica = resource.isPrimaryRole ? undefined : resource.replica;
    if (replica === undefined) {
      this.replication.delete(name);
      this.lag.forget(name);
      return undefined;
    }
    const cached = this.replication.get(name);
    const switches = resource.currentSwitches;
    const nowMs = this.o.ctx.clock.nowMs();
    const same = cached !== undefined && cached.value.consistent === replica.consistent && cached.value.switches.fetch === switches.fetch && cached.value.switches.replay === switches.replay && cached.value.switches.sync === switches.sync;
    if (same && nowMs - cached.atMs < this.refreshMs) return cached.value;
    const s = await replica.status();
    const value: IndicatorReplication = {
      consistent: s.consistent,
      switches: { fetch: s.switches.fetch, replay: s.switches.replay, sync: s.switches.sync },
      syncState: s.sync?.state ?? null,
      fetchState: s.fetch.state,
      replayState: s.replay.state,
      fetchRestBytes: s.fetch.restBytes,
      replayRestBytes: s.replay.restBytes,
      syncDoneBytes: s.sync?.doneBytes ?? null,
      syncSizeBytes: s.sync?.sizeBytes ?? null,
      lagS: await this.lag.seconds(name, resource.storage, { fetchRestBytes: s.fetch.restBytes, replayRestBytes: s.replay.restBytes, replayPosition: s.replay.position ?? null }, nowMs),
    };
    this.replication.set(name, { atMs: nowMs, value });
    return value;
  }

  /**
   * How far R's log reaches here, for a forced takeover's count of what is lost
   * (src/strategy/forced-loss.ts): on the primary its durable log end (`durableEnd`), on a
   * secondary the end of its last copy (`copyEnd`: [log number, origin, verified bytes]).
   * Both grow with every write: recomputed at most every refreshMs, so that the indicator
   * is rewritten no more often than that.
   */
  private logReachOf(name: string, resource: Resource): Record<string, JsonValue> {
    const nowMs = this.o.ctx.clock.nowMs();
    const cached = this.logReach.get(name);
    if (cached !== undefined && nowMs - cached.atMs < this.refreshMs) return cached.value;
    const value: Record<string, JsonValue> = {};
    const durable = resource.backend()?.durableLogEnd();
    if (durable !== undefined) value['durableEnd'] = { logNumber: durable.logNumber, offsetBytes: durable.endOffsetBytes };
    const copy = resource.replica?.copies.last;
    const origin = copy === undefined ? undefined : parseLogName(copy.name)?.host;
    if (copy !== undefined && origin !== undefined) value['copyEnd'] = [copy.logNumber, origin, copy.verifiedBytes];
    this.logReach.set(name, { atMs: nowMs, value });
    return value;
  }

  get(name: string): Resource | undefined {
    return this.resources.get(name);
  }

  values(): IterableIterator<Resource> {
    return this.resources.values();
  }

  private get host(): string {
    return this.o.cluster.host;
  }

  /** The spec of a resource as the metadata says it for this host. */
  spec(name: string): ResourceSpec {
    const member = this.o.cluster.ownRecord()?.resources.includes(name) === true;
    return resourceSpec((key) => this.o.cluster.get(key), this.host, name, member);
  }

  private onKeys(keys: readonly string[]): void {
    const names = new Set<string>();
    for (const key of keys) {
      if (key === hostKey(this.host)) for (const name of this.known()) names.add(name);
      const resource = parseKey(key)?.resource;
      if (resource !== undefined) names.add(resource);
    }
    for (const name of names) void this.schedule(name);
  }

  /** Resources of this host's record and resources loaded here. */
  known(): Set<string> {
    return new Set([...(this.o.cluster.ownRecord()?.resources ?? []), ...this.resources.keys()]);
  }

  /** Reconciles every known resource; resolves when all are settled. */
  async reconcileAll(): Promise<void> {
    await Promise.all([...this.known()].map((name) => this.schedule(name)));
  }

  /** Runs (or re-runs) the resource's loop; resolves once it has settled after this call. */
  schedule(name: string): Promise<void> {
    const loop = this.loops.get(name);
    if (loop !== undefined) {
      loop.dirty = true;
      return loop.done;
    }
    const fresh: { dirty: boolean; done: Promise<void> } = { dirty: true, done: Promise.resolve() };
    fresh.done = this.run(name, fresh);
    this.loops.set(name, fresh);
    return fresh.done;
  }

  private async run(name: string, loop: Loop): Promise<void> {
    await Promise.resolve(); // let schedule() register the loop first
    try {
      while (loop.dirty && !this.stopping) {
        loop.dirty = false;
        await this.reconcile(name).catch((err: unknown) => {
          this.o.ctx.log('error', `reconciling ${name} failed: ${(err as Error).message}`, { resource: name });
        });
      }
    } finally {
      this.loops.delete(name);
    }
  }

  private async reconcile(name: string): Promise<void> {
    if (this.invalidating.has(name)) await this.doInvalidate(name);
    else await this.resyncIfRival(name);
    if (!this.joining.has(name) && (await leaveIfEvicted(this.o, name))) {
      this.o.ctx.log('warn', `${this.host} was removed from ${name} by another member (leave-resource --host) while away: it leaves ${name} here`, { resource: name });
      // Loaded or not yet (the removal may arrive before the resources are), its directory goes; the device stays.
      await this.remove(name);
    }
    for (let i = 0; i < reconcileStepsMax; i++) {
      const step = nextStep(this.host, this.spec(name), await this.localState(name));
      if (step.kind === 'none') return;
      if (step.kind === 'report') {
        if (this.spec(name).member) await this.o.cluster.set(actualKey(name, this.host), step.actual);
        return;
      }
      await this.carryOut(name, step);
    }
    this.o.ctx.log('error', `reconciling ${name} did not settle within ${reconcileStepsMax} steps`, { resource: name });
  }

  private async localState(name: string): Promise<LocalState> {
    const resource = this.resources.get(name);
    if (resource !== undefined) {
      const running = resource.stateKind === 'serving' || resource.stateKind === 'recovering';
      const report: Record<string, JsonValue> = {};
      const needsLog = resource.needsLog;
      if (needsLog !== undefined) report['needsLog'] = needsLog;
      const consistent = resource.consistent;
      if (consistent !== undefined) report['consistent'] = consistent;
      const version = await resource.version();
      if (version !== '') report['version'] = version;
      await resource.refreshDeviceBytes();
      if (resource.deviceBytes !== undefined) report['deviceBytes'] = resource.deviceBytes;
      const logEnd = await resource.ownLogEnd();
      if (logEnd !== undefined) report['logEnd'] = { logNumber: logEnd.logNumber, offsetBytes: logEnd.offsetBytes };
      // Only complete logs with their sizes: the live one grows, and sizes in the indicator must not change with every write.
      const logs = await resource.recentLogs(recentLogsReported);
      if (logs.length > 0) report['logs'] = logs.map(([n, origin, bytes], i) => [n, origin, i === logs.length - 1 ? null : bytes]);
      const fetchedLog = resource.replica?.fetchedLog;
      if (fetchedLog !== undefined) report['fetchedLog'] = fetchedLog;
      Object.assign(report, this.logReachOf(name, resource));
      const emergency = resource.emergency;
      if (emergency?.active === true) report['emergency'] = true;
      if (emergency !== undefined && emergency.hole > 0) report['hole'] = emergency.hole;
      const divergence = resource.replica?.divergence;
      if (divergence !== undefined && this.rivalDecision(name, resource)?.kind !== 'resync') report['diverged'] = divergence;
      if (resource.consistent === true) this.rivalResyncs.delete(name);
      if (resource.backend() !== undefined) report['nbdClients'] = this.o.clients(name);
      const replication = running ? await this.replicationReport(name, resource) : undefined;
      if (replication !== undefined) report['repl'] = encodeReplication(replication);
      const spec = this.spec(name);
      const handover = running && !resource.isPrimaryRole && spec.primary === this.host ? this.handoverOf(name, resource) : undefined;
      return {
        kind: resource.stateKind,
        primary: resource.config.primary,
        failure: resource.failure,
        sizeBytes: resource.config.sizeBytes,
        report,
        ...(running && !resource.isPrimaryRole ? { switches: resource.currentSwitches } : {}),
        ...(handover === undefined ? {} : { handover }),
      };
    }
    const onDisk = await exists(join(paths.resourceDir(this.o.dir, name), resourceConfigFile));
    return { kind: onDisk ? 'on-disk' : 'absent', primary: undefined, failure: undefined };
  }

  /**
   * May this host, designated primary while it runs as a secondary, take over now? A
   * forced takeover may; a planned one waits until no other member serves and this host
   * has replayed every former primary's log to its end (their indicators say where).
   */
  private handoverOf(name: string, resource: Resource): { ready: boolean; reason?: string } {
    if (this.spec(name).desired.force) return { ready: true };
    const replica = resource.replica;
    if (replica === undefined) return { ready: false, reason: 'the replica is not running' };
    if (!replica.consistent) return { ready: false, reason: 'this host is not consistent yet (sync or replay unfinished)' };
    if (replica.divergence !== undefined) return { ready: false, reason: `split brain: ${replica.divergence}` };
    const persisted = replica.persistedPosition;
    for (const member of this.o.cluster.hostsListing(name)) {
      if (member === this.host) continue;
      const actual = this.o.cluster.get(actualKey(name, member));
      if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) continue;
      if (actual['isPrimary'] === true) return { ready: false, reason: `waiting for ${member} to stop serving` };
      const end = actual['logEnd'];
      if (end === null || typeof end !== 'object' || Array.isArray(end)) continue;
      const logNumber = end['logNumber'];
      const offsetBytes = end['offsetBytes'];
      if (typeof logNumber !== 'number' || typeof offsetBytes !== 'number') continue;
      const target = { logNumber, logHost: member, offsetBytes, nextSeq: 0n };
      if (persisted === undefined || comparePositions(persisted, target) < 0) {
        replica.notifyWhenReplayed(target);
        return { ready: false, reason: `replaying the log of ${member} up to ${logNumber}:${offsetBytes}` };
      }
    }
    return { ready: true };
  }

  private context(): ResourceContext {
    return {
      ...this.o.ctx,
      onFailed: (name) => {
        this.o.closeExport(name);
        void this.schedule(name);
      },
      onChange: (name) => void this.schedule(name),
    };
  }

  private switchesOf(name: string): Switches {
    const d = this.spec(name).desired;
    return { fetch: d.fetch, replay: d.replay, sync: d.sync };
  }

  private async carryOut(name: string, step: Exclude<Step, { kind: 'none' | 'report' }>): Promise<void> {
    const dir = paths.resourceDir(this.o.dir, name);
    switch (step.kind) {
      case 'create': {
        const resource = await Resource.create(dir, { name, devicePath: step.device, sizeBytes: step.sizeBytes, primary: step.primary }, this.context());
        this.resources.set(name, resource);
        this.o.ctx.log('info', step.primary === this.host ? 'resource created' : 'resource joined', { resource: name, device: step.device, sizeBytes: step.sizeBytes, primary: step.primary });
        await resource.start(this.switchesOf(name));
        await this.afterStart(name, resource);
        return;
      }
      case 'load': {
        // Loaded stopped: the planner then learns a new designation before it starts.
        this.resources.set(name, await Resource.load(dir, this.context()));
        return;
      }
      case 'start': {
        const resource = this.mustGet(name);
        await resource.start(this.switchesOf(name));
        await this.afterStart(name, resource);
        return;
      }
      case 'switches':
        await this.mustGet(name).setSwitches(step.switches);
        return;
      case 'resize':
        await this.mustGet(name).resize(step.sizeBytes);
        return;
      case 'delete':
        await this.remove(name);
        return;
      case 'stop':
        this.o.closeExport(name);
        await this.mustGet(name).stop();
        return;
      case 'set-primary': {
        // A change of this host's role restarts the resource in the new role.
        const resource = this.mustGet(name);
        const roleChanges = (resource.config.primary === this.host) !== (step.primary === this.host);
        const running = resource.stateKind === 'serving' || resource.stateKind === 'recovering';
        const wasPrimary = resource.backend() !== undefined;
        if (roleChanges && running) {
          this.o.closeExport(name);
          await resource.stop();
        }
        await this.resyncIfSyncing(name, resource, roleChanges ? '' : step.primary);
        await resource.setPrimary(step.primary);
        if (wasPrimary && roleChanges) this.o.onRoleChange(name, 'secondary');
        return;
      }
    }
  }

  /** After a start: a host that now serves as primary runs its hook and clears a forced takeover's flag. */
  private async afterStart(name: string, resource: Resource): Promise<void> {
    if (resource.backend() === undefined) return;
    this.o.onRoleChange(name, 'primary');
    const key = desiredKey(name, this.host);
    const desired = parseDesired(this.o.cluster.get(key));
    if (desired.force) await this.o.cluster.set(key, desiredValue({ ...desired, force: false }));
  }

  /** Runs join-resource R: meanwhile this host's old removal from R (leave-resource --host) does not make it leave again. */
  async whileJoining<T>(name: string, join: () => Promise<T>): Promise<T> {
    this.joining.add(name);
    try {
      return await join();
    } finally {
      this.joining.delete(name);
    }
  }

  /** invalidate R: the next reconcile pass stops R, forgets its history and starts it again (a sync follows). */
  invalidate(name: string): Promise<void> {
    this.invalidating.add(name);
    return this.schedule(name);
  }

  private async doInvalidate(name: string): Promise<void> {
    this.invalidating.delete(name);
    const resource = this.resources.get(name);
    if (resource === undefined) return;
    if (resource.config.primary === this.host) throw new MarsError('EINVAL', `${this.host} is the primary of ${name}: invalidate runs on a secondary`);
    this.o.closeExport(name);
    await resource.stop();
    await resource.forgetHistory();
    this.o.ctx.log('info', `invalidate: ${name} forgot its history; a fast full sync from the primary follows`, { resource: name });
  }

  /** What to do about a rival history found by this host's fetch or replay, if any (src/strategy/rival-history.ts). */
  private rivalDecision(name: string, resource: Resource): RivalHistoryDecision | undefined {
    const replica = resource.replica;
    if (replica?.divergence === undefined) return undefined;
    return onRivalHistory(replica.copyPhase, this.rivalResyncs.get(name) ?? 0);
  }

  /**
   * A member in the middle of a full sync whose copy of the log turned out to belong to a
   * rival history (after a forced failover the new primary holds less of the old one's log)
   * has nothing to protect: it forgets that history and syncs again from the primary, as
   * invalidate would, instead of reporting a split brain.
   */
  private async resyncIfRival(name: string): Promise<void> {
    const resource = this.resources.get(name);
    const decision = resource === undefined ? undefined : this.rivalDecision(name, resource);
    if (resource === undefined || decision?.kind !== 'resync' || resource.config.primary === this.host) return;
    const count = (this.rivalResyncs.get(name) ?? 0) + 1;
    this.rivalResyncs.set(name, count);
    this.o.ctx.log('warn', `${name}: ${resource.replica?.divergence ?? 'diverged'}; ${decision.why}, so it drops its copies of the other history and syncs again from ${resource.config.primary} (${count} of at most ${rivalResyncsMax} in a row)`, { resource: name });
    await this.doInvalidate(name);
  }

  /**
   * Another host is designated primary while this member is in the middle of a full sync
   * (src/strategy/rival-history.ts, onPrimaryChange): it forgets its history and syncs
   * again from the new primary once it starts (the reconcile loop starts it again).
   */
  private async resyncIfSyncing(name: string, resource: Resource, primary: string): Promise<void> {
    if (primary === '' || primary === this.host || primary === resource.config.primary) return;
    const replica = resource.replica;
    // Stopped (down) in the middle of a sync: its sync state file says so; it starts again with a clean slate too.
    const stoppedSyncing = replica === undefined && resource.stateKind === 'stopped' && (await loadSyncState(resource.storage).catch(() => undefined)) !== undefined;
    if (replica === undefined && !stoppedSyncing) return;
    const decision = onPrimaryChange(replica?.copyPhase ?? { kind: 'syncing', start: undefined });
    if (decision.kind !== 'resync') return;
    this.o.ctx.log('warn', `${name}: ${primary} is the primary now and ${decision.why}, so it drops its log copies and syncs again from ${primary}`, { resource: name });
    if (replica !== undefined) await resource.stop();
    await resource.forgetHistory();
  }

  /** delete-resource on this member: the resource directory goes (the device stays as it is), then its keys and its place in the host record. */
  private async remove(name: string): Promise<void> {
    const resource = this.resources.get(name);
    this.o.closeExport(name);
    if (resource !== undefined) await resource.retire();
    this.resources.delete(name);
    this.logReach.delete(name);
    this.rivalResyncs.delete(name);
    await rm(paths.resourceDir(this.o.dir, name), { recursive: true, force: true });
    const cluster = this.o.cluster;
    const record = cluster.ownRecord();
    if (record?.resources.includes(name) === true) {
      for (const key of [desiredKey(name, this.host), dataKey(name, this.host), actualKey(name, this.host)]) await cluster.delete(key);
      await cluster.setOwnRecord({ address: record.address, resources: record.resources.filter((r) => r !== name) });
    }
    this.o.ctx.log('info', 'resource deleted on this host (its device is left as it is)', { resource: name });
  }

  private mustGet(name: string): Resource {
    const resource = this.resources.get(name);
    if (resource === undefined) throw new MarsError('NOT_FOUND', `resource ${name} is not loaded`);
    return resource;
  }

  /** Clean stop of every resource (after their loops have finished). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.refreshTimer);
    await Promise.all([...this.loops.values()].map((loop) => loop.done));
    for (const resource of this.resources.values()) await resource.stop();
  }
}
