/**
 * The target's persisted sync state: a small JSON file, replaced atomically
 * (Storage.writeAtomic), so a restart resumes where the last one stopped. It is written
 * only after the device was fdatasync'd up to `nextBytes`, and it keeps the start
 * position of the *first* session with its source host: blocks copied in every later
 * session from that host are newer than it, so replay from it makes the whole copy exact.
 * A session with another host (a new primary) starts the copy again from offset 0 with
 * that host's start position: the blocks copied from the old host may hold writes the new
 * one's history never had (a forced failover), and replay cannot undo them.
 *
 *   {"formatVersion":1,"resource":"r0","sizeBytes":1073741824,"nextBytes":268435456,
 *    "startPosition":{"logNumber":3,"logHost":"alpha","offsetBytes":4096,"nextSeq":"17"},
 *    "endPosition":null,"sourceHost":"alpha"}
 *
 * `endPosition` is set once the whole device is copied: the copy is consistent when
 * replay has reached it. `sourceHost` is the host the copy comes from; a file written
 * before it existed has none, and its copy starts again at the next session.
 */
import type { ReplayPosition } from '../replay/position.js';
import type { Storage } from '../storage/storage.js';
import { SyncError } from './errors.js';

export const syncStateFormatVersion = 1;

/** The default name of the state file in the resource's directory. */
export const syncStateFileName = 'sync-state';

export interface SyncStateRecord {
  readonly resource: string;
  readonly sizeBytes: number;
  /** Every byte before this offset is copied and fdatasync'd. */
  readonly nextBytes: number;
  /** The source's written-back position when the sync started. */
  readonly startPosition: ReplayPosition;
  /** Set when the whole device is copied: the copy is consistent once replay reaches it. */
  readonly endPosition: ReplayPosition | undefined;
  /** The host every byte before `nextBytes` was copied from (absent: unknown). */
  readonly sourceHost?: string;
}

function positionJson(p: ReplayPosition): Record<string, unknown> {
  return { logNumber: p.logNumber, logHost: p.logHost, offsetBytes: p.offsetBytes, nextSeq: p.nextSeq.toString() };
}

export function encodeSyncState(state: SyncStateRecord): Buffer {
  const json = {
    formatVersion: syncStateFormatVersion,
    resource: state.resource,
    sizeBytes: state.sizeBytes,
    nextBytes: state.nextBytes,
    startPosition: positionJson(state.startPosition),
    endPosition: state.endPosition === undefined ? null : positionJson(state.endPosition),
    ...(state.sourceHost === undefined ? {} : { sourceHost: state.sourceHost }),
  };
  return Buffer.from(`${JSON.stringify(json, null, 2)}\n`);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function decodePositionJson(v: unknown, bad: (why: string) => SyncError): ReplayPosition {
  if (typeof v !== 'object' || v === null) throw bad('position is not an object');
  const p = v as Record<string, unknown>;
  const { logNumber, logHost, offsetBytes, nextSeq } = p;
  if (!isCount(logNumber) || logNumber < 1) throw bad('bad logNumber');
  if (typeof logHost !== 'string' || logHost.length === 0) throw bad('bad logHost');
  if (!isCount(offsetBytes)) throw bad('bad offsetBytes');
  if (typeof nextSeq !== 'string' || !/^[0-9]+$/.test(nextSeq)) throw bad('bad nextSeq');
  return { logNumber, logHost, offsetBytes, nextSeq: BigInt(nextSeq) };
}

export function decodeSyncState(raw: Buffer, fileName: string): SyncStateRecord {
  const bad = (why: string): SyncError => new SyncError('SYNC_STATE_CORRUPT', `${fileName}: ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw bad('not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null) throw bad('not an object');
  const s = parsed as Record<string, unknown>;
  if (s['formatVersion'] !== syncStateFormatVersion) throw bad(`unknown format version ${String(s['formatVersion'])}`);
  const { resource, sizeBytes, nextBytes } = s;
  if (typeof resource !== 'string' || resource.length === 0) throw bad('bad resource');
  if (!isCount(sizeBytes) || !isCount(nextBytes) || nextBytes > sizeBytes) throw bad('bad sizeBytes or nextBytes');
  const startPosition = decodePositionJson(s['startPosition'], bad);
  const endPosition = s['endPosition'] === null ? undefined : decodePositionJson(s['endPosition'], bad);
  if (endPosition !== undefined && nextBytes !== sizeBytes) throw bad('endPosition set before the end of the device');
  const sourceHost = s['sourceHost'];
  if (sourceHost !== undefined && (typeof sourceHost !== 'string' || sourceHost.length === 0)) throw bad('bad sourceHost');
  return { resource, sizeBytes, nextBytes, startPosition, endPosition, ...(sourceHost === undefined ? {} : { sourceHost }) };
}

export async function loadSyncState(storage: Storage, fileName: string = syncStateFileName): Promise<SyncStateRecord | undefined> {
  const raw = await storage.readAll(fileName);
  return raw === undefined ? undefined : decodeSyncState(raw, fileName);
}

export async function saveSyncState(storage: Storage, state: SyncStateRecord, fileName: string = syncStateFileName): Promise<void> {
  await storage.writeAtomic(fileName, encodeSyncState(state));
}

/** Forgets a sync (invalidate, or a new primary): the next one starts from offset 0 with a new start position. */
export async function removeSyncState(storage: Storage, fileName: string = syncStateFileName): Promise<void> {
  await storage.remove(fileName);
}
