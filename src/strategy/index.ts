/**
 * The strategy area's public entry: the reconciler's pure decisions (switches and
 * indicators), who holds log deletion back. The role state machine (handover, failover, split brain) will join it.
 */
export { actualOf, nextStep, type Actual, type LocalKind, type LocalState, type Step, type Switches } from './reconcile.js';
export { desiredValue, detachedDesired, parseDesired, resourceSpec, type Desired, type ResourceSpec } from './resource-spec.js';
export { detectSplitBrain, detectSplitBrains, historyOf, partingOf, resolutionOf, type HistorySide, type MemberHistory, type Resolution, type SplitBrain } from './split-brain.js';
export {
  diskStateWords,
  encodeReplication,
  holeAheadOf,
  memberState,
  parseIndicator,
  parseReplication,
  replicationDiskState,
  replicationReplState,
  replStateWords,
  type DiskState,
  type Indicator,
  type IndicatorReplication,
  type MemberFacts,
  type MemberStateWords,
  type ReplicationFacts,
  type ReplState,
} from './member-state.js';
export { forcedLossOf, knownFromMember, knownFromOldIndicator, mergeKnownLogs, type CopyEnd, type ForcedLoss, type KnownLog } from './forced-loss.js';
export { logDeleteHold, logsToDelete, type HoldKind, type LogHold, type MemberNeed } from './log-deletion.js';
export { comparePlaces, isConsistentPhase, logVerdict, nextPhase, openPhase, placeVerdict, syncEndVerdict, type PhasePosition, type PhaseStep, type PlaceKind, type PlaceLog, type PlaceVerdict, type ReplicaAtOpen, type ReplicaDecision, type ReplicaEvent, type ReplicaPhase, type SyncEndLog } from './replica-phase.js';
export { onPrimaryChange, onRivalHistory, rivalResyncsMax, type PrimaryChangeDecision, type RivalHistoryDecision } from './rival-history.js';
export { takeoverConsistency, type TakeoverConsistency, type TakeoverConsistencyFacts, type TakeoverPlace } from './takeover-consistency.js';
export { replicaStateAt, replicaStep, type ReplicaState, type ReplicaStateDecision, type ReplicaStateEvent, type ReplicaStateStep } from './replica-state.js';
