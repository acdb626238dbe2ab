/**
 * One versioned metadata value and the merge rule. The order of versions is total:
 * Lamport stamp, then writer, then tombstone over value, then the value's canonical
 * bytes. Merging keeps the greater version, so the merge is commutative, associative and
 * idempotent, and every host that has seen the same versions holds the same value.
 *
 * A tombstone also carries `seenBy`, the hosts known to hold it. Two copies of the same
 * tombstone merge by union of their `seenBy`; once it covers every member of the scope,
 * the tombstone can be purged (see meta-node.ts).
 */
import { xxh64 } from '@node-rs/xxhash';
import { crc32c } from '@node-rs/crc32';
import type { JsonValue } from './json-value.js';
import { digestBucketsCount } from './limits.js';

export interface Entry {
  /** The value; null for a tombstone. */
  readonly value: JsonValue;
  /** The Lamport stamp of the write (a hybrid clock: about microseconds since the epoch). */
  readonly lamport: bigint;
  /** The host that wrote this version (the key's owner, for an owned key). */
  readonly owner: string;
  /** A tombstone: the key was deleted. */
  readonly deleted: boolean;
  /** For a tombstone: the hosts known to hold it, sorted, unique. Empty for a value. */
  readonly seenBy: readonly string[];
  /**
   * For an owned key: the owner's Ed25519 signature (base64) over the key and this version
   * (signing.ts). Not part of the version's order or hash: a version has one valid signature.
   */
  readonly sig?: string;
}

export function liveEntry(value: JsonValue, lamport: bigint, owner: string): Entry {
  return { value, lamport, owner, deleted: false, seenBy: [] };
}

export function tombstone(lamport: bigint, owner: string, seenBy: readonly string[]): Entry {
  return { value: null, lamport, owner, deleted: true, seenBy: sortedUnique(seenBy) };
}

function sortedUnique(names: readonly string[]): string[] {
  return [...new Set(names)].sort();
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders two versions (ignoring `seenBy`): negative if a is older than b, 0 if the same version. */
export function compareVersions(a: Entry, b: Entry): number {
  if (a.lamport !== b.lamport) return a.lamport < b.lamport ? -1 : 1;
  const byOwner = compareStrings(a.owner, b.owner);
  if (byOwner !== 0) return byOwner;
  if (a.deleted !== b.deleted) return a.deleted ? 1 : -1;
  return compareStrings(JSON.stringify(a.value), JSON.stringify(b.value));
}

/** The merge of two copies of one key: the newer version; for the same version, seen-by sets united. */
export function mergeEntry(local: Entry | undefined, incoming: Entry): Entry {
  if (local === undefined) return incoming;
  const order = compareVersions(local, incoming);
  if (order > 0) return local;
  if (order < 0) return incoming;
  if (!local.deleted) return local;
  const union = sortedUnique([...local.seenBy, ...incoming.seenBy]);
  if (union.length === local.seenBy.length) return local;
  if (union.length === incoming.seenBy.length) return incoming;
  return { ...local, seenBy: union };
}

/** A tombstone with `host` added to its seen-by set (the same entry if already there or not a tombstone). */
export function withSeenBy(entry: Entry, host: string): Entry {
  if (!entry.deleted || entry.seenBy.includes(host)) return entry;
  return { ...entry, seenBy: sortedUnique([...entry.seenBy, host]) };
}

export function sameEntry(a: Entry, b: Entry): boolean {
  return compareVersions(a, b) === 0 && a.seenBy.length === b.seenBy.length && a.seenBy.every((h, i) => b.seenBy[i] === h);
}

/** A 64-bit hash of a key and its version, seen-by set included (digests sum these). */
export function entryHash(key: string, entry: Entry): bigint {
  const text = `${key}\n${entry.lamport}\n${entry.owner}\n${entry.deleted ? 1 : 0}\n${JSON.stringify(entry.value)}\n${entry.seenBy.join(',')}`;
  return xxh64(text);
}

/** The digest bucket of a key. */
export function bucketOf(key: string): number {
  return crc32c(key) % digestBucketsCount;
}

/** Approximate bytes of an entry in a message, for batch limits. */
export function entrySizeBytes(key: string, entry: Entry): number {
  let size = 96 + (entry.sig === undefined ? 0 : 96) + key.length + JSON.stringify(entry.value).length;
  for (const host of entry.seenBy) size += host.length + 3;
  return size;
}
