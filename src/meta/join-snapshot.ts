/**
 * What a member hands a host that joins (join-cluster) or a cluster that merges
 * (merge-cluster): the live entries of the cluster scope, in batches within the message
 * limits, then the digest of exactly those entries, so that the receiver can tell that it
 * got all of them. Tombstones are left out: the new host learns them, if it still needs
 * them, by anti-entropy once its daemon runs. Pure: the shells carry the messages.
 */
import { splitBatches } from './anti-entropy.js';
import type { Entry } from './entry.js';
import { clusterScope, parseKey } from './keys.js';
import type { KeyedEntry, ScopeDigest } from './messages.js';
import { scopeKeysMax } from './limits.js';
import { ScopeTable } from './scope-table.js';

export interface JoinSnapshot {
  readonly batches: readonly (readonly KeyedEntry[])[];
  readonly digest: ScopeDigest;
}

/** The root of a set of cluster entries, as a digest. */
export function clusterDigestOf(entries: Iterable<readonly [string, Entry]>): ScopeDigest {
  const table = new ScopeTable(clusterScope);
  for (const [key, entry] of entries) table.put(key, entry);
  return { scope: clusterScope, root: table.root(), count: table.size };
}

/** The snapshot of a node's cluster scope (`exportScope(clusterScope)`). */
export function joinSnapshot(cluster: ReadonlyMap<string, Entry>): JoinSnapshot {
  const live: KeyedEntry[] = [];
  for (const [key, entry] of cluster) if (!entry.deleted) live.push({ key, entry });
  live.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { batches: splitBatches(live), digest: clusterDigestOf(live.map((e) => [e.key, e.entry] as const)) };
}

/** Collects a snapshot on the receiving side; `finish` says whether it is complete. */
export class JoinSnapshotReceiver {
  private readonly entries = new Map<string, Entry>();

  /** Adds a batch; returns an error text for entries that cannot belong to a snapshot. */
  add(batch: readonly KeyedEntry[]): string | undefined {
    for (const { key, entry } of batch) {
      if (parseKey(key)?.scope !== clusterScope) return `key ${key} is not a cluster key`;
      if (entry.deleted) return `key ${key} is a tombstone`;
      if (!this.entries.has(key) && this.entries.size >= scopeKeysMax) return `more than ${scopeKeysMax} keys`;
      this.entries.set(key, entry);
    }
    return undefined;
  }

  /** The entries, if they are exactly those the digest describes; else undefined. */
  finish(digest: ScopeDigest): ReadonlyMap<string, Entry> | undefined {
    const mine = clusterDigestOf(this.entries);
    return digest.scope === clusterScope && mine.root === digest.root && mine.count === digest.count ? this.entries : undefined;
  }
}
