/**
 * The entries of one scope with a digest kept up to date on every change: the sum, modulo
 * 2^64, of the hashes of the entries, per bucket and in all. Two hosts compare the root
 * first, then the bucket sums, then the keys of differing buckets; the cost of
 * anti-entropy follows the difference, not the size of the scope.
 */
import { bucketOf, entryHash, type Entry } from './entry.js';
import type { ScopeId } from './keys.js';
import { digestBucketsCount } from './limits.js';

/** An entry with its hash and bucket; immutable, so tables may share it. */
export interface Held {
  readonly entry: Entry;
  readonly hash: bigint;
  readonly bucket: number;
}

const sumMask = (1n << 64n) - 1n;

/** Entries are immutable: the held form of an entry object is computed once (tables share it). */
const heldMemo = new WeakMap<Entry, { readonly key: string; readonly held: Held }>();

export function holdEntry(key: string, entry: Entry): Held {
  const memo = heldMemo.get(entry);
  if (memo?.key === key) return memo.held;
  const held = { entry, hash: entryHash(key, entry), bucket: bucketOf(key) };
  heldMemo.set(entry, { key, held });
  return held;
}

export class ScopeTable {
  private readonly held = new Map<string, Held>();
  private readonly bucketSums: bigint[] = new Array<bigint>(digestBucketsCount).fill(0n);
  private rootSum = 0n;
  /** Keys whose entry is a tombstone (candidates for purging). */
  private readonly tombstoneKeys = new Set<string>();

  constructor(readonly scope: ScopeId) {}

  get size(): number {
    return this.held.size;
  }

  get(key: string): Entry | undefined {
    return this.held.get(key)?.entry;
  }

  getHeld(key: string): Held | undefined {
    return this.held.get(key);
  }

  /** Replaces (or adds) the entry of a key. */
  put(key: string, entry: Entry): void {
    this.putHeld(key, holdEntry(key, entry));
  }

  putHeld(key: string, next: Held): void {
    const previous = this.held.get(key);
    if (previous !== undefined) this.account(previous, -1n);
    this.held.set(key, next);
    this.account(next, 1n);
    if (next.entry.deleted) this.tombstoneKeys.add(key);
    else this.tombstoneKeys.delete(key);
  }

  /** Forgets a key entirely (tombstone purge). */
  remove(key: string): void {
    const previous = this.held.get(key);
    if (previous === undefined) return;
    this.account(previous, -1n);
    this.held.delete(key);
    this.tombstoneKeys.delete(key);
  }

  private account(h: Held, sign: bigint): void {
    const bucket = this.bucketSums[h.bucket] ?? 0n;
    this.bucketSums[h.bucket] = (bucket + sign * h.hash) & sumMask;
    this.rootSum = (this.rootSum + sign * h.hash) & sumMask;
  }

  root(): bigint {
    return this.rootSum;
  }

  buckets(): readonly bigint[] {
    return this.bucketSums;
  }

  tombstones(): ReadonlySet<string> {
    return this.tombstoneKeys;
  }

  keys(): IterableIterator<string> {
    return this.held.keys();
  }

  heldEntries(): IterableIterator<[string, Held]> {
    return this.held.entries();
  }

  /** A copy sharing the (immutable) held entries. */
  clone(): ScopeTable {
    const copy = new ScopeTable(this.scope);
    for (const [key, h] of this.held) copy.held.set(key, h);
    copy.bucketSums.splice(0, digestBucketsCount, ...this.bucketSums);
    copy.rootSum = this.rootSum;
    for (const key of this.tombstoneKeys) copy.tombstoneKeys.add(key);
    return copy;
  }
}
