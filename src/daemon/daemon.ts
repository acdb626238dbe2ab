/**
 * marsd's wiring: the cluster (metadata core, peers), the resources of this host with
 * their reconciler, the NBD server that exports the ones it is primary of, and the
 * control socket that marsadm talks to. Requests from the control socket are validated
 * at the edge (here and in resource-commands.ts) and turned into typed errors.
 *
 * Start order: metadata first (a corrupt file stops the start, naming it), then the
 * resources (recovery before anything is exported), then NBD, the control socket, and
 * last the peers.
 */
import { randomInt } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { actualKey, desiredKey, type JsonValue } from '../meta/index.js';
import { Random } from '../core/random.js';
import { FetchServer } from '../fetch/index.js';
import { systemTimers, type PeerLink, type Timers } from '../net/index.js';
import { waitAtMost } from '../core/timers.js';
import { SyncSourceSession } from '../sync/index.js';
import { desiredValue, holeAheadOf, logDeleteHold, memberState, parseDesired, parseIndicator, type DiskState, type HoldKind, type LogHold, type MemberNeed, type ReplState, type SplitBrain } from '../strategy/index.js';
import type { DaemonIntervals } from './daemon-intervals.js';
import { HookRunner, loadHooks } from './hooks.js';
import { invalidate, makePrimary, makeSecondary, splitBrainsOf } from './role-commands.js';
import { NbdServer } from '../nbd/server.js';
import type { NbdLimits } from '../nbd/limits.js';
import type { BlockBackend, ExportRegistry } from '../nbd/backend.js';
import { ControlServer } from '../control/server.js';
import type { LoggerLimits } from '../logger/limits.js';
import type { TlsOptions } from '../net/index.js';
import { Cluster, type LogFn } from './cluster.js';
import { clusterCommandTimeoutMsMax, leaveCluster, mergeCluster, removeHostFromCluster, viewHosts, waitCluster, waitClusterTimeoutMsDefault, type HostLine } from './cluster-ops.js';
import { Logger } from '../logger/logger.js';
import { NearSyncBackend, NearSyncGate, type NearSyncStatus } from '../logger/near-sync.js';
import { parseLogName } from '../log/index.js';
import { setSyncMode, syncModeOf } from './sync-mode.js';
import { formerIdentityFile } from './identity.js';
import { adoptLocalResources, createResource, deleteResource, joinResource, leaveResource, nameArg, removeMember, resizeResource, setAttach, type ResourceCommandContext } from './resource-commands.js';
import type { ResourceStatus } from './resource.js';
import { ResourceSet } from './resources.js';
import { lookAtFilesystem, SpaceMonitor, type SpaceReport } from './space-monitor.js';
import { StateReserve } from './state-reserve.js';
import { spaceLimitsDefault, type SpaceLimits } from '../space/index.js';
import type { Resource } from './resource.js';
import { advertisedAddress, paths, type HostConfig } from './state-dir.js';
import { availableCompressions, type CompressionName } from '../compress/index.js';
import { Bandwidth, formatRateLimit, parseRate, type BulkKind } from './bandwidth.js';

export { deviceAlignmentBytes } from './resource-commands.js';

/** At start, how long marsd waits to exchange metadata with reachable peers before it decides roles. */
export const startupExchangeMsMax = 3_000;

export interface DaemonOptions {
  dir: string;
  hostConfig: HostConfig;
  nbd: { host: string; port: number };
  clock: Clock;
  /** The host's timers (marsd: the real ones, from system-env.ts). */
  timers?: Timers;
  limits: Partial<LoggerLimits>;
  log: LogFn;
  tls?: TlsOptions;
  /** This host left the cluster: the process should stop (its state directory is no member any more). */
  onLeft?: () => void;
  /** The host's limit for syncs it receives, bytes per second (0 = unlimited, the default). */
  syncRateBytesPerS?: number;
  /** The host's limit for log fetch, bytes per second (0 = unlimited, the default). */
  fetchRateBytesPerS?: number;
  /** Fetch connections per resource to its source (src/fetch/lanes.ts); default 1. */
  parallelConnections?: number;
  /** Compressions for log shipping, best first (default: every one this host can do; [] = none). */
  compressions?: readonly CompressionName[];
  /** NBD server limits (src/nbd/limits.ts) given on the command line; defaults for the rest. */
  nbdLimits?: Partial<NbdLimits>;
  /** Log space management (src/space/limits.ts); defaults for the rest. */
  spaceLimits?: Partial<SpaceLimits>;
  /** Refresh and retry intervals (src/daemon/daemon-intervals.ts; marsd: MARS_INTERVALS); defaults for the rest. */
  intervals?: Partial<DaemonIntervals>;
  /** Wraps each export an NBD client opens (the metrics exporter counts requests there). */
  wrapBackend?: (name: string, backend: BlockBackend) => BlockBackend;
}

