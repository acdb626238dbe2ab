/**
 * The metadata area's public entry: the pure core (MetaNode), its store, the wire codec
 * of its messages, the key grammar and the limits.
 */
export { MetaNode, type MetaNodeOptions, type MetaSnapshot } from './meta-node.js';
export { MetaStore, type LoadedMeta } from './meta-store.js';
export type { Ready, Outbound, Rejection } from './ready.js';
export { joinReadies } from './ready.js';
export type { MetaMessage, MetaMessageType, KeyedEntry } from './messages.js';
export { encodeMetaMessage, decodeMetaMessage } from './message-codec.js';
export { type Entry, mergeEntry, compareVersions } from './entry.js';
export { canonicalJson, type JsonValue } from './json-value.js';
export { parseHostRecord, hostRecordValue, type HostRecord } from './host-record.js';
export { actualKey, clusterScope, desiredKey, hostKey, isValidName, parseKey, primaryKey, resourceScope, type KeyInfo, type ScopeId } from './keys.js';
export { scopeFileName } from './scope-file.js';
export * as metaLimits from './limits.js';
export { clusterDigestOf, joinSnapshot, JoinSnapshotReceiver, type JoinSnapshot } from './join-snapshot.js';
export { splitBatches } from './anti-entropy.js';
export { dataKey, deletedKey, evictedHosts, evictedKey, mergeKey, removedHosts, removedKey, sizeKey, scopeResource } from './keys.js';
export type { DigestMessage, PushMessage, ScopeDigest } from './messages.js';
export { generateSigningKey, signingKeyFromPem, signingKeyToPem, testSigningKey, verifyBytes, signBytes, signatureBytes, type SigningKey } from './signing.js';
