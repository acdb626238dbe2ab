/**
 * Every limit of log space management, in one place. A stage's threshold is a share of
 * the log filesystem's size with an absolute floor (so that a small filesystem keeps room
 * for a burst of writes), never more than a share of the size (so that a tiny one still
 * has stages in order) and never more than an absolute cap (so that a huge one does not
 * keep terabytes free).
 */

/** One threshold: free bytes below it reach the stage. */
export interface SpaceThreshold {
  /** Share of the filesystem's size, in percent (0..100). */
  readonly percent: number;
  /** At least this many bytes … */
  readonly floorBytes: number;
  /** … but never more than this share of the size, in percent … */
  readonly sizeSharePercentMax: number;
  /** … nor more than this many bytes. */
  readonly capBytes: number;
}

export interface SpaceLimits {
  readonly warn: SpaceThreshold;
  readonly reclaim: SpaceThreshold;
  readonly emergency: SpaceThreshold;
  /** A stage is left only once free space is this far above its threshold. */
  readonly hysteresis: SpaceThreshold;
  /** How often the log filesystem is looked at. */
  readonly checkIntervalMs: number;
  /** A member unreachable for longer than this counts as dead: it no longer holds logs back from reclaim. */
  readonly memberUnreachableMsMax: number;
  /** In the reclaim stage the primary rotates its log once the current file holds this share of the filesystem (percent), so it can go. */
  readonly reclaimRotateSharePercent: number;
  /**
   * Free space a secondary's fetch never writes into: replay's own small state files (its
   * position, the dirty mark, the version chain) must always fit, or replay could not go on
   * and let the copies go that fill the filesystem.
   */
  readonly stateReserve: SpaceThreshold;
  /** The reserve is checked with statfs at least this often while fetch appends (and whenever half the room above it may be used up). */
  readonly stateReserveCheckMs: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export const spaceLimitsDefault: SpaceLimits = {
  warn: { percent: 20, floorBytes: 256 * MiB, sizeSharePercentMax: 50, capBytes: 64 * GiB },
  reclaim: { percent: 10, floorBytes: 128 * MiB, sizeSharePercentMax: 35, capBytes: 32 * GiB },
  emergency: { percent: 5, floorBytes: 64 * MiB, sizeSharePercentMax: 20, capBytes: 16 * GiB },
  hysteresis: { percent: 5, floorBytes: 32 * MiB, sizeSharePercentMax: 10, capBytes: 8 * GiB },
  checkIntervalMs: 500,
  memberUnreachableMsMax: 10 * 60 * 1000,
  reclaimRotateSharePercent: 5,
  stateReserve: { percent: 1, floorBytes: 4 * MiB, sizeSharePercentMax: 10, capBytes: 256 * MiB },
  stateReserveCheckMs: 1_000,
};