/** A member of a resource as the metadata says. */
export interface MemberStatus {
  host: string;
  primary: boolean;
  /** The state words (src/strategy/member-state.ts); Unknown Unreachable when this host cannot reach it; null before it reported. */
  diskState: DiskState | null;
  replState: ReplState | null;
  /** What its indicator last said, by the same rules, when it is unreachable (stale); null otherwise. */
  lastDiskState: DiskState | null;
  lastReplState: ReplState | null;
  state: string | null;
  consistent: boolean | null;
  needsLog: number | null;
  reason: string | null;
  /** This host has a link to it (this host itself: true). */
  reachable: boolean;
  /** When this host last had a link to it (ISO 8601; now when reachable). */
  lastSeenAt: string;
  /** Seconds since its indicator was written (its hybrid clock); null before it reported. */
  indicatorAgeS: number | null;
  /** A running secondary: bytes the primary has durable that it has not fetched, and fetched bytes it has not replayed (as its indicator says; refreshed every few seconds). */
  fetchLagBytes: number | null;
  /** Age in seconds of the oldest write the member's disk does not hold yet, as it last reported (see replication-lag.ts). */
  lagS: number | null;
  replayLagBytes: number | null;
  /** A running secondary's switches. */
  switches: { fetch: boolean; replay: boolean; sync: boolean } | null;
  /** A running or pending sync's progress. */
  sync: { state: string; doneBytes: number | null; sizeBytes: number | null } | null;
  /** Bytes of log this host keeps only because this member still needs them (null: none, or this host). */
  heldBackBytes: number | null;
  /** Seconds since this host last had a link to the member (null: reachable, or this host). */
  unreachableS: number | null;
  /** Unreachable for longer than the limit: it no longer holds logs back from reclaim. */
  dead: boolean;
  /** As primary, in emergency mode (from its indicator). */
  emergency: boolean;
  /** The last hole in the log numbering it reports (null: none). */
  hole: number | null;
}

export interface HostStatus {
  host: string;
  clusterId: string;
  listen: string;
  nbd: string;
  resources: (ResourceStatus & {
    members: MemberStatus[];
    logDeleteHeldBy: { host: string; logNumber: number } | null;
    splitBrain: SplitBrain | null;
    /** The split brains after the first, when the histories parted more than once. */
    laterSplitBrains?: SplitBrain[];
    space: SpaceReport | null;
    emergency: { active: boolean; hole: number; reason: string | null } | null;
    /** The resource's sync mode; `state` is this host's as the serving primary (null elsewhere). */
    syncMode?: (Omit<NearSyncStatus, 'state'> & { state: NearSyncStatus['state'] | null }) | null;
  })[];
}

/** How long `view` waits for the resource's reconcile to publish this host's indicator. */
export const viewReconcileWaitMs = 500;

export class Daemon implements ExportRegistry {
  private readonly nbdServer: NbdServer;
  private readonly control: ControlServer;
  private nbdAddress = '';
  private cluster: Cluster | undefined;
  private resourceSet: ResourceSet | undefined;
  private fetchServer: FetchServer | undefined;
  private readonly hooks: HookRunner;
  private readonly syncSessions = new Set<SyncSourceSession>();
  private spaceMonitor: SpaceMonitor | undefined;
  private readonly spaceLimits: SpaceLimits;
  /** Since when each other host has had no link (by the daemon's clock). */
  private readonly unreachableSinceMs = new Map<string, number>();
  private readonly bandwidth: Bandwidth;
  private readonly compressions: readonly CompressionName[];
  /** Near-sync gates of the resources this host serves as primary (src/logger/near-sync.ts). */
  private readonly nearSyncGates = new Map<string, NearSyncGate>();

  constructor(private readonly options: DaemonOptions) {
    this.nbdServer = new NbdServer(this, {
      logger: (msg: string) => options.log('info', msg),
      onClientsChanged: (name) => void this.resourceSet?.schedule(name),
      ...(options.nbdLimits === undefined ? {} : { limits: options.nbdLimits }),
    });
    this.hooks = new HookRunner(
      (name) => paths.resourceDir(options.dir, name),
      (name) => ({ MARS_RESOURCE: name, MARS_HOST: options.hostConfig.host, MARS_DEVICE: `nbd://${this.nbdAddress}/${name}` }),
      options.log,
    );
    this.control = new ControlServer(paths.controlSocket(options.dir), (cmd, args) => this.handle(cmd, args));
    this.spaceLimits = { ...spaceLimitsDefault, ...options.spaceLimits };
    this.compressions = options.compressions ?? availableCompressions();
    this.bandwidth = new Bandwidth(options.clock, { fetch: options.fetchRateBytesPerS ?? 0, sync: options.syncRateBytesPerS ?? 0 }, options.timers ?? systemTimers);
  }

