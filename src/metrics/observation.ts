/**
 * One observation of this host: what `view all` and `view-hosts` say, turned into the
 * figures the exporter, the status page and the event stream show. Pure: the daemon's
 * status, the stamps read from the logs and the rates measured by the sampler come in; no
 * clock, file or socket is read here.
 */
import type { HostStatus } from '../daemon/daemon.js';
import type { HostLine } from '../daemon/cluster-ops.js';
import { diskStateWords, replStateWords } from '../strategy/index.js';
import { logBytesBetween } from '../log/index.js';
import { lagSecondsOf } from '../daemon/replication-lag.js';

/** The state words of src/strategy/member-state.ts ('Unknown' also stands for "no indicator yet"). */
export const diskStates = diskStateWords;
export const replStates = [...replStateWords, 'Unknown'] as const;
export const roles = ['Primary', 'Secondary'] as const;
export const positionStages = ['log_end', 'durable_end', 'written_back', 'fetched', 'replayed'] as const;
export const lagStages = ['writeback', 'fetch', 'replay'] as const;
export const rateStages = ['write', 'fetch', 'replay', 'sync'] as const;

export type DiskState = (typeof diskStates)[number];
export type ReplState = (typeof replStates)[number];
export type PositionStage = (typeof positionStages)[number];
export type LagStage = (typeof lagStages)[number];
export type RateStage = (typeof rateStages)[number];

export interface PositionFigure {
  stage: PositionStage;
  logNumber: number;
  offsetBytes: number;
}

export interface MemberFigure {
  host: string;
  role: (typeof roles)[number];
  diskState: DiskState;
  replState: ReplState;
  /** This host has a metadata link to the member (itself: always). */
  reachable: boolean;
  emergency: boolean;
  heldBackBytes: number;
  unreachableS: number;
}

export interface ResourceFigure {
  name: string;
  role: (typeof roles)[number];
  primary: string;
  state: string;
  failure: string | null;
  positions: PositionFigure[];
  lagBytes: Partial<Record<LagStage, number>>;
  /** A secondary: how long the oldest write its disk does not hold yet has waited (0: none; the primary: 0; null: unknown, it has not heard from its primary). */
  lagS: number | null;
  ratesBytesPerS: Partial<Record<RateStage, number>>;
  sync: { state: string; sizeBytes: number; doneBytes: number; restBytes: number } | null;
  splitBrain: boolean;
  emergency: boolean;
  holeLogNumber: number;
  /** The sync mode as this host applies it: off (asynchronous), near-sync, fallen-back (the primary only; elsewhere the mode asked for). */
  syncMode: 'off' | 'near-sync' | 'fallen-back';
  /** How often near-sync fell back since marsd started (the serving primary; 0 elsewhere). */
  nearSyncFallbacks: number;
  logFiles: number;
  logBytes: number;
  fetchState: string | null;
  replayState: string | null;
  members: MemberFigure[];
}

export interface Observation {
  host: string;
  clusterId: string;
  timeMs: number;
  hosts: { host: string; address: string; alive: boolean }[];
  space: { sizeBytes: number; freeBytes: number; stage: string } | null;
  resources: ResourceFigure[];
}

/** What the shell measured besides the daemon's status, per resource. */
export interface Measured {
  /** The Lamport stamp (µs) of the oldest record this host's disk does not hold yet, if any was read. */
  oldestUnappliedStampUs?: bigint;
  /** Since when (ms) the disk has been behind with no stamp to read (fetch behind, replay caught up). */
  behindSinceMs?: number;
  /** The lag cannot be told: nothing unapplied is here to read and fetch-rest is unknown. */
  unknown?: true;
  writeRateBytesPerS?: number;
  durable?: { logNumber: number; endOffsetBytes: number };
}

export interface ObservationInput {
  status: HostStatus;
  hosts: readonly HostLine[];
  nowMs: number;
  measured: ReadonlyMap<string, Measured>;
}

type StatusResource = HostStatus['resources'][number];

export function observationOf(input: ObservationInput): Observation {
  const { status } = input;
  const space = status.resources.find((r) => r.space !== null)?.space ?? null;
  return {
    host: status.host,
    clusterId: status.clusterId,
    timeMs: input.nowMs,
    hosts: input.hosts.map((h) => ({ host: h.host, address: h.address, alive: h.state === 'alive' })),
    space: space === null ? null : { sizeBytes: space.sizeBytes, freeBytes: space.freeBytes, stage: space.stage },
    resources: status.resources.map((r) => resourceFigure(r, input.nowMs, input.measured.get(r.name) ?? {}, input.hosts)),
  };
}

