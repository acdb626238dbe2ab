/**
 * The key grammar. A key says by its shape which scope it belongs to (the whole cluster,
 * or one resource, whose keys travel only among that resource's members) and whether one
 * host owns it (only that host writes it, so it never conflicts) or it is a shared
 * cluster-wide choice (last writer wins by Lamport stamp):
 *
 *   cluster/NAME                 shared, cluster scope          e.g. cluster/policy
 *   cluster/NAME/HOST            owned by HOST, cluster scope   e.g. cluster/host/HOST
 *   resource/R/NAME              shared, scope of R             e.g. resource/R/primary
 *   resource/R/NAME/HOST         owned by HOST, scope of R      e.g. resource/R/replay/HOST
 */
import { MarsError } from '../core/errors.js';
import { keyBytesMax, nameBytesMax } from './limits.js';

/** `cluster` or `resource/R`. */
export type ScopeId = string;

export const clusterScope: ScopeId = 'cluster';

export interface KeyInfo {
  readonly key: string;
  readonly scope: ScopeId;
  /** The resource of a resource-scope key. */
  readonly resource: string | undefined;
  /** The key's name segment (host, primary, replay, ...). */
  readonly name: string;
  /** The host that owns the key; undefined for a shared (last-writer-wins) key. */
  readonly owner: string | undefined;
}

const namePattern = /^[a-z][a-z0-9-]{0,31}$/;
const hostPattern = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,${nameBytesMax - 1}}$`);

/** Host, resource and cluster names: ASCII letters, digits, '.', '_', '-'; not starting with a sign. */
export function isValidName(name: string): boolean {
  return hostPattern.test(name);
}

/** Parses a key, or returns undefined when it does not follow the grammar. */
export function parseKey(key: string): KeyInfo | undefined {
  if (key.length > keyBytesMax) return undefined;
  const parts = key.split('/');
  const [first, second, third, fourth] = parts;
  if (first === 'cluster' && second !== undefined && parts.length <= 3) {
    if (!namePattern.test(second)) return undefined;
    if (third !== undefined && !isValidName(third)) return undefined;
    return { key, scope: clusterScope, resource: undefined, name: second, owner: third };
  }
  if (first === 'resource' && second !== undefined && third !== undefined && parts.length <= 4) {
    if (!isValidName(second) || !namePattern.test(third)) return undefined;
    if (fourth !== undefined && !isValidName(fourth)) return undefined;
    return { key, scope: resourceScope(second), resource: second, name: third, owner: fourth };
  }
  return undefined;
}

/** Parses a key or throws EINVAL (for keys from our own callers). */
export function parseKeyOrThrow(key: string): KeyInfo {
  const info = parseKey(key);
  if (info === undefined) throw new MarsError('EINVAL', `bad metadata key ${JSON.stringify(key)}`);
  return info;
}

export function resourceScope(resource: string): ScopeId {
  return `resource/${resource}`;
}

/** The resource of a scope id, or undefined for the cluster scope. */
export function scopeResource(scope: ScopeId): string | undefined {
  return scope.startsWith('resource/') ? scope.slice('resource/'.length) : undefined;
}

export function isValidScope(scope: string): boolean {
  if (scope === clusterScope) return true;
  const resource = scopeResource(scope);
  return resource !== undefined && isValidName(resource);
}

// Well-known keys. Other areas add their own names; these are the ones the core reads.

/** The host record: its peer address and the resources it is a member of. */
export function hostKey(host: string): string {
  return `cluster/host/${host}`;
}

/** The designated primary of a resource (shared: last writer wins). */
export function primaryKey(resource: string): string {
  return `resource/${resource}/primary`;
}

/** What the operator wants of HOST for resource R (a switch, set by marsadm on HOST). */
export function desiredKey(resource: string, host: string): string {
  return `resource/${resource}/desired/${host}`;
}

/** What HOST's daemon reports it has done for resource R (an indicator). */
export function actualKey(resource: string, host: string): string {
  return `resource/${resource}/actual/${host}`;
}

/** The size in bytes of a resource (shared: set by create-resource, later by resize). */
export function sizeKey(resource: string): string {
  return `resource/${resource}/size`;
}

/** delete-resource: every member removes R (shared; create-resource of the same name sets it false). */
export function deletedKey(resource: string): string {
  return `resource/${resource}/deleted`;
}

/** HOST's underlying device for resource R (the original's `data-HOST`). */
export function dataKey(resource: string, host: string): string {
  return `resource/${resource}/data/${host}`;
}

/**
 * Members removed by `leave-resource R --host DEAD` from another member (shared: a sorted
 * list of host names, last writer wins). They no longer count as members; a removed host
 * that comes back leaves R by itself and takes its name off the list.
 */
export function evictedKey(resource: string): string {
  return `resource/${resource}/evicted`;
}

/** The host names of an `evicted` value (anything else reads as none). */
export function evictedHosts(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/**
 * Hosts that REMOVER took off the cluster's host list with `leave-cluster --host DEAD`
 * (owned by REMOVER, so signed by it: a sorted list of host names). Every member unions
 * these lists and treats a listed host as gone; a listed host that runs again stops.
 */
export function removedKey(remover: string): string {
  return `cluster/removed/${remover}`;
}

/** The host names of a `removed` value (anything else reads as none). */
export function removedHosts(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** The last merge-cluster: the identity the merged side adopts (shared, last writer wins). */
export const mergeKey = 'cluster/merge';
