/**
 * Bandwidth limits of one host for the bulk data it receives: log fetch and sync, each
 * limited per host (`marsd --fetch-rate`, `--sync-rate`) and per resource (`marsadm
 * set-rate R`), all changeable at run time (`marsadm set-rate [R] --fetch RATE --sync RATE`).
 * A host's limit is one token bucket shared by every resource; a resource's limit is its
 * own bucket; bytes are charged to both and the slower one paces.
 *
 * Fetch is paced by its credit (src/fetch/client.ts): while limited, the client lets the
 * source send at most `windowBytes` ahead and renews the credit only once the buckets are
 * out of debt, so the source never bursts more than that window above the rate.
 *
 * Sync yields to fetch: while any fetch of this host is behind its source by more than
 * `fetchBehindBytes`, no sync asks for new ranges (the ranges in flight finish). A
 * secondary that falls behind is not made worse by a sync running beside it; once fetch
 * has caught up, sync goes on.
 */
import type { Clock } from '../core/clock.js';
import { systemTimers, waitAtMost, type Timers } from '../core/timers.js';
import { MarsError } from '../core/errors.js';
import { TokenBucket } from '../sync/token-bucket.js';
import { fetchWindowBytes } from '../fetch/limits.js';

export type BulkKind = 'fetch' | 'sync';

/** A fetch this many bytes behind its source makes syncs wait. */
export const fetchBehindBytes = 4 * 1024 * 1024;

/** How long a yielding sync waits before it looks again. */
export const syncYieldMs = 100;

/** A limited fetch's credit window: this much time at the rate, within [fetchWindowBytesMin, fetchWindowBytes]. */
export const limitedWindowS = 0.25;
export const fetchWindowBytesMin = 64 * 1024;

/** Bucket burst: a limited fetch window, or two sync ranges. */
const syncBurstBytes = 2 * 1024 * 1024;

/** How long set-rate waits for the fetches to run under a changed limit. */
export const applyMsMax = 5_000;

/** Rates above this are refused as typos (1 TiB/s). */
export const rateBytesPerSMax = 1024 ** 4;

const rateSuffixes: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * Parses a rate: BYTES per second with an optional binary suffix K, M or G (`50M`), or
 * `unlimited`. Returns 0 for unlimited. Zero, negative, fractional-byte or non-numeric
 * text is EINVAL with one line saying what is expected.
 */
export function parseRate(text: string, what: string): number {
  const t = text.trim();
  if (t === 'unlimited') return 0;
  const match = /^(\d+(?:\.\d+)?)([KMG]?)(?:\/s)?$/i.exec(t);
  const n = match === null ? Number.NaN : Math.round(Number(match[1]) * rateSuffixes[match[2]!.toUpperCase()]!);
  if (!Number.isSafeInteger(n) || n < 1 || n > rateBytesPerSMax) {
    const why = match !== null && n < 1 ? 'a rate of 0 would stop it (use pause-fetch or pause-sync for that)' : 'expected bytes per second, e.g. 50M (suffixes K, M, G), or unlimited';
    throw new MarsError('EINVAL', `bad ${what} '${text}': ${why}`);
  }
  return n;
}

