/**
 * The fetch area's public entry: log shipping between hosts (protocol, server, client),
 * the sources a server serves from, the local copies a client keeps, and the Replayer
 * that applies those copies to a secondary's device. Other areas import from here only.
 */
export { ChangeSignal } from './change-signal.js';
export { FetchClient, type FetchClientOptions, type FetchState, type FetchStatus } from './client.js';
export { FetchError, type FetchErrorCode } from './errors.js';
export { fetchRestBytes, planFetch, staleSyncCopies, type FetchPlan, type LocalEnd } from './fetch-plan.js';
export * as fetchLimits from './limits.js';
export { LocalCopies, verifyCopy, type CopyCheck, type LocalCopyEnd, type VerifyStart } from './local-copies.js';
export type { LogInfo, LogSource } from './log-source.js';
export { MemLogSource } from './mem-log-source.js';
export {
  decodeFetchMessage,
  encodeFetchMessage,
  fetchDataHeaderBytes,
  FetchFeature,
  FetchFrameType,
  FetchRefusal,
  fetchProtocolVersion,
  isValidResourceName,
  type FetchFeatureName,
  type FetchMessage,
  type FetchRefusalName,
} from './protocol.js';
export { RecentFirstFile, RecentLogBytes, TeeLogStorage } from './recent-log-bytes.js';
export { RecordStreamVerifier, type RecordFault, type RecordFaultKind, type VerifyResult } from './record-verifier.js';
export { Replayer, type ReplayedLog, type ReplayerOptions, type ReplayerStatus, type ReplayState } from './replayer.js';
export { FetchServer, type FetchServerOptions } from './server.js';
export { liveWriterEnd, StorageLogSource, type LiveLogEnd, type StorageLogSourceOptions } from './storage-log-source.js';
export { SwitchableLogSource } from './switchable-log-source.js';
export { parallelConnectionsMax } from './lanes.js';