  private get commands(): ResourceCommandContext {
    if (this.cluster === undefined || this.resourceSet === undefined) throw new MarsError('SHUTTING_DOWN', 'marsd is not running');
    const cluster = this.cluster;
    return {
      dir: this.options.dir,
      cluster,
      resources: this.resourceSet,
      unreachableSinceMs: (host) => {
        this.notePeers(cluster);
        return this.unreachableSinceMs.get(host);
      },
    };
  }

  // ---- ExportRegistry ----
  get(name: string): BlockBackend | undefined {
    const served = this.resourceSet?.get(name)?.backend();
    const backend = served instanceof Logger ? new NearSyncBackend(served, this.nearSyncGate(name), () => served.durableLogEnd()) : served;
    const wrap = this.options.wrapBackend;
    return backend === undefined || wrap === undefined ? backend : wrap(name, backend);
  }

  /** The near-sync gate of a resource (made on first use; it reads the mode from the metadata at each flush). */
  private nearSyncGate(name: string): NearSyncGate {
    let gate = this.nearSyncGates.get(name);
    if (gate !== undefined) return gate;
    const cluster = this.commands.cluster;
    const o = this.options;
    gate = new NearSyncGate({
      clock: o.clock,
      timers: o.timers ?? systemTimers,
      mode: () => syncModeOf(cluster, name),
      durableEnd: () => {
        const backend = this.resourceSet?.get(name)?.backend();
        return backend instanceof Logger ? backend.durableLogEnd() : { logNumber: 0, endOffsetBytes: 0 };
      },
      onChange: (state, why) => {
        if (state === 'fallen-back') o.log('warn', `${name} fell back from near-sync to asynchronous replication: ${why}`, { resource: name });
        else o.log('info', `${name} is near-sync again: ${why}`, { resource: name });
      },
    });
    this.nearSyncGates.set(name, gate);
    return gate;
  }

  /**
   * What `view all` and `view-hosts` show, with each primary's durable log end: read-only,
   * for the metrics exporter and the status page (src/metrics/).
   */
  async observe(): Promise<{ status: HostStatus; hosts: HostLine[]; durable: Map<string, { logNumber: number; endOffsetBytes: number }> }> {
    const c = this.commands;
    const status = await this.view({});
    const durable = new Map<string, { logNumber: number; endOffsetBytes: number }>();
    for (const r of c.resources.values()) {
      const backend = r.backend();
      if (backend instanceof Logger) durable.set(r.name, backend.durableLogEnd());
    }
    return { status, hosts: viewHosts(c.cluster), durable };
  }

  names(): string[] {
    return [...(this.resourceSet?.values() ?? [])].filter((r) => r.backend() !== undefined).map((r) => r.name);
  }

