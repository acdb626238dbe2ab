/**
 * Every limit of log fetch in one place, with what happens when it is reached. Fetch moves
 * bulk data between hosts, so each buffer on each side is bounded: the server reads one
 * chunk at a time and never more than the client's credit ahead; the client holds at most
 * one credit window of received frames plus one partial record.
 */
import { recordBytesMax } from '../log/index.js';
import { netLimits } from '../net/index.js';

/** Bytes of log data in one DATA frame (the server reads this much per pread). */
export const fetchChunkBytesMax = 1024 * 1024;

/**
 * Bytes a client lets the server send beyond what it has processed (credit). The server
 * stops at the credit end and waits for a CREDIT message; so the client never queues more
 * than this, whatever the speed of its disk. Below netLimits.sendBufferBytesMax, so a
 * well-behaved stream never fills the link's send buffer.
 */
export const fetchWindowBytes = 12 * 1024 * 1024;

/**
 * DATA messages that queued up while an append ran are verified and appended together,
 * up to this many bytes in one gathered write (at most one window is queued anyway).
 */
export const fetchAppendBatchBytesMax = fetchWindowBytes;

/** A client sends a new CREDIT once this much of its window has been used. */
export const fetchCreditRefreshBytes = fetchWindowBytes / 4;

/**
 * A partial record is held in memory until it is whole and verified: at most one record
 * (a frame of a larger "record" is a protocol error on the client, damage on the server).
 */
export const fetchPartialBytesMax = recordBytesMax;

/**
 * Bytes of the primary's live log kept in memory for fetch (src/fetch/recent-log-bytes.ts),
 * one ring per resource while a fetch stream is open. A secondary less than this far
 * behind the log end is served without reading the disk; further behind, it is read from
 * the file. 32 MiB is about 0.1 s of the primary's fastest sequential writes here; the
 * memory budget (300 MiB + the shadow limit) decides it: with 64 MiB the primary peaked at
 * 430 MiB in bench/replication.ts (d), over its 428.
 */
export const fetchRecentBytesMax = 32 * 1024 * 1024;

/**
 * A read of the ring that starts at most this far behind its end is sent as a view of the
 * ring (no copy); further back it is copied. The writer must append this much before it
 * could reach a view's bytes, and a view is held only until its frame is with the kernel;
 * should it still be out then, the ring is retired and a fresh one allocated (a view
 * lent near the ring's start would make that happen at almost every append).
 */
export const fetchRecentViewWithinBytes = fetchRecentBytesMax / 2;

/**
 * Bytes of DATA one stream sends before it lets the event loop take its next turn (the
 * daemon's `yieldTurn`, a setImmediate). Served from memory (recent-log-bytes.ts), a chunk
 * is ready at once, and without a yield a stream would verify, checksum and write a whole
 * credit window (12 MiB, some 20 ms of the main thread) while the NBD requests of the
 * primary's writers wait. One chunk per turn keeps each stall to about a millisecond.
 */
export const fetchSendBurstBytesMax = fetchChunkBytesMax;

/** Log files one LIST_REPLY names; more are listed by asking again from the next log number. */
export const fetchListEntriesMax = 4096;

/** Bytes of the UTF-8 message of an ERROR frame; longer messages are cut. */
export const fetchErrorMessageBytesMax = 1024;

/**
 * Messages a client has received but not handled yet. The credit bounds their bytes; this
 * bounds their number (a flood of tiny frames within the credit closes the link).
 */
export const fetchQueuedEventsMax = 4096;

/** The client fdatasyncs its local copy after this many unsynced bytes. */
export const fetchSyncBytesMax = 16 * 1024 * 1024;

/**
 * ...and at most this long after an append when its input has run dry. Replay does not
 * wait for it (it applies verified bytes; a replay position is persisted only after the
 * copy is synced up to it), so this bounds how much a crash makes the host fetch again,
 * not the replication lag. An fdatasync per message would cost the disk most of its time.
 */
export const fetchSyncIntervalMs = 500;

/** ENOSPC on the local log directory: retry the write after a capped exponential backoff. */
export const noSpaceRetryMsMin = 100;
export const noSpaceRetryMsMax = 10_000;

/**
 * A save of replay's own state (position, dirty mark, version chain) that finds no space
 * is tried again after a capped exponential backoff, from the minimum again once replay
 * got further: the log filesystem has room again once replay lets fetched copies go, or
 * an operator frees some. Lower cap than fetch's: replay is what frees the space.
 */
export const replayNoSpaceRetryMsMin = 100;
export const replayNoSpaceRetryMsMax = 2_000;

/**
 * A record that fails verification on receipt resets the connection and is fetched again;
 * after this many consecutive failures at the same offset the client stops with an error
 * state instead of looping (the source's copy is probably damaged: fetch from another member).
 */
export const badRecordRetriesMax = 5;

/**
 * Reconnect delays of the client's connection (see net's PeerConnection). Capped lower
 * than metadata links: after a long outage fetch (and sync, which uses the same cap) is
 * back within a few seconds of the link, not up to half a minute later.
 */
export const fetchBackoffMsMin = netLimits.backoffMsMin;
export const fetchBackoffMsMax = 5_000;

/**
 * Bytes per read of replay over a local copy. A record that does not fit the rest of a
 * chunk is read again from its start, so a chunk of 1 MiB read every 1 MiB record twice;
 * at 8 MiB that is one extra read per seven such records (one buffer per replayer).
 */
export const replayReadChunkBytes = 8 * 1024 * 1024;

/**
 * Replay persists its dirty mark (`dirty-HOST`, src/replay/position.ts) this far beyond
 * the record it is about to apply, capped at the end of the local copy it replays: one
 * small durable write per this many replayed bytes (or per round of catching up, when
 * less arrives at a time). The next mark, this much beyond the current one, is saved in
 * the background once replay is within half of this below it, so a mark may be up to
 * 1.5 times this ahead. After a crash the copy is inconsistent until replay is back at
 * the mark, so this also bounds how far beyond the old point it has to get.
 *
 * A save (a new file, two fdatasyncs, a rename, a directory fsync) took 60-190 ms at the
 * median on a disk shared with other writers, while replay applies 8 MiB in a few
 * milliseconds: replay cannot run faster than this many bytes per save. At 16 MiB that
 * capped it near 100 MiB/s there, and replay waited for almost every save; 64 MiB lifts
 * the cap above the primary's own rate, for at most 96 MiB more to replay after a crash
 * (well under a second).
 */
export const replayDirtyAheadBytes = 64 * 1024 * 1024;

/** Bytes per read when a client verifies its local copy on start or after damage. */
export const verifyReadChunkBytes = 1024 * 1024;

/** Frame payloads must fit a frame; a DATA frame is a header plus one chunk. */
export const fetchFrameBytesMax = netLimits.frameBytesMax;
