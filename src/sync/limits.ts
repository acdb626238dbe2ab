/**
 * Every limit of sync in one place, with what happens when it is reached. Sync moves a
 * whole device between hosts while the primary keeps writing, so every buffer on both
 * sides is bounded: the target asks for at most `rangesInFlightMax` ranges at a time and
 * the source answers them in order, reading at most `sourceReadsAheadMax` of them ahead.
 */
import { netLimits } from '../net/index.js';

/** The unit that is compared and copied: one digest per block. Fixed by protocol version 1. */
export const blockBytes = 4096;

/** Bytes of one block digest on the wire (xxh64, little-endian). Fixed by protocol version 1. */
export const digestBytes = 8;

/**
 * Blocks of one range: the unit of a digest request, of an answer and of progress.
 * 256 × 4 KiB = 1 MiB: large enough that per-range costs (frames, a write, a pread)
 * vanish, small enough that `rangesInFlightMax` of them keep both disks and the network busy
 * with a few MiB of memory. A DIGESTS message with more blocks is refused.
 */
export const rangeBlocksMax = 256;
export const rangeBytesMax = rangeBlocksMax * blockBytes;

/**
 * Ranges a target has asked for and not yet written (default and protocol maximum).
 * A source refuses a target that has more outstanding requests than this. The target
 * holds at most this many ranges of received data in memory. 16 MiB in flight keeps a
 * 100 ms WAN link at up to 160 MiB/s; on loopback 16 measured a little faster than 8.
 */
export const rangesInFlightMax = 16;

/**
 * Copy mode (range-mode.ts): after this many ranges in a row of which at least this many
 * per mille of the blocks differed, the target stops sending digests and asks for plain
 * copies, except for every `copyModeProbeRanges`-th range, which probes with digests.
 */
export const copyModeAfterRanges = 4;
export const copyModeDifferingPerMille = 900;
export const copyModeProbeRanges = 32;

/** Ranges the source reads ahead of the one it is answering (device reads in flight). */
export const sourceReadsAheadMax = 4;

/**
 * Range buffers a source session keeps for reuse once the link has sent them (a fresh
 * 1 MiB buffer costs 256 page faults on first touch: measured 20× the cost of reusing
 * one). Buffers still in the link's send buffer are not in it; more than this many
 * returned are dropped. As many as a session can have in use at once — the ranges read
 * ahead plus those waiting in the link's send buffer, which holds up to the target's
 * ranges in flight — so that after the first ones every range reuses a buffer: with 8,
 * 43 % of the ranges of a long sync read into a fresh buffer (111 of 256), with this
 * 8 % (20 of 256, the first ones). An idle session holds at most this many MiB.
 */
export const sourceBufferPoolMax = rangesInFlightMax + sourceReadsAheadMax;

/**
 * While the source's compressor is still starting (lz4's threads: a median of 375–411 ms
 * on a busy 2-vCPU machine), a data run is sent plain instead of waiting for it as long as
 * the link has less than this queued: an idle link does not wait for a thread to start.
 * On a slow link the queue fills after about one range and the next runs wait for the
 * compressor as before, so at most about one range more goes plain.
 */
export const coldCompressorPlainQueuedBytesMax = rangeBytesMax;

/**
 * The sync state file that finds no space (the log filesystem is full): nothing changed
 * (it is written aside and renamed), the copy goes on, and a save that must land (the
 * start position before the first range, the end position) is tried again after a capped
 * exponential backoff until there is room.
 */
export const syncNoSpaceRetryMsMin = 100;
export const syncNoSpaceRetryMsMax = 2_000;

/** Target progress is persisted (device fdatasync, then the state file) at least this often while data moves… */
export const progressPersistIntervalMs = 5_000;
/** …and after at most this many bytes, whichever comes first; also on pause, disconnect and the end. */
export const progressPersistBytes = 256 * 1024 * 1024;

/** Rate limit: default bytes per second (0 = unlimited) and the bucket's burst size. */
export const rateBytesPerSDefault = 0;
export const rateBurstBytes = 2 * rangeBytesMax;

/** Window over which `SyncProgress.rateBytesPerS` is measured, and the samples it keeps. */
export const rateWindowMs = 10_000;
export const rateSamplesMax = 64;

/** Bytes of a resource name and of a host name in sync messages. */
export const nameBytesMax = 64;

/** Bytes of the text of an ERROR message (longer text is cut). */
export const errorTextBytesMax = 200;

/** The largest sync message: a run of a whole range plus its 8-byte offset. */
export const syncMessageBytesMax = rangeBytesMax + 8;

if (syncMessageBytesMax > netLimits.frameBytesMax) throw new Error('assertion failed: a sync range does not fit in one frame');