  async start(): Promise<void> {
    const o = this.options;
    const cluster = await Cluster.open({ dir: o.dir, hostConfig: o.hostConfig, clock: o.clock, tls: o.tls, log: o.log, ...(o.intervals?.peerIdleMs === undefined ? {} : { linkIdleMs: o.intervals.peerIdleMs }) });
    this.cluster = cluster;
    const stateReserve = new StateReserve({ dir: o.dir, limits: this.spaceLimits, nowMs: () => o.clock.nowMs(), look: lookAtFilesystem });
    this.resourceSet = new ResourceSet({
      dir: o.dir,
      cluster,
      ctx: {
        host: o.hostConfig.host,
        clock: o.clock,
        limits: o.limits,
        log: o.log,
        dial: (host, channel) => cluster.peers.dialChannel(host, channel),
        timers: o.timers ?? systemTimers,
        random: new Random(randomInt(2 ** 31)),
        bandwidth: this.bandwidth,
        compressions: this.compressions,
        nearSync: (name) => syncModeOf(cluster, name).mode === 'near-sync',
        ...(o.parallelConnections === undefined ? {} : { parallelConnections: o.parallelConnections }),
        ...(o.intervals?.fetchRetryMs === undefined ? {} : { fetchRetryMs: o.intervals.fetchRetryMs }),
        copyRoom: (bytes) => stateReserve.room(bytes),
      },
      ...(o.intervals?.indicatorRefreshMs === undefined ? {} : { indicatorRefreshMs: o.intervals.indicatorRefreshMs }),
      closeExport: (name) => void this.nbdServer.closeExport(name),
      clients: (name) => this.nbdServer.clients(name),
      onRoleChange: (name, role) => this.hooks.roleChanged(name, role),
    });
    const resources = this.resourceSet;
    const isMember = (peer: string, resource: string): boolean => cluster.hostsListing(resource).includes(peer);
    this.fetchServer = new FetchServer({
      sources: (resource) => resources.get(resource)?.logSource(),
      mayFetch: isMember,
      // A log deleted or cut while a peer fetched it is ordinary during handovers and log-delete: the peer asks again.
      onStreamError: (peer, logName, reason, message) => o.log(reason === 'noLog' || reason === 'sourceIo' ? 'info' : 'warn', `fetch of ${logName} by ${peer} refused: ${reason}: ${message}`),
      compressions: this.compressions,
      // Fetch serving gives the event loop back after every chunk: the NBD path must not wait behind a credit window of sends.
      yieldTurn: () => new Promise((resolve) => setImmediate(resolve)),
      onSynced: (peer, resource, logName, syncedEndBytes) => {
        const logNumber = parseLogName(logName)?.logNumber;
        if (logNumber !== undefined && resources.get(resource)?.backend() instanceof Logger) this.nearSyncGate(resource).acknowledge(peer, { logNumber, endOffsetBytes: syncedEndBytes });
      },
    });
    const fetchServer = this.fetchServer;
    cluster.setBulkHandler((link: PeerLink) => {
      if (link.info.channel === 'fetch') {
        fetchServer.adopt(link);
        return;
      }
      if (link.info.channel !== 'sync') {
        link.close();
        return;
      }
      const session = SyncSourceSession.serve(link, {
        compressions: this.compressions,
        resolve: (resource, peer) => (isMember(peer, resource) ? resources.get(resource)?.syncSource(peer) : undefined),
        onEnd: (ended, error) => {
          this.syncSessions.delete(ended);
          if (error !== undefined) o.log('info', `sync session with ${ended.peerHost} ended: ${error.message}`);
        },
      });
      this.syncSessions.add(session);
    });
    const record = cluster.ownRecord();
    const advertised = advertisedAddress(cluster.hostConfig);
    if (record === undefined || record.address !== advertised) {
      await cluster.setOwnRecord({ address: advertised, resources: record?.resources ?? [] });
    }
    await adoptLocalResources(this.commands, (msg) => o.log('info', msg));
    // Hear the others before deciding roles: a host restarted after a failover elsewhere
    // must learn the new designation before it could serve as a stale primary.
    await cluster.start();
    if (cluster.node.hosts().some((h) => h !== cluster.host)) {
      await waitCluster(cluster, o.clock, startupExchangeMsMax).catch((err: unknown) => {
        o.log('warn', `starting with the metadata this host has: ${(err as Error).message}`);
      });
    }
    this.stopIfRemoved(cluster, true);
    cluster.onChange((keys) => {
      if (keys.some((k) => k.startsWith('cluster/removed/'))) this.stopIfRemoved(cluster, false);
    });
    await this.resourceSet.reconcileAll();
    await this.nbdServer.listen(o.nbd.host, o.nbd.port);
    const addr = this.nbdServer.address();
    this.nbdAddress = `${addr.host}:${addr.port}`;
    await this.control.listen();
    this.spaceMonitor = new SpaceMonitor({
      dir: o.dir,
      limits: this.spaceLimits,
      clock: o.clock,
      log: o.log,
      resources: () => resources.values(),
      reclaimFloor: (r) => this.logDeleteHold(this.commands, r.name, 'live-fetched')?.logNumber ?? Number.MAX_SAFE_INTEGER,
      describeHolds: (r) => this.describeHolds(r),
      beforeCheck: () => this.notePeers(cluster),
    });
    this.spaceMonitor.start();
    o.log('info', 'marsd is ready', { host: o.hostConfig.host, nbd: this.nbdAddress, listen: o.hostConfig.listen, resources: [...this.resourceSet.known()] });
  }

  /**
   * SIGHUP (systemctl reload): check every resource's hooks.json now, rather than at the
   * next role change, and reconcile every resource again. Hooks are read at each role
   * change anyway; this tells the operator at once whether an edited file is valid.
   */
  async reload(): Promise<{ name: string; hooks: string }[]> {
    const c = this.commands;
    const report: { name: string; hooks: string }[] = [];
    for (const name of [...c.resources.known()].sort()) {
      const hooks = await loadHooks(paths.resourceDir(this.options.dir, name)).then(
        (h) => (h === undefined ? 'none' : `ok (${[h.onPrimary === undefined ? '' : 'onPrimary', h.onSecondary === undefined ? '' : 'onSecondary'].filter((x) => x !== '').join(', ') || 'empty'})`),
        (err: unknown) => `invalid: ${(err as Error).message}`,
      );
      this.options.log(hooks.startsWith('invalid') ? 'warn' : 'info', `reload: ${name}: hooks ${hooks}`, { resource: name });
      report.push({ name, hooks });
    }
    await c.resources.reconcileAll();
    return report;
  }

  async stop(): Promise<void> {
    await this.control.close();
    await this.spaceMonitor?.stop();
    this.fetchServer?.close();
    // No acknowledgement comes any more: flushes waiting for near-sync are answered (durable here, as in asynchronous mode).
    for (const gate of this.nearSyncGates.values()) gate.close();
    await this.cluster?.stop();
    await this.nbdServer.close();
    await this.resourceSet?.stop();
    await this.hooks.idle();
  }

