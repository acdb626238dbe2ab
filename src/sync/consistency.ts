/**
 * When a synced copy is consistent: the sync has copied the whole device (its end
 * position is recorded) and replay has applied the log at least up to that end position.
 * Before that the copy may mix blocks of different ages, and `view` says InConsistent.
 * Replay must start at the sync's start position (or earlier: replay is idempotent).
 */
import { comparePositions, type ReplayPosition } from '../replay/position.js';
import type { SyncStateRecord } from './state-file.js';

export function isConsistentAfterSync(sync: SyncStateRecord | undefined, replayPosition: ReplayPosition | undefined): boolean {
  if (sync === undefined || sync.endPosition === undefined || replayPosition === undefined) return false;
  return comparePositions(replayPosition, sync.endPosition) >= 0;
}