export function formatRateLimit(bytesPerS: number): string {
  if (bytesPerS === 0) return 'unlimited';
  for (const [suffix, unit] of [['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) if (bytesPerS >= unit && bytesPerS % unit === 0) return `${bytesPerS / unit}${suffix}/s`;
  return `${bytesPerS}/s`;
}

/** What fetch and sync see: charge bytes, ask how long to wait, (fetch) how far ahead to let the source send. */
export interface Pacer {
  take(bytes: number): void;
  delayMs(): number;
  windowBytes(): number;
  /** The tightest limit that applies (bytes per second, 0 = none), for view. */
  limitBytesPerS(): number;
  /** Calls the listener whenever a limit changes (it resolves once the change is in force); returns the unsubscribe function. */
  subscribe(listener: () => Promise<void>): () => void;
}

export interface RateLimits {
  fetch: number;
  sync: number;
}

export class Bandwidth {
  private readonly host: Record<BulkKind, TokenBucket>;
  private readonly perResource = new Map<string, Record<BulkKind, TokenBucket>>();
  /** How far each resource's fetch is behind its source (bytes), as last reported. */
  private readonly behind = new Map<string, number>();
  private readonly listeners = new Set<() => Promise<void>>();

  constructor(private readonly clock: Clock, host: Partial<RateLimits> = {}, private readonly timers: Timers = systemTimers) {
    this.host = { fetch: this.bucket('fetch', host.fetch ?? 0), sync: this.bucket('sync', host.sync ?? 0) };
  }

  /** The host's limits and those of each resource that has one (0 = unlimited). */
  limits(): { host: RateLimits; resources: Record<string, RateLimits> } {
    const resources: Record<string, RateLimits> = {};
    for (const [name, b] of [...this.perResource].sort(([a], [b]) => a.localeCompare(b))) {
      if (b.fetch.rateBytesPerS > 0 || b.sync.rateBytesPerS > 0) resources[name] = { fetch: b.fetch.rateBytesPerS, sync: b.sync.rateBytesPerS };
    }
    return { host: { fetch: this.host.fetch.rateBytesPerS, sync: this.host.sync.rateBytesPerS }, resources };
  }

  /**
   * Sets a limit of the host (resource undefined) or of one resource; 0 removes it.
   * Resolves once every fetch runs under it (a credit granted before reaches no further
   * than the new window), or after `applyMsMax`.
   */
  async setLimit(resource: string | undefined, kind: BulkKind, bytesPerS: number): Promise<void> {
    if (!(Number.isSafeInteger(bytesPerS) && bytesPerS >= 0 && bytesPerS <= rateBytesPerSMax)) throw new MarsError('EINVAL', `bad ${kind} rate ${bytesPerS}`);
    const buckets = resource === undefined ? this.host : this.resourceBuckets(resource);
    buckets[kind].setRate(bytesPerS);
    const applied = Promise.all([...this.listeners].map((listener) => listener()));
    await waitAtMost(this.timers, applyMsMax, applied);
  }

  /** A fetch reports how far behind its source it is (0 once caught up, or when it stops). */
  noteFetchBehind(resource: string, bytes: number): void {
    if (bytes > 0) this.behind.set(resource, bytes);
    else this.behind.delete(resource);
  }

  /** Whether some fetch of this host is behind enough that syncs wait. */
  fetchIsBehind(): boolean {
    for (const bytes of this.behind.values()) if (bytes > fetchBehindBytes) return true;
    return false;
  }

  pacer(resource: string, kind: BulkKind): Pacer {
    const buckets = (): TokenBucket[] => [this.host[kind], this.resourceBuckets(resource)[kind]];
    const limit = (): number => {
      const rates = buckets().map((b) => b.rateBytesPerS).filter((r) => r > 0);
      return rates.length === 0 ? 0 : Math.min(...rates);
    };
    return {
      take: (bytes) => {
        for (const b of buckets()) b.take(bytes);
      },
      delayMs: () => {
        const wait = Math.max(...buckets().map((b) => b.delayMs()));
        if (kind === 'sync' && this.fetchIsBehind()) return Math.max(wait, syncYieldMs);
        return wait;
      },
      windowBytes: () => {
        const rate = limit();
        if (rate === 0) return fetchWindowBytes;
        return Math.max(fetchWindowBytesMin, Math.min(fetchWindowBytes, Math.round(rate * limitedWindowS)));
      },
      limitBytesPerS: limit,
      subscribe: (listener) => {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
      },
    };
  }

  private resourceBuckets(resource: string): Record<BulkKind, TokenBucket> {
    let b = this.perResource.get(resource);
    if (b === undefined) {
      b = { fetch: this.bucket('fetch', 0), sync: this.bucket('sync', 0) };
      this.perResource.set(resource, b);
    }
    return b;
  }

  private bucket(kind: BulkKind, rate: number): TokenBucket {
    return new TokenBucket(this.clock, rate, kind === 'fetch' ? fetchWindowBytesMin : syncBurstBytes);
  }
}