  private async handle(cmd: string, args: Record<string, unknown>): Promise<unknown> {
    const c = this.commands;
    switch (cmd) {
      case 'create-resource':
        return createResource(c, args, this.nbdAddress);
      case 'join-resource':
        return joinResource(c, args);
      case 'leave-resource':
        return typeof args['host'] === 'string' ? removeMember(c, args, (h) => c.cluster.peers.alive(h)) : leaveResource(c, args, (name) => this.nbdServer.clients(name));
      case 'up':
        return setAttach(c, args, true, (name) => this.nbdServer.clients(name));
      case 'down':
        return setAttach(c, args, false, (name) => this.nbdServer.clients(name));
      case 'log-rotate':
        return { logNumber: await this.resource(args).logRotate() };
      case 'log-delete': {
        const r = this.resource(args);
        const held = this.logDeleteHold(c, r.name);
        const deleted = await r.logDelete(held?.logNumber);
        return { deleted, heldBy: held ?? null };
      }
      case 'switch':
        return this.setSwitch(c, args);
      case 'primary':
        return makePrimary(c, args);
      case 'secondary':
        return makeSecondary(c, args, (name) => this.nbdServer.clients(name));
      case 'invalidate':
        return invalidate(c, args);
      case 'delete-resource':
        return deleteResource(c, args, (name) => this.nbdServer.clients(name));
      case 'resize':
        return resizeResource(c, args);
      case 'cron':
        return this.cron();
      case 'view':
        return this.view(args);
      case 'set-sync-mode':
        return setSyncMode(c, args);
      case 'set-rate':
        return this.setRate(args);
      default:
        return this.handleCluster(c.cluster, cmd, args);
    }
  }

  private async handleCluster(cluster: Cluster, cmd: string, args: Record<string, unknown>): Promise<unknown> {
    switch (cmd) {
      case 'view-hosts':
        return { hosts: viewHosts(cluster) };
      case 'wait-cluster':
        return waitCluster(cluster, this.options.clock, timeoutArg(args));
      case 'leave-cluster': {
        const dead = args['host'];
        if (dead !== undefined && dead !== null) {
          if (typeof dead !== 'string') throw new MarsError('BAD_REQUEST', 'leave-cluster: host must be a name');
          const removed = await removeHostFromCluster(cluster, dead, args['force'] === true);
          this.options.log('info', `removed ${dead} from the cluster (leave-cluster --host)`, { host: dead });
          return removed;
        }
        return this.leave(cluster, timeoutArg(args));
      }
      case 'merge-cluster': {
        const peer = args['peer'];
        const secretFile = args['secretFile'];
        if (typeof peer !== 'string' || typeof secretFile !== 'string') throw new MarsError('BAD_REQUEST', 'merge-cluster needs peer and secretFile');
        return mergeCluster(cluster, { peer, secretFile, tls: this.options.tls });
      }
      default:
        throw new MarsError('BAD_REQUEST', `unknown control command '${cmd}'`);
    }
  }

  /** set-rate: changes the host's (no name) or a resource's fetch and sync limits; answers every limit now in force. */
  private async setRate(args: Record<string, unknown>): Promise<unknown> {
    const name = args['name'];
    if (name !== undefined && name !== null) this.resource(args);
    const resource = typeof name === 'string' ? name : undefined;
    const changes: [BulkKind, number][] = [];
    for (const kind of ['fetch', 'sync'] as const) {
      const text = args[kind];
      if (text === undefined || text === null) continue;
      if (typeof text !== 'string') throw new MarsError('EINVAL', `bad ${kind} rate`);
      changes.push([kind, parseRate(text, `${kind} rate`)]);
    }
    for (const [kind, rate] of changes) {
      await this.bandwidth.setLimit(resource, kind, rate);
      this.options.log('info', `${kind} rate limit of ${resource ?? 'this host'}: ${formatRateLimit(rate)}`, resource === undefined ? {} : { resource });
    }
    return this.bandwidth.limits();
  }

  /**
   * A host removed by another (leave-cluster --host) that runs again: it learns so from
   * its peers and stops, saying why. Refused at start (marsd exits 1); while running, it
   * stops as after leave-cluster.
   */
  private stopIfRemoved(cluster: Cluster, atStart: boolean): void {
    const by = cluster.removed().get(cluster.host);
    if (by === undefined) return;
    const why = `this host (${cluster.host}) was removed from the cluster by ${by} (leave-cluster --host ${cluster.host}): marsd stops; to take part again, join the cluster anew from an empty state directory`;
    if (atStart) throw new MarsError('EINVAL', why);
    if (this.removedReported) return;
    this.removedReported = true;
    this.options.log('error', why);
    setImmediate(() => this.options.onLeft?.());
  }

