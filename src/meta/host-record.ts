/**
 * The host record, `cluster/host/HOST`: written by HOST alone (join-cluster, join-resource,
 * leave-resource), spread to every host by gossip. It is the source of membership: the
 * hosts of the cluster are the hosts with a live record, and the members of resource R
 * are the hosts whose record lists R.
 *
 *   { "address": "127.0.0.2:7777", "resources": ["r1", "r2"], "signKey": "BASE64 OF 32 BYTES" }
 */
import type { JsonValue } from './json-value.js';
import { isRecord } from './entry-codec.js';
import { isValidName } from './keys.js';
import { hostResourcesMax } from './limits.js';

export interface HostRecord {
  /** Where peers connect to this host: "HOST:PORT" (or "[IPv6]:PORT"). */
  readonly address: string;
  readonly resources: readonly string[];
  /** The host's Ed25519 public key (base64 of 32 bytes), pinned by every host on first sight. */
  readonly signKey?: string;
}

const addressBytesMax = 300;
const signKeyBytesMax = 64;

export function hostRecordValue(record: HostRecord): JsonValue {
  const value = { address: record.address, resources: [...new Set(record.resources)].sort() };
  return record.signKey === undefined ? value : { ...value, signKey: record.signKey };
}

/** Values are immutable: a record object is parsed once (hosts hold one per cluster member). */
const parsedMemo = new WeakMap<object, HostRecord>();

/** The record in a value; a malformed value counts as a host without resources. */
export function parseHostRecord(value: JsonValue): HostRecord {
  if (!isRecord(value)) return { address: '', resources: [] };
  const memo = parsedMemo.get(value);
  if (memo !== undefined) return memo;
  const record = parseRecordFields(value);
  parsedMemo.set(value, record);
  return record;
}

function parseRecordFields(value: Record<string, unknown>): HostRecord {
  const address = typeof value['address'] === 'string' && value['address'].length <= addressBytesMax ? value['address'] : '';
  const list = value['resources'];
  const resources = Array.isArray(list) ? list.filter((r): r is string => typeof r === 'string' && isValidName(r)).slice(0, hostResourcesMax) : [];
  const signKey = value['signKey'];
  return typeof signKey === 'string' && signKey.length <= signKeyBytesMax ? { address, resources, signKey } : { address, resources };
}

/** A host's own record value with its public key added (MetaNode does this on every write of it). */
export function withSignKey(value: JsonValue, signKey: string): JsonValue {
  return isRecord(value) ? { ...value, signKey } : value;
}
