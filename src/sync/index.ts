/**
 * The sync area's public entry: fast full sync of a device from a source (the primary)
 * to a target (a joining or invalidated secondary) over an authenticated 'sync' link.
 * docs/sync.md describes the protocol byte by byte and what the daemon must do.
 */
export { SyncSourceSession, type SyncSourceOptions, type SyncSourceResource } from './sync-source.js';
export { SyncTarget, type SyncProgress, type SyncTargetOptions, type SyncTargetState } from './sync-target.js';
export { isConsistentAfterSync } from './consistency.js';
export { loadSyncState, removeSyncState, saveSyncState, syncStateFileName, type SyncStateRecord } from './state-file.js';
export { decodeSyncMessage, encodeSyncMessage, SyncFrameType, syncProtocolVersion, type SyncMessage } from './codec.js';
export { differingRuns, type Run } from './compare.js';
export { blockDigests } from './digest.js';
export { ProgressBook } from './progress.js';
export { TokenBucket } from './token-bucket.js';
export { SyncError, type SyncErrorCode, type SyncFailure } from './errors.js';
export type { AttachableSyncLink, SyncLink } from './sync-link.js';
export * as syncLimits from './limits.js';
