export { spaceLimitsDefault, type SpaceLimits, type SpaceThreshold } from './limits.js';
export { nextSpaceStage, spaceStages, stageRank, stageThresholds, thresholdBytes, type SpaceInput, type SpaceStage, type StageThresholds } from './space-stage.js';
export { decodeEmergencyState, encodeEmergencyState, emergencyStateBytes, type EmergencyState } from './emergency-state.js';
