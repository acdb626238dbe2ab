/**
 * Every limit of the log area in one place. The format's own limits (record sizes) live
 * in record.ts because they are part of the on-disk format; these are tuning limits of
 * the writer and the scanner, and what happens at each one is decided here.
 */
import { recordBytesMax, recordHeaderBytes } from './record.js';

/**
 * Bytes of one pwrite. A batch gathers appends up to this size; a single record larger
 * than it is written alone (records are never split).
 */
export const logBatchBytesMaxDefault = 4 * 1024 * 1024;

/**
 * Batches written at once. The next batch starts while earlier ones are still being
 * written only when all of them are at least logPipelineBatchBytesMin: large sequential
 * appends then keep the disk busy while one batch waits out a FLUSH, and small ones keep
 * gathering into one batch per write (group commit).
 */
export const logBatchesInFlightMax = 3;
export const logPipelineBatchBytesMin = 1024 * 1024;

/**
 * Payloads of at least this many bytes are written from the caller's buffer with pwritev;
 * smaller ones are copied next to their headers (a copy is cheaper than an iovec entry,
 * and the kernel's IOV_MAX would otherwise cap a batch of 4 KiB writes).
 */
export const logInlinePayloadBytesMin = 64 * 1024;

/**
 * Bytes appended but not yet written. When full, `append` waits in FIFO order (a promise
 * queue) until a batch is written; a single record is always admitted into an empty
 * writer, so a record of `recordBytesMax` never deadlocks. The number of waiting appends
 * is bounded by the caller (the logger admits a bounded number of writes).
 */
export const logPendingBytesMaxDefault = 64 * 1024 * 1024;

/** A log file is rotated before a batch when it has reached this size. */
export const logRotateBytesDefault = 1024 * 1024 * 1024;
export const logRotateBytesMin = recordHeaderBytes;
/**
 * After a failed automatic rotation (say, ENOSPC creating the new file) the writer stays
 * in the old file and tries again once it has grown by rotateBytes / this (or one batch).
 */
export const logRotateRetryDivisor = 16;

/** Bytes per read of the scanner; a record larger than a chunk is read whole (≤ recordBytesMax). */
export const scanReadChunkBytesDefault = 1024 * 1024;
export const scanReadChunkBytesMin = recordHeaderBytes;
export const scanReadChunkBytesMax = recordBytesMax;
