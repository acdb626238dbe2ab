/**
 * The stage of log space management, decided from the log filesystem's size and free
 * bytes: a pure function (no clock, no file system), so that the shell (the daemon's
 * space monitor) only measures and acts.
 *
 *   ok         nothing to do
 *   warn       view and the daemon log name the members that hold logs back, and how much
 *   reclaim    secondaries delete copies they have replayed; the primary deletes what every
 *              live member has fetched (dead members no longer hold logs back)
 *   emergency  the primary stops logging and writes straight to its device (a hole in
 *              the log numbering; secondaries stop before it and need invalidate)
 *
 * A stage is reached as soon as free space falls below its threshold, and left only once
 * free space is back above the threshold plus the hysteresis, so that a filesystem
 * hovering around a threshold does not flip between stages.
 */
import type { SpaceLimits, SpaceThreshold } from './limits.js';

export const spaceStages = ['ok', 'warn', 'reclaim', 'emergency'] as const;
export type SpaceStage = (typeof spaceStages)[number];

export function stageRank(stage: SpaceStage): number {
  return spaceStages.indexOf(stage);
}

/** The free-bytes thresholds of a filesystem of `sizeBytes`: warn ≥ reclaim ≥ emergency. */
export interface StageThresholds {
  readonly warnBytes: number;
  readonly reclaimBytes: number;
  readonly emergencyBytes: number;
  readonly hysteresisBytes: number;
}

export function thresholdBytes(sizeBytes: number, t: SpaceThreshold): number {
  const wanted = Math.max((sizeBytes * t.percent) / 100, t.floorBytes);
  return Math.floor(Math.min(wanted, (sizeBytes * t.sizeSharePercentMax) / 100, t.capBytes));
}

export function stageThresholds(sizeBytes: number, limits: SpaceLimits): StageThresholds {
  const emergencyBytes = thresholdBytes(sizeBytes, limits.emergency);
  const reclaimBytes = Math.max(thresholdBytes(sizeBytes, limits.reclaim), emergencyBytes);
  const warnBytes = Math.max(thresholdBytes(sizeBytes, limits.warn), reclaimBytes);
  return { warnBytes, reclaimBytes, emergencyBytes, hysteresisBytes: thresholdBytes(sizeBytes, limits.hysteresis) };
}

/** The stage free space alone says, against thresholds raised by `extraBytes`. */
function stageBelow(freeBytes: number, t: StageThresholds, extraBytes: number): SpaceStage {
  if (freeBytes < t.emergencyBytes + extraBytes) return 'emergency';
  if (freeBytes < t.reclaimBytes + extraBytes) return 'reclaim';
  if (freeBytes < t.warnBytes + extraBytes) return 'warn';
  return 'ok';
}

export interface SpaceInput {
  readonly sizeBytes: number;
  readonly freeBytes: number;
}

/**
 * The next stage after `previous`: up at once when free space falls below a threshold;
 * down only as far as free space is above the thresholds plus the hysteresis.
 */
export function nextSpaceStage(previous: SpaceStage, input: SpaceInput, limits: SpaceLimits): SpaceStage {
  const t = stageThresholds(input.sizeBytes, limits);
  const raw = stageBelow(input.freeBytes, t, 0);
  if (stageRank(raw) >= stageRank(previous)) return raw;
  const settled = stageBelow(input.freeBytes, t, t.hysteresisBytes);
  return spaceStages[Math.min(stageRank(previous), Math.max(stageRank(raw), stageRank(settled)))]!;
}
