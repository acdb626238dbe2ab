/**
 * Every limit of the compression area in one place, with what happens when it is reached.
 */

/**
 * lz4 jobs (compress or uncompress of one chunk) handed to the lz4 thread at a time; a
 * further job waits in a FIFO until one is answered. Each job holds its input (one chunk,
 * at most a frame) and its output until it is answered, so the bytes held by the lz4
 * thread stay under this many chunks. The waiters themselves are bounded by their callers
 * (a fetch stream reads ahead a few chunks; a sync range is one chunk).
 */
export const lz4JobsInFlightMax = 8;
