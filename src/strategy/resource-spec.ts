/**
 * What the metadata says of one resource, for one host: membership (its host record),
 * the cluster-wide choices (designated primary, size), its device, and the switches the
 * operator set for it (`resource/R/desired/HOST`). Values come from peers, so every field
 * is checked here and a malformed value counts as absent.
 */
import { dataKey, deletedKey, desiredKey, primaryKey, sizeKey, type JsonValue } from '../meta/index.js';

/** The switches of one host for one resource (`resource/R/desired/HOST`). */
export interface Desired {
  /** Have the resource on this host: recovered, and exported where this host is primary. */
  readonly attach: boolean;
  /** A secondary fetches the primary's log (pause-fetch / disconnect turn it off). */
  readonly fetch: boolean;
  /** A secondary replays its fetched log onto its disk (pause-replay). */
  readonly replay: boolean;
  /** A secondary that needs a full sync runs it (pause-sync). */
  readonly sync: boolean;
  /** `primary --force`: take over without waiting for the old primary (cleared once primary). */
  readonly force: boolean;
}

export interface ResourceSpec {
  readonly name: string;
  readonly member: boolean;
  readonly primary: string | undefined;
  readonly sizeBytes: number | undefined;
  readonly device: string | undefined;
  readonly desired: Desired;
  /** delete-resource was run: every member removes the resource. */
  readonly deleted: boolean;
}

export const detachedDesired: Desired = { attach: false, fetch: true, replay: true, sync: true, force: false };

/** The stored value; the replication switches are written only when off, so that older values read as "all on". */
export function desiredValue(desired: Partial<Desired> & { attach: boolean }): JsonValue {
  const value: Record<string, boolean> = { attach: desired.attach };
  for (const key of ['fetch', 'replay', 'sync'] as const) if (desired[key] === false) value[key] = false;
  if (desired.force === true) value['force'] = true;
  return value;
}

export function parseDesired(value: JsonValue | undefined): Desired {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return detachedDesired;
  return { attach: value['attach'] === true, fetch: value['fetch'] !== false, replay: value['replay'] !== false, sync: value['sync'] !== false, force: value['force'] === true };
}

function stringOf(value: JsonValue | undefined): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** The designated primary: a host name, or '' when none is designated (after `secondary`). */
function primaryOf(value: JsonValue | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function sizeOf(value: JsonValue | undefined): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** Reads the spec of `resource` for `host` through `get` (MetaNode.get). */
export function resourceSpec(get: (key: string) => JsonValue | undefined, host: string, resource: string, member: boolean): ResourceSpec {
  return {
    name: resource,
    member,
    primary: primaryOf(get(primaryKey(resource))),
    sizeBytes: sizeOf(get(sizeKey(resource))),
    device: stringOf(get(dataKey(resource, host))),
    desired: parseDesired(get(desiredKey(resource, host))),
    deleted: get(deletedKey(resource)) === true,
  };
}
