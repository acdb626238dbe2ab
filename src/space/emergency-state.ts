/**
 * The emergency state of a primary's resource: `emergency-HOST` in the resource directory.
 *
 * Why a file of fixed size, overwritten in place: the state must be saved exactly when the
 * log filesystem is full. The file is created (4096 bytes, fdatasync'd) when the logger
 * opens, while there is room; later saves overwrite its blocks, which needs no new space.
 * It has two slots of 512 bytes; a save writes the slot the last valid one is not in, with
 * the next generation, and fdatasyncs. A torn save leaves the other slot valid, so the
 * reader takes the valid slot with the highest generation.
 *
 * Slot layout (little-endian):
 *   0   8  magic "MARSEMRG"
 *   8   2  format version (1)
 *   10  1  mode: 0 logging, 1 emergency
 *   11  1  reserved (0)
 *   12  4  reserved (0)
 *   16  8  generation (u64, +1 per save)
 *   24  8  logNumber (u64): emergency: the last log written before it; logging: the last hole (0: none)
 *   32  8  nextSeq (u64): the seq the log continues with
 *   40  4  crc32c of bytes 0..39
 *   44 468 zero
 *
 * Meaning: mode 1 says "the device holds every answered write and is written directly;
 * never replay the log onto it". It is saved only after the shadow index is written back
 * and the device fdatasync'd, and before the first direct write.
 */
import { crc32c } from '@node-rs/crc32';
import { MarsError } from '../core/errors.js';

export const emergencyStateBytes = 4096;
export const emergencySlotBytes = 512;
export const emergencyStateFormatVersion = 1;
const magic = Buffer.from('MARSEMRG', 'ascii');
const crcCoveredBytes = 40;

export interface EmergencyState {
  readonly mode: 'logging' | 'emergency';
  readonly generation: bigint;
  /** emergency: the last log written before it; logging: the number of the last hole (0: none). */
  readonly logNumber: number;
  readonly nextSeq: bigint;
}

export function emergencyStateFileName(host: string): string {
  return `emergency-${host}`;
}

/** One slot of 512 bytes. */
export function encodeEmergencySlot(state: EmergencyState): Buffer {
  const slot = Buffer.alloc(emergencySlotBytes);
  magic.copy(slot, 0);
  slot.writeUInt16LE(emergencyStateFormatVersion, 8);
  slot.writeUInt8(state.mode === 'emergency' ? 1 : 0, 10);
  slot.writeBigUInt64LE(state.generation, 16);
  slot.writeBigUInt64LE(BigInt(state.logNumber), 24);
  slot.writeBigUInt64LE(state.nextSeq, 32);
  slot.writeUInt32LE(crc32c(slot.subarray(0, crcCoveredBytes)), crcCoveredBytes);
  return slot;
}

/** The whole file with `state` in slot 0 (a new file). */
export function encodeEmergencyState(state: EmergencyState): Buffer {
  const file = Buffer.alloc(emergencyStateBytes);
  encodeEmergencySlot(state).copy(file, 0);
  return file;
}

/** Where the next save goes: the slot that does not hold `current`. */
export function nextSlotOffset(current: EmergencyState): number {
  return current.generation % 2n === 0n ? emergencySlotBytes : 0;
}

function decodeSlot(slot: Buffer): EmergencyState | undefined {
  if (slot.length < emergencySlotBytes || !slot.subarray(0, 8).equals(magic)) return undefined;
  if (slot.readUInt32LE(crcCoveredBytes) !== crc32c(slot.subarray(0, crcCoveredBytes))) return undefined;
  const mode = slot.readUInt8(10);
  if (slot.readUInt16LE(8) !== emergencyStateFormatVersion || mode > 1) return undefined;
  const logNumber = slot.readBigUInt64LE(24);
  if (logNumber > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return { mode: mode === 1 ? 'emergency' : 'logging', generation: slot.readBigUInt64LE(16), logNumber: Number(logNumber), nextSeq: slot.readBigUInt64LE(32) };
}

/**
 * The valid slot with the highest generation. A file with no valid slot is BAD_STATE_DIR:
 * it was created valid, so both slots damaged is not a torn save.
 */
export function decodeEmergencyState(raw: Buffer, fileName: string): EmergencyState {
  const slots = [decodeSlot(raw.subarray(0, emergencySlotBytes)), decodeSlot(raw.subarray(emergencySlotBytes, 2 * emergencySlotBytes))];
  let best: EmergencyState | undefined;
  for (const s of slots) if (s !== undefined && (best === undefined || s.generation > best.generation)) best = s;
  if (best === undefined) throw new MarsError('BAD_STATE_DIR', `${fileName}: no valid emergency state slot`);
  return best;
}
