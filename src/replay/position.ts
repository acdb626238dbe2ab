/**
 * A replay position: how far a device has been written from the log. The primary's own
 * writeback position and a secondary's replay position are the same thing, persisted
 * only after the device is fdatasync'd, so recovery restarts from a point the device
 * is known to hold. Replaying from an earlier point is harmless (replay is idempotent).
 */
import { parseVersionedJson } from '../core/versioned-json.js';
import { MarsError } from '../core/errors.js';
import type { Storage } from '../storage/storage.js';

export interface ReplayPosition {
  /** The log file number, ≥ 1. */
  logNumber: number;
  /** The host that wrote that log file. */
  logHost: string;
  /** Byte offset in that file of the first record not yet applied. */
  offsetBytes: number;
  /** The sequence number of that record. */
  nextSeq: bigint;
}

export const replayPositionFormatVersion = 1;

export function encodePosition(position: ReplayPosition): Buffer {
  return Buffer.from(
    `${JSON.stringify({
      formatVersion: replayPositionFormatVersion,
      logNumber: position.logNumber,
      logHost: position.logHost,
      offsetBytes: position.offsetBytes,
      nextSeq: position.nextSeq.toString(),
    }, null, 2)}\n`,
  );
}

export function decodePosition(raw: Buffer, fileName: string): ReplayPosition {
  const bad = (why: string): MarsError => new MarsError('BAD_STATE_DIR', `${fileName}: ${why}`);
  const p = parseVersionedJson(raw, fileName, replayPositionFormatVersion);
  const { logNumber, logHost, offsetBytes, nextSeq } = p;
  if (typeof logNumber !== 'number' || !Number.isSafeInteger(logNumber) || logNumber < 1) throw bad('bad logNumber');
  if (typeof logHost !== 'string' || logHost.length === 0) throw bad('bad logHost');
  if (typeof offsetBytes !== 'number' || !Number.isSafeInteger(offsetBytes) || offsetBytes < 0) throw bad('bad offsetBytes');
  if (typeof nextSeq !== 'string' || !/^[0-9]+$/.test(nextSeq)) throw bad('bad nextSeq');
  return { logNumber, logHost, offsetBytes, nextSeq: BigInt(nextSeq) };
}

/** Where a host's replay position of one resource lives: `replay-HOST` in the resource directory. */
export function positionFileName(host: string): string {
  return `replay-${host}`;
}

export async function loadPosition(storage: Storage, host: string): Promise<ReplayPosition | undefined> {
  const name = positionFileName(host);
  const raw = await storage.readAll(name);
  return raw === undefined ? undefined : decodePosition(raw, name);
}

export async function savePosition(storage: Storage, host: string, position: ReplayPosition): Promise<void> {
  await storage.writeAtomic(positionFileName(host), encodePosition(position));
}

/**
 * How far replay may have written the device: the "dirty until" mark of a secondary. It
 * is persisted before replay applies any record ending beyond it, so after a crash the
 * device may hold records up to the mark but never beyond. While the replay position is
 * below it, the device is no state reachable by applying a prefix of the log (records
 * past the position may be on it, older ones re-applied over them may be not yet): the
 * copy is inconsistent until replay reaches the mark again. The mark need not be at a
 * record boundary; it is at most the end of the local copy at the time it was written.
 */
export interface DirtyMark {
  logNumber: number;
  logHost: string;
  offsetBytes: number;
}

export const dirtyMarkFormatVersion = 1;

export function encodeDirtyMark(mark: DirtyMark): Buffer {
  return Buffer.from(`${JSON.stringify({ formatVersion: dirtyMarkFormatVersion, logNumber: mark.logNumber, logHost: mark.logHost, offsetBytes: mark.offsetBytes }, null, 2)}\n`);
}

export function decodeDirtyMark(raw: Buffer, fileName: string): DirtyMark {
  const bad = (why: string): MarsError => new MarsError('BAD_STATE_DIR', `${fileName}: ${why}`);
  const p = parseVersionedJson(raw, fileName, dirtyMarkFormatVersion);
  const { logNumber, logHost, offsetBytes } = p;
  if (typeof logNumber !== 'number' || !Number.isSafeInteger(logNumber) || logNumber < 1) throw bad('bad logNumber');
  if (typeof logHost !== 'string' || logHost.length === 0) throw bad('bad logHost');
  if (typeof offsetBytes !== 'number' || !Number.isSafeInteger(offsetBytes) || offsetBytes < 0) throw bad('bad offsetBytes');
  return { logNumber, logHost, offsetBytes };
}

/** Where a host's dirty mark of one resource lives: `dirty-HOST` in the resource directory. */
export function dirtyMarkFileName(host: string): string {
  return `dirty-${host}`;
}

export async function loadDirtyMark(storage: Storage, host: string): Promise<DirtyMark | undefined> {
  const name = dirtyMarkFileName(host);
  const raw = await storage.readAll(name);
  return raw === undefined ? undefined : decodeDirtyMark(raw, name);
}

export async function saveDirtyMark(storage: Storage, host: string, mark: DirtyMark): Promise<void> {
  await storage.writeAtomic(dirtyMarkFileName(host), encodeDirtyMark(mark));
}

/** Orders by log number, then offset (a position at the end of log N precedes log N+1). */
export function comparePositions(a: Pick<ReplayPosition, 'logNumber' | 'offsetBytes'>, b: Pick<ReplayPosition, 'logNumber' | 'offsetBytes'>): number {
  if (a.logNumber !== b.logNumber) return a.logNumber - b.logNumber;
  return a.offsetBytes - b.offsetBytes;
}