  private removedReported = false;

  /** leave-cluster; once another host holds the news, this directory stops being a member. */
  private async leave(cluster: Cluster, timeoutMs: number): Promise<unknown> {
    const acknowledgedBy = await leaveCluster(cluster, this.options.clock, timeoutMs);
    // No metadata write may land in the directory while (or after) it is removed.
    await cluster.stopForGood();
    const dir = this.options.dir;
    await rm(paths.hostFile(dir), { force: true });
    await rm(paths.secretFile(dir), { force: true });
    await rm(`${dir}/${formerIdentityFile}`, { force: true });
    await rm(paths.metaDir(dir), { recursive: true, force: true });
    this.options.log('info', 'left the cluster; stopping', { acknowledgedBy });
    setImmediate(() => this.options.onLeft?.());
    return { host: cluster.host, acknowledgedBy };
  }

  private resource(args: Record<string, unknown>): NonNullable<ReturnType<ResourceSet['get']>> {
    const name = nameArg(args);
    const r = this.resourceSet?.get(name);
    if (r === undefined) throw new MarsError('NOT_FOUND', `resource ${name} does not exist on this host`);
    return r;
  }

  private async cron(): Promise<unknown> {
    const c = this.commands;
    const results: Record<string, unknown> = {};
    for (const r of this.resourceSet?.values() ?? []) {
      if (r.stateKind !== 'serving') continue;
      if (r.backend() !== undefined) {
        const status = await r.status();
        const current = status.logFiles.at(-1);
        if (current !== undefined && current.sizeBytes > 0) await r.logRotate();
      }
      const held = this.logDeleteHold(c, r.name);
      results[r.name] = { deleted: await r.logDelete(held?.logNumber), heldBy: held ?? null };
    }
    return results;
  }

  /**
   * The lowest log another member still needs, and who: from the members' indicators
   * (the log their replay is in, kept while they are down), and on the primary the start
   * positions of syncs it served to members that have not reported theirs yet. A member
   * stuck before an emergency's hole holds nothing back: it needs invalidate anyway. For
   * reclaim, what a member has fetched counts, and a dead member holds nothing back.
   */
  private logDeleteHold(c: ResourceCommandContext, name: string, kind: HoldKind = 'replayed'): LogHold | undefined {
    const local = c.resources.get(name);
    const members: MemberNeed[] = [];
    for (const member of c.cluster.hostsListing(name)) {
      if (member === c.cluster.host) continue;
      const actual = c.cluster.get(actualKey(name, member));
      const needs = needsLogOf(actual);
      if (needs === undefined) continue;
      // Its own report now says what it needs: the sync's start no longer holds for it.
      local?.syncHolds.delete(member);
      members.push({ host: member, needsLog: needs, fetchedLog: numberOf(actual, 'fetchedLog'), dead: kind === 'live-fetched' && this.isDead(member) });
    }
    for (const peer of [...(local?.syncHolds.keys() ?? [])]) if (!c.cluster.hostsListing(name).includes(peer)) local?.syncHolds.delete(peer);
    return logDeleteHold(members, this.holeOf(c, name), kind, local?.syncHolds ?? []);
  }

  /** The last hole in the log numbering of R (0: none), as this host or the primary says. */
  private holeOf(c: ResourceCommandContext, name: string): number {
    const own = c.resources.get(name)?.emergency?.hole ?? 0;
    const primary = c.resources.spec(name).primary;
    const reported = primary === undefined ? undefined : numberOf(c.cluster.get(actualKey(name, primary)), 'hole');
    return Math.max(own, reported ?? 0);
  }

  private notePeers(cluster: Cluster): void {
    const now = this.options.clock.nowMs();
    for (const host of cluster.hosts()) {
      if (host === cluster.host || cluster.peers.alive(host)) this.unreachableSinceMs.delete(host);
      else if (!this.unreachableSinceMs.has(host)) this.unreachableSinceMs.set(host, now);
    }
  }

  private unreachableMs(host: string): number | undefined {
    const since = this.unreachableSinceMs.get(host);
    return since === undefined ? undefined : Math.max(0, this.options.clock.nowMs() - since);
  }

  private isDead(host: string): boolean {
    return (this.unreachableMs(host) ?? 0) > this.spaceLimits.memberUnreachableMsMax;
  }

  /** Bytes of the log files from `needsLog` on that this host would delete by its own need. */
  private heldBackBytes(r: Resource | undefined, needsLog: number, files: readonly { name: string; sizeBytes: number }[]): number {
    const own = r?.needsLog;
    if (own === undefined) return 0;
    const numbers = files.map((f) => Number(f.name.slice(4, 13)));
    const last = Math.max(0, ...numbers);
    let total = 0;
    files.forEach((f, i) => {
      const n = numbers[i]!;
      if (n >= needsLog && n < own && n < last) total += f.sizeBytes;
    });
    return total;
  }

