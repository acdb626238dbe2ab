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

export function comparePositions(a: ReplayPosition, b: ReplayPosition): number {
  if (a.logNumber !== b.logNumber) return a.logNumber - b.logNumber;
  return a.offsetBytes - b.offsetBytes;
}
