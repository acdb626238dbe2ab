/**
 * The pure steps of anti-entropy between two hosts: which buckets differ, which keys of
 * them each side holds, and what to send or ask for. Every list is cut at a named limit;
 * what is cut is found again in the next round, so progress never depends on one
 * exchange carrying everything.
 */
import { entrySizeBytes } from './entry.js';
import type { ScopeId } from './keys.js';
import { batchBytesMax, batchEntriesMax, digestBucketsCount, wantKeysMax } from './limits.js';
import type { KeyedEntry, KeySummary } from './messages.js';
import type { ScopeTable } from './scope-table.js';

export const allBuckets: readonly number[] = Array.from({ length: digestBucketsCount }, (_, i) => i);

/** Buckets whose sums differ from the peer's. */
export function differingBuckets(table: ScopeTable | undefined, sums: readonly bigint[]): number[] {
  const ours = table?.buckets();
  const out: number[] = [];
  for (let i = 0; i < digestBucketsCount; i++) if ((ours?.[i] ?? 0n) !== sums[i]) out.push(i);
  return out;
}

/**
 * The (key, hash) pairs of the given buckets, whole buckets only, starting at bucket
 * index `start` (rotated by the caller so that a cut never starves the same buckets).
 */
export function keySummary(scope: ScopeId, table: ScopeTable | undefined, buckets: readonly number[], itemsMax: number, start: number): KeySummary {
  const wanted = new Set(buckets);
  const groups = new Map<number, { key: string; hash: bigint }[]>();
  for (const bucket of buckets) groups.set(bucket, []);
  if (table !== undefined) {
    for (const [key, held] of table.heldEntries()) {
      if (wanted.has(held.bucket)) groups.get(held.bucket)?.push({ key, hash: held.hash });
    }
  }
  const covered: number[] = [];
  const items: { key: string; hash: bigint }[] = [];
  for (let i = 0; i < buckets.length; i++) {
    const bucket = buckets[(start + i) % buckets.length]!;
    const group = groups.get(bucket) ?? [];
    if (items.length + group.length > itemsMax) continue;
    covered.push(bucket);
    items.push(...group);
  }
  return { scope, kind: 'keys', buckets: covered.sort((a, b) => a - b), items };
}

export interface KeyDiff {
  /** Our entries the peer lacks or holds differently. */
  readonly send: KeyedEntry[];
  /** Keys the peer holds that we lack or hold differently. */
  readonly want: string[];
}

/** Compares our keys of the covered buckets with the peer's summary of them. */
export function diffKeys(table: ScopeTable | undefined, summary: KeySummary): KeyDiff {
  const covered = new Set(summary.buckets);
  const theirs = new Map<string, bigint>();
  for (const item of summary.items) theirs.set(item.key, item.hash);
  const send: KeyedEntry[] = [];
  const want: string[] = [];
  if (table !== undefined) {
    for (const [key, held] of table.heldEntries()) {
      if (covered.has(held.bucket) && theirs.get(key) !== held.hash) send.push({ key, entry: held.entry });
    }
  }
  for (const [key, hash] of theirs) {
    if (want.length >= wantKeysMax) break;
    if (table?.getHeld(key)?.hash !== hash) want.push(key);
  }
  return { send, want };
}

/** Splits entries into batches within `batchEntriesMax` and `batchBytesMax` (at least one entry each). */
export function splitBatches(entries: readonly KeyedEntry[]): KeyedEntry[][] {
  const batches: KeyedEntry[][] = [];
  let current: KeyedEntry[] = [];
  let bytes = 0;
  for (const item of entries) {
    const size = entrySizeBytes(item.key, item.entry);
    if (current.length > 0 && (current.length >= batchEntriesMax || bytes + size > batchBytesMax)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