  /** "beta holds 12 MiB back (needs log 3, unreachable for 40 s)" for each member that does, for the daemon log. */
  private describeHolds(r: Resource): string | undefined {
    const c = this.commands;
    const parts: string[] = [];
    const files = r.logFilesNow();
    for (const m of this.members(c, r.name, files)) {
      if (m.heldBackBytes === null || m.heldBackBytes === 0) continue;
      const away = m.unreachableS === null ? '' : `, unreachable for ${m.unreachableS} s${m.dead ? ', dead' : ''}`;
      parts.push(`${r.name}: ${m.host} holds ${m.heldBackBytes} bytes of log back (needs log ${m.needsLog ?? '?'}${away})`);
    }
    return parts.length === 0 ? undefined : parts.join('; ');
  }

  /** The member holding log deletion back, when it keeps a file here that this host's own need would let go. */
  private heldBack(c: ResourceCommandContext, name: string, status: ResourceStatus): { host: string; logNumber: number } | null {
    const hold = this.logDeleteHold(c, name);
    const own = c.resources.get(name)?.needsLog;
    if (hold === undefined || own === undefined) return null;
    const numbers = status.logFiles.map((f) => Number(f.name.slice(4, 13)));
    const last = Math.max(...numbers);
    return numbers.some((n) => n < own && n < last && n >= hold.logNumber) ? hold : null;
  }

