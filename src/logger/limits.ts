/** Every limit of the primary's write path, in one place. */
export interface LoggerLimits {
  /** Bytes of answered-but-not-written-back data held in memory (the shadow index). */
  shadowBytesMax: number;
  /** Writes waiting for shadow space; callers (NBD connections) bound their in-flight requests below this. */
  admissionWaitersMax: number;
  /** Bytes handed to the device in one batch (one worker-thread hand-off). */
  writebackBatchBytesMax: number;
  /** Adjacent extents are merged into one device write up to this size. */
  writebackCoalesceBytesMax: number;
  /** A log file is rotated once it reaches this size. */
  logRotateBytes: number;
  /** Consecutive failed writeback rounds before the resource is taken out of service. */
  writebackRetriesMax: number;
  /** Pause between failed writeback rounds. */
  writebackRetryDelayMs: number;
  /**
   * How long shadowed records may stay not yet durable in the log before writeback makes
   * them durable itself (writeback only writes durable records). Client flushes usually
   * come first; memory pressure and waiting writes skip the delay.
   */
  logSyncDelayMs: number;
  /**
   * The device is fdatasync'd and the written-back position persisted at most this often
   * (and on drain, close and log-delete). Recovery replays from the persisted position,
   * so this bounds the replay work after a crash, not what is kept.
   */
  positionPersistIntervalMs: number;
  /**
   * In emergency mode, writes that arrive while a batch of direct device writes is in
   * flight are gathered into the next one (one worker hand-off), up to this many pieces
   * and `writebackBatchBytesMax` bytes; a write overlapping one already gathered waits
   * for the batch after.
   */
  directBatchJobsMax: number;
}

export const loggerLimitsDefault: LoggerLimits = {
  shadowBytesMax: 128 * 1024 * 1024,
  admissionWaitersMax: 65_536,
  writebackBatchBytesMax: 8 * 1024 * 1024,
  writebackCoalesceBytesMax: 1024 * 1024,
  logRotateBytes: 1024 * 1024 * 1024,
  writebackRetriesMax: 10,
  writebackRetryDelayMs: 1000,
  logSyncDelayMs: 50,
  positionPersistIntervalMs: 5000,
  directBatchJobsMax: 1024,
};
