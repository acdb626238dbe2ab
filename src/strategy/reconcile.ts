/**
 * The reconciler's decision, pure: from what the metadata says of one resource (the
 * switches the operator set, the cluster-wide choices) and what this host has of it
 * locally, the next step toward the desired state. The daemon carries out one step,
 * looks again, and repeats until nothing is left but to report the indicator; it runs on
 * every change of the resource's keys, not on a scan interval. Every step is restartable:
 * after a crash the daemon reads both sides again and continues where it stopped.
 *
 *   metadata (desired)                          local (actual)
 *   cluster/host/HOST lists R  -> member         resource-R/ absent | on disk | loaded
 *   resource/R/desired/HOST    -> {attach}       recovering | serving | failed | stopped
 *   resource/R/primary, size, data/HOST          the primary it was told last
 */
import type { JsonValue } from '../meta/index.js';
import type { ResourceSpec } from './resource-spec.js';

/** What this host has of a resource locally. */
export type LocalKind = 'absent' | 'on-disk' | 'recovering' | 'serving' | 'failed' | 'stopped';

export interface LocalState {
  readonly kind: LocalKind;
  /** The designated primary the local resource was last told (resource.json). */
  readonly primary: string | undefined;
  readonly failure: string | undefined;
  /** The size the local resource has (resource.json). */
  readonly sizeBytes?: number;
  /**
   * Whether this host, designated primary while it runs as a secondary, may take over now
   * (the daemon decides from the other members' indicators and its own replay): a planned
   * handover waits until the old primary stopped serving and its log is replayed here; a
   * forced one does not wait.
   */
  readonly handover?: { readonly ready: boolean; readonly reason?: string };
  /** The replication switches a loaded resource applies now. */
  readonly switches?: Switches;
  /** What the indicator reports besides the state (a secondary's consistency, the log it needs, its version). */
  readonly report?: Readonly<Record<string, JsonValue>>;
}

/** The replication switches of a secondary. */
export interface Switches {
  readonly fetch: boolean;
  readonly replay: boolean;
  readonly sync: boolean;
}

/** The indicator `resource/R/actual/HOST`: what this host's daemon reports. */
export interface Actual {
  readonly state: LocalKind | 'detached' | 'waiting' | 'unconfigured';
  /** The resource is exported here (this host is its primary and serves it). */
  readonly isPrimary: boolean;
  readonly reason?: string;
  /** The lowest log number this host still needs (log deletion waits for it). */
  readonly needsLog?: JsonValue;
  /** A secondary's copy is consistent. */
  readonly consistent?: JsonValue;
  /** The last version of this host's version chain. */
  readonly version?: JsonValue;
}

export type Step =
  | { readonly kind: 'create'; readonly device: string; readonly sizeBytes: number; readonly primary: string }
  | { readonly kind: 'load' }
  | { readonly kind: 'start' }
  | { readonly kind: 'stop' }
  | { readonly kind: 'set-primary'; readonly primary: string }
  | { readonly kind: 'switches'; readonly switches: Switches }
  | { readonly kind: 'resize'; readonly sizeBytes: number }
  | { readonly kind: 'delete' }
  | { readonly kind: 'report'; readonly actual: Actual }
  | { readonly kind: 'none' };

const running = new Set<LocalKind>(['recovering', 'serving']);

/** The next step for one resource on `host`. */
export function nextStep(host: string, spec: ResourceSpec, local: LocalState): Step {
  // leave-resource: stop, then remove the local data (the device stays as it is).
  if (!spec.member) return running.has(local.kind) ? { kind: 'stop' } : local.kind === 'stopped' || local.kind === 'failed' ? { kind: 'delete' } : { kind: 'none' };
  if (spec.deleted) return running.has(local.kind) ? { kind: 'stop' } : { kind: 'delete' };
  if (!spec.desired.attach) {
    if (running.has(local.kind)) return { kind: 'stop' };
    return report({ ...(local.report ?? {}), state: 'detached', isPrimary: false });
  }
  const { device, sizeBytes, primary } = spec;
  if (device === undefined || sizeBytes === undefined || primary === undefined) {
    return report({ state: 'unconfigured', isPrimary: false, reason: missingReason(spec) });
  }
  // primary '' = none designated (`secondary R`): every member runs as a secondary.
  switch (local.kind) {
    case 'absent':
      return { kind: 'create', device, sizeBytes, primary };
    case 'on-disk':
      return { kind: 'load' };
    case 'stopped':
      // Learn a new designation before starting, except to become primary: that host
      // starts in its old role and takes over only once the handover allows it.
      if (local.primary !== primary && primary !== host) return { kind: 'set-primary', primary };
      return { kind: 'start' };
    case 'recovering':
    case 'serving':
    case 'failed':
      // The operator's switches take effect in every phase, a handover's included: a
      // paused replay must be resumable while this host waits to become primary.
      if (local.switches !== undefined && !sameSwitches(local.switches, spec.desired)) {
        return { kind: 'switches', switches: { fetch: spec.desired.fetch, replay: spec.desired.replay, sync: spec.desired.sync } };
      }
      if (local.primary !== primary) {
        if (primary === host && local.kind === 'serving' && local.handover?.ready !== true) {
          return report({ ...actualOf(host, local.primary ?? '', local), reason: becomingPrimaryReason(spec.name, host, local) });
        }
        return { kind: 'set-primary', primary };
      }
      if (local.sizeBytes !== undefined && local.sizeBytes < sizeBytes && local.kind === 'serving') return { kind: 'resize', sizeBytes };
      return report(actualOf(host, primary, local));
  }
}

/**
 * What a host waiting to become primary reports: why it waits, and the commands that
 * finish the handover at once or undo it (hand the role back to the host it came from).
 */
export function becomingPrimaryReason(name: string, host: string, local: LocalState): string {
  const why = local.handover?.reason ?? 'waiting';
  const from = local.primary ?? '';
  const undo = from === '' || from === host ? '' : `; undo: marsadm primary ${name} on ${from}`;
  return `becoming primary: ${why}${undo}; finish at once, with what ${host} has: marsadm primary ${name} --force on ${host}`;
}

function sameSwitches(a: Switches, b: Switches): boolean {
  return a.fetch === b.fetch && a.replay === b.replay && a.sync === b.sync;
}

function report(actual: Actual): Step {
  return { kind: 'report', actual };
}

function missingReason(spec: ResourceSpec): string {
  const missing = [spec.device === undefined ? 'data' : '', spec.sizeBytes === undefined ? 'size' : '', spec.primary === undefined ? 'primary' : ''];
  return `waiting for the keys ${missing.filter((m) => m !== '').join(', ')} of ${spec.name}`;
}

/** The indicator for a resource this host has loaded. */
export function actualOf(host: string, primary: string, local: LocalState): Actual {
  const isPrimary = local.kind === 'serving' && primary === host;
  const base: Actual = { ...(local.report ?? {}), state: local.kind, isPrimary };
  return local.failure === undefined ? base : { ...base, reason: local.failure };
}
