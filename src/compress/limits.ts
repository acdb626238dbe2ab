/**
 * Every limit of the compression area in one place, with what happens when it is reached.
 */

/**
 * Threads that run lz4 (src/compress/lz4-thread.ts). Each keeps the library's allocator
 * heap of its own, reused job after job; their number bounds that memory. Two use both
 * cores of a small machine; more would add heaps, not speed, where fetch and sync share
 * the cores with the daemon's main thread and the disk threads.
 */
export const lz4ThreadsMax = 2;

/**
 * lz4 jobs (compress or uncompress of one chunk) handed to the lz4 threads at a time; a
 * further job waits in a FIFO until one is answered. Each job holds its input (one chunk,
 * at most a frame) and its output until it is answered, so the bytes held by the lz4
 * threads stay under this many chunks. The waiters themselves are bounded by their callers
 * (a fetch stream reads ahead a few chunks; a sync range is one chunk).
 */
export const lz4JobsInFlightMax = 8;
