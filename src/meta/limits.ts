/**
 * Every limit of the metadata area in one place, with what happens when it is reached.
 * The metadata core is fed by untrusted peers, so every list it builds or accepts is
 * bounded here; the wire codec and the file codec check the same numbers at the edge.
 */
import { LamportClock } from '../core/lamport.js';

/** Bytes of a host, resource or cluster name (ASCII). Longer names are refused at the edge. */
export const nameBytesMax = 64;

/** Bytes of a whole key. Longer keys are refused by `set` and by the codecs. */
export const keyBytesMax = 256;

/** Bytes of one value as canonical JSON. `set` throws EINVAL beyond it; peers' entries beyond it are refused. */
export const valueBytesMax = 16 * 1024;

/** Hosts in one cluster. A host record beyond it is refused (counted, not stored). */
export const hostsMax = 10_000;

/** Keys in one scope (the cluster, or one resource). `set` of a new key beyond it throws ENOSPC. */
export const scopeKeysMax = 200_000;

/** Resources one host may be a member of (length of its host record's list). */
export const hostResourcesMax = 1_000;

/**
 * Buckets of a scope's digest. Anti-entropy first compares one root, then these bucket
 * sums, then the keys of the differing buckets only.
 */
export const digestBucketsCount = 64;

/** A scope with at most this many keys is summarised by its keys directly (no bucket step). */
export const keysInlineMax = 64;

/** Key summaries (key, hash) in one `summary` message. Whole buckets are left for the next round. */
export const summaryItemsMax = 16_384;

/** Entries in one `delta` or `push` message; the rest follows in later rounds. */
export const batchEntriesMax = 512;

/**
 * Approximate bytes of the entries in one message (keys, values, seen-by lists). A batch
 * always carries at least one entry; the wire limit below holds even then.
 */
export const batchBytesMax = 1024 * 1024;

/** Bytes of one encoded metadata message on the wire (checked by the codec both ways). */
export const metaMessageBytesMax = 2 * 1024 * 1024;

/** Scopes named in one `digest` or `summary` message; more are left for the next round. */
export const scopesPerMessageMax = 4_096;

/** Keys a peer may ask for in one `delta`; more are ignored (asked again next round). */
export const wantKeysMax = batchEntriesMax * 4;

/** Hosts a cluster-wide change is pushed to, and forwarded to by each host that learns it. */
export const gossipFanout = 3;

/** Random hosts each host runs cluster-scope anti-entropy with per tick. */
export const gossipPeersPerTick = 1;

/** How often the shell calls `MetaNode.tick()` (anti-entropy round, tombstone purge). */
export const antiEntropyIntervalMs = 5_000;

/**
 * A peer's clock may be this far ahead of ours. A message stamped further ahead is refused
 * (META_CLOCK_SKEW) and our clock is not moved past it (the Lamport clock clamps).
 */
export const clockSkewMsMax = LamportClock.futureSkewMsMax;

/**
 * A message stamped further than this in the past is refused as stale (META_STALE). This
 * is what makes purging tombstones safe: see `tombstonePurgeDelayMs`.
 */
export const messageAgeMsMax = 60_000;

/**
 * A tombstone that every member has seen is purged this long after this host noticed it.
 * Any message still in flight from before that moment is older than `messageAgeMsMax`
 * even on a clock `clockSkewMsMax` ahead, so it is refused and cannot resurrect the key.
 */
export const tombstonePurgeDelayMs = messageAgeMsMax + clockSkewMsMax + antiEntropyIntervalMs;

/** Purged tombstones remembered (in memory) to tell slower peers, and for how long. */
export const purgedMemoryCountMax = 10_000;
export const purgedMemoryMsMax = 10 * 60_000;

/** Rejections reported per event (the rest are counted in the last one). */
export const rejectionsPerEventMax = 16;