function resourceFigure(r: StatusResource, nowMs: number, m: Measured, hosts: readonly HostLine[]): ResourceFigure {
  const replica = r.replica;
  const logger = r.logger;
  const lagBytes: Partial<Record<LagStage, number>> = {};
  const rates: Partial<Record<RateStage, number>> = {};
  if (logger !== undefined) {
    lagBytes.writeback = logBytesBetween(logger.writtenBack, logger.logPosition, r.logFiles);
    if (m.writeRateBytesPerS !== undefined) rates.write = m.writeRateBytesPerS;
  }
  if (replica !== undefined) {
    // Unknown until fetch has heard from its source: no figure rather than a 0 that would say "caught up".
    if (replica.fetch.restBytes !== null) lagBytes.fetch = replica.fetch.restBytes;
    lagBytes.replay = replica.replay.restBytes;
    rates.fetch = replica.fetch.rateBytesPerS;
    rates.replay = replica.replay.rateBytesPerS;
    if (replica.sync !== null) rates.sync = replica.sync.rateBytesPerS;
  }
  // The primary is the source: what it has not written back yet is served from memory and
  // is writeback lag in bytes (its position is saved every few seconds), not replication lag.
  const behind = (lagBytes.fetch ?? 0) > 0 || (lagBytes.replay ?? 0) > 0 || (replica !== undefined && replica.fetch.restBytes === null);
  return {
    name: r.name,
    role: r.role === 'primary' && r.state === 'serving' ? 'Primary' : 'Secondary',
    primary: r.primary,
    state: r.state,
    failure: r.failure ?? null,
    positions: positionsOf(r, m),
    lagBytes,
    lagS: !behind ? 0 : m.unknown === true ? null : lagSecondsOf(nowMs, m),
    ratesBytesPerS: rates,
    sync: replica?.sync == null ? null : { state: replica.sync.state, sizeBytes: replica.sync.sizeBytes, doneBytes: replica.sync.doneBytes, restBytes: replica.sync.restBytes },
    splitBrain: r.splitBrain !== null,
    emergency: r.emergency?.active === true || logger?.mode === 'emergency',
    holeLogNumber: r.emergency?.hole ?? logger?.holeLogNumber ?? 0,
    syncMode: r.syncMode?.state ?? (r.syncMode?.mode === 'near-sync' ? 'near-sync' : 'off'),
    nearSyncFallbacks: r.syncMode?.fallbacks ?? 0,
    logFiles: r.logFiles.length,
    logBytes: r.logFiles.reduce((sum, f) => sum + f.sizeBytes, 0),
    fetchState: replica?.fetch.state ?? null,
    replayState: replica?.replay.state ?? null,
    members: r.members.map((member) => memberFigure(member, isAlive(hosts, member.host))),
  };
}

function isAlive(hosts: readonly HostLine[], host: string): boolean {
  return hosts.find((h) => h.host === host)?.state === 'alive';
}


function positionsOf(r: StatusResource, m: Measured): PositionFigure[] {
  const out: PositionFigure[] = [];
  if (r.logger !== undefined) {
    out.push({ stage: 'log_end', logNumber: r.logger.logPosition.logNumber, offsetBytes: r.logger.logPosition.offsetBytes });
    if (m.durable !== undefined) out.push({ stage: 'durable_end', logNumber: m.durable.logNumber, offsetBytes: m.durable.endOffsetBytes });
    out.push({ stage: 'written_back', logNumber: r.logger.writtenBack.logNumber, offsetBytes: r.logger.writtenBack.offsetBytes });
  }
  const replica = r.replica;
  if (replica !== undefined) {
    const fetchedLog = replica.fetch.logName === null ? undefined : Number(replica.fetch.logName.slice(4, 13));
    if (fetchedLog !== undefined && Number.isSafeInteger(fetchedLog)) out.push({ stage: 'fetched', logNumber: fetchedLog, offsetBytes: replica.fetch.localBytes });
    const p = replica.replay.position;
    if (p !== null) out.push({ stage: 'replayed', logNumber: p.logNumber, offsetBytes: p.offsetBytes });
  }
  return out;
}

function memberFigure(m: StatusResource['members'][number], alive: boolean): MemberFigure {
  return {
    host: m.host,
    role: m.primary ? 'Primary' : 'Secondary',
    diskState: (diskStates as readonly string[]).includes(m.diskState ?? '') ? (m.diskState as DiskState) : 'Unknown',
    replState: (replStates as readonly string[]).includes(m.replState ?? '') ? (m.replState as ReplState) : 'Unknown',
    reachable: alive,
    emergency: m.emergency,
    heldBackBytes: m.heldBackBytes ?? 0,
    unreachableS: m.unreachableS ?? 0,
  };
}