  /** pause-/resume-fetch, -replay, -sync (connect/disconnect): the switch of this host, then the reconciler applies it. */
  private async setSwitch(c: ResourceCommandContext, args: Record<string, unknown>): Promise<unknown> {
    const name = nameArg(args);
    const which = args['switch'];
    const on = args['on'];
    if ((which !== 'fetch' && which !== 'replay' && which !== 'sync') || typeof on !== 'boolean') throw new MarsError('BAD_REQUEST', 'switch needs switch (fetch, replay or sync) and on');
    const host = c.cluster.host;
    if (c.cluster.ownRecord()?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${host} is not a member of resource ${name}`);
    if (!on) checkPause(c, name, which);
    const key = desiredKey(name, host);
    await c.cluster.set(key, desiredValue({ ...parseDesired(c.cluster.get(key)), [which]: on }));
    await c.resources.schedule(name);
    return { name, switch: which, on };
  }

  private async view(args: Record<string, unknown>): Promise<HostStatus> {
    const c = this.commands;
    const name = args['name'];
    const all = typeof name !== 'string' || name === 'all';
    const names = all ? [...c.resources.known()].sort() : [nameArg(args)];
    const resources: HostStatus['resources'] = [];
    for (const n of names) {
      // This host's own member entry is its published indicator: bring it up to date first
      // (a reconcile publishes what changed), so that the entry agrees with the live status
      // above it. Bounded: a reconcile busy with a long step does not hold the view up.
      await waitAtMost(this.options.timers ?? systemTimers, viewReconcileWaitMs, c.resources.schedule(n));
      const status = await this.statusOf(c, n);
      const emergency = c.resources.get(n)?.emergency;
      const [splitBrain, ...laterSplitBrains] = splitBrainsOf(c, n);
      resources.push({
        ...status,
        members: this.members(c, n, status.logFiles),
        logDeleteHeldBy: this.heldBack(c, n, status),
        splitBrain: splitBrain ?? null,
        laterSplitBrains,
        space: this.spaceMonitor?.report() ?? null,
        emergency: emergency === undefined ? null : { active: emergency.active, hole: emergency.hole, reason: emergency.reason ?? null },
        syncMode: this.syncModeStatus(c, n),
      });
    }
    const h = c.cluster.hostConfig;
    return { host: h.host, clusterId: h.clusterId, listen: h.listen, nbd: this.nbdAddress, resources };
  }

  private syncModeStatus(c: ResourceCommandContext, name: string): NonNullable<HostStatus['resources'][number]['syncMode']> {
    if (c.resources.get(name)?.backend() instanceof Logger) return this.nearSyncGate(name).status();
    const mode = syncModeOf(c.cluster, name);
    return { mode: mode.mode, state: null, members: mode.members, timeoutMs: mode.timeoutMs, waiting: 0, fallbacks: 0, reason: null, acked: {} };
  }

  private members(c: ResourceCommandContext, name: string, files: readonly { name: string; sizeBytes: number }[]): MemberStatus[] {
    const primary = c.resources.spec(name).primary;
    const local = c.resources.get(name);
    this.notePeers(c.cluster);
    const nowMs = this.options.clock.nowMs();
    const primaryIndicator = primary === undefined || primary === '' ? undefined : parseIndicator(c.cluster.get(actualKey(name, primary)));
    return c.cluster.hostsListing(name).map((host) => {
      const entry = c.cluster.node.entry(actualKey(name, host));
      const a = parseIndicator(entry?.deleted === false ? entry.value : undefined);
      const self = host === c.cluster.host;
      const away = self ? undefined : this.unreachableMs(host);
      const reachable = self || c.cluster.peers.alive(host);
      const r = a.replication;
      const syncing = r !== null && r.syncState !== null && r.syncState !== 'done';
      const holeAhead = host === primary || syncing ? null : holeAheadOf(primaryIndicator, a.needsLog);
      const facts = { state: a.state, designatedPrimary: host === primary, servingAsPrimary: a.isPrimary, emergency: a.emergency, replication: r, holeAhead };
      const now = memberState({ ...facts, reachable });
      const last = reachable ? undefined : memberState({ ...facts, reachable: true });
      const writtenMs = entry === undefined || entry.deleted ? undefined : Number(entry.lamport / 1000n);
      return {
        host,
        primary: host === primary,
        diskState: now.diskState,
        replState: now.replState,
        lastDiskState: last?.diskState ?? null,
        lastReplState: last?.replState ?? null,
        state: a.state,
        consistent: a.consistent,
        needsLog: a.needsLog,
        reason: a.reason,
        reachable,
        lastSeenAt: new Date(reachable ? nowMs : nowMs - (away ?? 0)).toISOString(),
        indicatorAgeS: writtenMs === undefined ? null : Math.max(0, Math.floor((nowMs - writtenMs) / 1000)),
        fetchLagBytes: r?.fetchRestBytes ?? null,
        lagS: r?.lagS ?? null,
        replayLagBytes: r?.replayRestBytes ?? null,
        switches: r === null ? null : { ...r.switches },
        sync: r === null || r.syncState === null ? null : { state: r.syncState, doneBytes: r.syncDoneBytes, sizeBytes: r.syncSizeBytes },
        heldBackBytes: self || a.needsLog === null ? null : this.heldBackBytes(local, a.needsLog, files),
        unreachableS: away === undefined ? null : Math.floor(away / 1000),
        dead: !self && this.isDead(host),
        emergency: a.emergency,
        hole: a.hole,
      };
    });
  }

  /** The status of a loaded resource, or what the metadata says of a member without local data. */
  private async statusOf(c: ResourceCommandContext, name: string): Promise<ResourceStatus> {
    const local = c.resources.get(name);
    if (local !== undefined) return local.status();
    const spec = c.resources.spec(name);
    if (!spec.member) throw new MarsError('NOT_FOUND', `resource ${name} does not exist on this host`);
    const actual = c.cluster.get(actualKey(name, c.cluster.host));
    const reason = actual !== null && typeof actual === 'object' && !Array.isArray(actual) && typeof actual['reason'] === 'string' ? actual['reason'] : 'not attached here';
    return {
      name,
      sizeBytes: spec.sizeBytes ?? 0,
      devicePath: spec.device ?? '',
      primary: spec.primary ?? '(none)',
      state: 'stopped',
      role: spec.primary === c.cluster.host ? 'primary' : 'secondary',
      replica: undefined,
      failure: reason,
      logger: undefined,
      recovery: undefined,
      logFiles: [],
    };
  }
}

/**
 * A pause that could do nothing is refused with the reason, rather than stored to take
 * effect later by surprise: the primary has no fetch or replay (it would become a delayed
 * replica after a later handover), and a host without a sync has none to pause.
 */
function checkPause(c: ResourceCommandContext, name: string, which: 'fetch' | 'replay' | 'sync'): void {
  const host = c.cluster.host;
  if (which !== 'sync' && c.resources.spec(name).primary === host) {
    throw new MarsError('EINVAL', `${host} is the primary of ${name}: it does not ${which} (pause-${which} is for a secondary; run it there, or after a handover)`);
  }
  const resource = c.resources.get(name);
  if (which === 'sync' && (resource?.isPrimaryRole === true || resource?.consistent === true)) {
    throw new MarsError('EINVAL', `no sync of ${name} runs or is due on ${host} (${resource.isPrimaryRole ? 'it is the primary' : 'it is consistent'}): nothing to pause`);
  }
}

function needsLogOf(actual: JsonValue | undefined): number | undefined {
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return undefined;
  const n = actual['needsLog'];
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function numberOf(actual: JsonValue | undefined, key: string): number | undefined {
  if (actual === null || actual === undefined || typeof actual !== 'object' || Array.isArray(actual)) return undefined;
  const n = actual[key];
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function timeoutArg(args: Record<string, unknown>): number {
  const v = args['timeoutMs'];
  if (v === undefined || v === null) return waitClusterTimeoutMsDefault;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > clusterCommandTimeoutMsMax) throw new MarsError('EINVAL', `timeout must be 1 to ${clusterCommandTimeoutMsMax} ms`);
  return v;
}
