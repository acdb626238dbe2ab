/**
 * What the metadata says of one resource, for one host: membership (its host record),
 * the cluster-wide choices (designated primary, size), its device, and the switches the
 * operator set for it (`resource/R/desired/HOST`). Values come from peers, so every field
 * is checked here and a malformed value counts as absent.
 */
import { dataKey, desiredKey, primaryKey, sizeKey, type JsonValue } from '../meta/index.js';

/** The switches of one host for one resource (`resource/R/desired/HOST`). */
export interface Desired {
  /** Have the resource on this host: recovered, and exported where this host is primary. */
  readonly attach: boolean;
}

export interface ResourceSpec {
  readonly name: string;
  readonly member: boolean;
  readonly primary: string | undefined;
  readonly sizeBytes: number | undefined;
  readonly device: string | undefined;
  readonly desired: Desired;
}

export const detachedDesired: Desired = { attach: false };

export function desiredValue(desired: Desired): JsonValue {
  return { attach: desired.attach };
}

export function parseDesired(value: JsonValue | undefined): Desired {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return detachedDesired;
  return { attach: value['attach'] === true };
}

function stringOf(value: JsonValue | undefined): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

function sizeOf(value: JsonValue | undefined): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** Reads the spec of `resource` for `host` through `get` (MetaNode.get). */
export function resourceSpec(get: (key: string) => JsonValue | undefined, host: string, resource: string, member: boolean): ResourceSpec {
  return {
    name: resource,
    member,
    primary: stringOf(get(primaryKey(resource))),
    sizeBytes: sizeOf(get(sizeKey(resource))),
    device: stringOf(get(dataKey(resource, host))),
    desired: parseDesired(get(desiredKey(resource, host))),
  };
}
