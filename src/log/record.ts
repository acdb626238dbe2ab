/**
 * The log record codec, format version 1 (every byte is laid out in docs/log-format.md).
 *
 * Why a fixed 64-byte header with two checksums: the scanner must decide from the header
 * alone whether the bytes at an offset are a record (magic + header crc32c), and how many
 * bytes follow, before it reads a payload of up to 32 MiB. The payload has its own
 * checksum (xxh64: measured ~2.5x faster than crc32c here, see bench/checksums.ts), so a
 * reader can verify a record without trusting anything unverified.
 *
 * `syncedBytes` is the length of the log file known durable when the record was encoded;
 * it lets the scanner tell a torn tail (crash damage in the unsynced window) from
 * corruption of bytes that were already durable (see scanner.ts).
 *
 * Encoding asserts every invariant (a bad record here is a bug: callers validate input
 * with `checkEntryFields` first). Decoding never throws on bad bytes: it returns a typed
 * reason, and the scanner decides what that means.
 */
import { crc32c } from '@node-rs/crc32';
import { Xxh64, xxh64 } from '@node-rs/xxhash';
import { assert } from '../core/errors.js';

/** Bytes 89 4D 4C 47 on disk ("\x89MLG"): the high first byte is unlikely in text. */
export const recordMagic = 0x474c4d89;
export const recordFormatVersion = 1;
export const recordHeaderBytes = 64;
/** The largest device range and the largest payload of one record. */
export const recordPayloadBytesMax = 32 * 1024 * 1024;
export const recordBytesMax = recordHeaderBytes + recordPayloadBytesMax;
/** Offsets and lengths are JS numbers: device offsets stay below 2^53. */
const offsetBytesLimit = Number.MAX_SAFE_INTEGER;
const u64Limit = 1n << 64n;
const u32Span = 0x1_0000_0000;
const emptyPayload = Buffer.alloc(0);

/** Field offsets inside the header (little-endian). */
const at = {
  magic: 0,
  version: 4,
  kind: 6,
  flags: 7,
  seq: 8,
  lamport: 16,
  offsetBytes: 24,
  lengthBytes: 32,
  payloadBytes: 36,
  syncedBytes: 40,
  payloadChecksum: 48,
  reserved: 56,
  headerChecksum: 60,
} as const;

export type RecordKind = 'write' | 'trim' | 'zeroes';
const kindCodes: Record<RecordKind, number> = { write: 1, trim: 2, zeroes: 3 };
const kindsByCode: readonly (RecordKind | undefined)[] = [undefined, 'write', 'trim', 'zeroes'];

/** What a caller appends: a record without its seq (the writer assigns it). */
export type LogEntry =
  | { kind: 'write'; lamport: bigint; offsetBytes: number; payload: Buffer }
  | { kind: 'trim' | 'zeroes'; lamport: bigint; offsetBytes: number; lengthBytes: number };

export type LogRecord =
  | { kind: 'write'; seq: bigint; lamport: bigint; offsetBytes: number; payload: Buffer }
  | { kind: 'trim' | 'zeroes'; seq: bigint; lamport: bigint; offsetBytes: number; lengthBytes: number };

/** A header that passed every check on its own (the payload is not verified yet). */
export interface RecordHeader {
  kind: RecordKind;
  seq: bigint;
  lamport: bigint;
  offsetBytes: number;
  lengthBytes: number;
  payloadBytes: number;
  syncedBytes: number;
  payloadChecksum: bigint;
}

export type HeaderFault =
  | 'short'
  | 'bad-magic'
  | 'bad-header-checksum'
  | 'bad-version'
  | 'bad-kind'
  | 'bad-flags'
  | 'bad-reserved'
  | 'bad-length'
  | 'bad-offset';

export type DecodedHeader = { ok: true; header: RecordHeader } | { ok: false; fault: HeaderFault; detail: string };

/** The device range length of a record (for a WRITE, its payload length). */
export function recordLengthBytes(record: LogEntry): number {
  return record.kind === 'write' ? record.payload.length : record.lengthBytes;
}

/** Bytes the record occupies in the log file. */
export function recordEncodedBytes(record: { kind: 'write'; payload: Buffer } | { kind: 'trim' | 'zeroes' }): number {
  return recordHeaderBytes + (record.kind === 'write' ? record.payload.length : 0);
}

/** The payload checksum of format version 1: xxh64 with seed 0 (of an empty payload too). */
export function payloadChecksum(payload: Uint8Array): bigint {
  return xxh64(payload);
}

/**
 * Checks the fields a caller supplies; returns why they are invalid, or undefined.
 * Used at the edge (the writer turns a reason into EINVAL) and by the encoder's asserts.
 */
export function checkEntryFields(entry: LogEntry): string | undefined {
  const kind: unknown = entry.kind;
  if (kind !== 'write' && kind !== 'trim' && kind !== 'zeroes') return `unknown record kind ${String(kind)}`;
  if (typeof entry.lamport !== 'bigint' || entry.lamport < 0n || entry.lamport >= u64Limit) return `lamport ${entry.lamport} is not a u64`;
  if (!Number.isSafeInteger(entry.offsetBytes) || entry.offsetBytes < 0) return `offset ${entry.offsetBytes} is not a byte offset`;
  if (entry.kind === 'write') {
    if (!Buffer.isBuffer(entry.payload)) return 'a write needs a payload buffer';
    if (entry.payload.length > recordPayloadBytesMax) return `payload of ${entry.payload.length} bytes exceeds ${recordPayloadBytesMax}`;
  } else if (!Number.isSafeInteger(entry.lengthBytes) || entry.lengthBytes <= 0 || entry.lengthBytes > recordPayloadBytesMax) {
    return `length ${entry.lengthBytes} is not in 1..${recordPayloadBytesMax}`;
  }
  if (entry.offsetBytes + recordLengthBytes(entry) > offsetBytesLimit) return 'the device range ends beyond 2^53';
  return undefined;
}

export function isValidSeq(seq: bigint): boolean {
  return typeof seq === 'bigint' && seq >= 0n && seq < u64Limit;
}

function writeU64Number(target: Buffer, offset: number, value: number): void {
  target.writeUInt32LE(value % u32Span, offset);
  target.writeUInt32LE(Math.floor(value / u32Span), offset + 4);
}

/** A u64 as a number, or -1 when it does not fit below 2^53. */
function readU64Number(source: Buffer, offset: number): number {
  const high = source.readUInt32LE(offset + 4);
  if (high >= 0x20_0000) return -1;
  return high * u32Span + source.readUInt32LE(offset);
}

/**
 * Encodes the 64-byte header of `entry` with `seq` into `target` at `offset` (its payload
 * checksum included; the payload itself is not copied). Every byte of the header is
 * written (target may come from Buffer.allocUnsafe).
 */
export function encodeRecordHeaderInto(target: Buffer, offset: number, entry: LogEntry, seq: bigint, syncedBytes: number): void {
  const fault = checkEntryFields(entry);
  assert(fault === undefined, `encoding an invalid record: ${fault}`);
  assert(isValidSeq(seq), `seq ${seq} is not a u64`);
  assert(Number.isSafeInteger(syncedBytes) && syncedBytes >= 0, `syncedBytes ${syncedBytes} is not a byte count`);
  const payload = entry.kind === 'write' ? entry.payload : emptyPayload;
  assert(offset >= 0 && offset + recordHeaderBytes <= target.length, 'header does not fit its target');
  target.writeUInt32LE(recordMagic, offset + at.magic);
  target.writeUInt16LE(recordFormatVersion, offset + at.version);
  target.writeUInt8(kindCodes[entry.kind], offset + at.kind);
  target.writeUInt8(0, offset + at.flags);
  target.writeBigUInt64LE(seq, offset + at.seq);
  target.writeBigUInt64LE(entry.lamport, offset + at.lamport);
  writeU64Number(target, offset + at.offsetBytes, entry.offsetBytes);
  target.writeUInt32LE(recordLengthBytes(entry), offset + at.lengthBytes);
  target.writeUInt32LE(payload.length, offset + at.payloadBytes);
  writeU64Number(target, offset + at.syncedBytes, syncedBytes);
  target.writeBigUInt64LE(payloadChecksum(payload), offset + at.payloadChecksum);
  target.writeUInt32LE(0, offset + at.reserved);
  target.writeUInt32LE(crc32c(target.subarray(offset, offset + at.headerChecksum)), offset + at.headerChecksum);
}

/** Encodes `entry` with `seq` into `target` at `offset`, header and payload; returns the bytes written. */
export function encodeRecordInto(target: Buffer, offset: number, entry: LogEntry, seq: bigint, syncedBytes: number): number {
  const payload = entry.kind === 'write' ? entry.payload : emptyPayload;
  assert(offset >= 0 && offset + recordHeaderBytes + payload.length <= target.length, 'record does not fit its target');
  encodeRecordHeaderInto(target, offset, entry, seq, syncedBytes);
  payload.copy(target, offset + recordHeaderBytes);
  return recordHeaderBytes + payload.length;
}

/** Encodes one record into a new buffer. */
export function encodeRecord(record: LogRecord, syncedBytes: number): Buffer {
  const target = Buffer.allocUnsafe(recordEncodedBytes(record));
  encodeRecordInto(target, 0, record, record.seq, syncedBytes);
  return target;
}

function fault(kind: HeaderFault, detail: string): DecodedHeader {
  return { ok: false, fault: kind, detail };
}

/**
 * Decodes and checks the header at `offset` of `source`. Checks, in order: length,
 * magic, header checksum (a header whose checksum fails with an unknown version is
 * damage; with a valid checksum it is 'bad-version'), then every field's plausibility.
 */
export function decodeHeader(source: Buffer, offset = 0): DecodedHeader {
  if (source.length - offset < recordHeaderBytes) return fault('short', `${source.length - offset} of ${recordHeaderBytes} header bytes`);
  const magic = source.readUInt32LE(offset + at.magic);
  if (magic !== recordMagic) return fault('bad-magic', `magic 0x${magic.toString(16)}`);
  const storedChecksum = source.readUInt32LE(offset + at.headerChecksum);
  if (crc32c(source.subarray(offset, offset + at.headerChecksum)) !== storedChecksum) return fault('bad-header-checksum', 'header checksum mismatch');
  const version = source.readUInt16LE(offset + at.version);
  if (version !== recordFormatVersion) return fault('bad-version', `format version ${version} (this reader knows ${recordFormatVersion})`);
  return decodeFields(source, offset);
}

/** The plausibility checks of a header whose checksum and version are good. */
function decodeFields(source: Buffer, offset: number): DecodedHeader {
  const kindCode = source.readUInt8(offset + at.kind);
  const kind = kindsByCode[kindCode];
  if (kind === undefined) return fault('bad-kind', `unknown kind ${kindCode}`);
  const flags = source.readUInt8(offset + at.flags);
  if (flags !== 0) return fault('bad-flags', `flags 0x${flags.toString(16)}`);
  if (source.readUInt32LE(offset + at.reserved) !== 0) return fault('bad-reserved', 'reserved bytes are not zero');
  const lengthBytes = source.readUInt32LE(offset + at.lengthBytes);
  const payloadBytes = source.readUInt32LE(offset + at.payloadBytes);
  if (lengthBytes > recordPayloadBytesMax || payloadBytes > recordPayloadBytesMax) return fault('bad-length', `length ${lengthBytes}, payload ${payloadBytes}`);
  if (kind === 'write' ? lengthBytes !== payloadBytes : payloadBytes !== 0 || lengthBytes === 0) {
    return fault('bad-length', `${kind} with length ${lengthBytes} and payload ${payloadBytes}`);
  }
  const offsetBytes = readU64Number(source, offset + at.offsetBytes);
  if (offsetBytes < 0 || offsetBytes + lengthBytes > offsetBytesLimit) return fault('bad-offset', 'device range ends beyond 2^53');
  const syncedBytes = readU64Number(source, offset + at.syncedBytes);
  if (syncedBytes < 0) return fault('bad-offset', 'syncedBytes beyond 2^53');
  return {
    ok: true,
    header: {
      kind,
      seq: source.readBigUInt64LE(offset + at.seq),
      lamport: source.readBigUInt64LE(offset + at.lamport),
      offsetBytes,
      lengthBytes,
      payloadBytes,
      syncedBytes,
      payloadChecksum: source.readBigUInt64LE(offset + at.payloadChecksum),
    },
  };
}

/** True when `payload` is exactly the payload the header describes. */
export function verifyPayload(header: RecordHeader, payload: Buffer): boolean {
  return payload.length === header.payloadBytes && payloadChecksum(payload) === header.payloadChecksum;
}

/** verifyPayload over a payload that arrived in pieces (in order), without joining them. */
export function verifyPayloadParts(header: RecordHeader, parts: readonly Buffer[]): boolean {
  if (parts.length <= 1) return verifyPayload(header, parts[0] ?? emptyPayload);
  let lengthBytes = 0;
  const hash = new Xxh64(0n);
  for (const part of parts) {
    hash.update(part);
    lengthBytes += part.length;
  }
  return lengthBytes === header.payloadBytes && hash.digest() === header.payloadChecksum;
}

/** The record of a verified header and payload (the payload is not copied). */
export function recordFromHeader(header: RecordHeader, payload: Buffer): LogRecord {
  const common = { seq: header.seq, lamport: header.lamport, offsetBytes: header.offsetBytes };
  if (header.kind === 'write') return { kind: 'write', ...common, payload };
  return { kind: header.kind, ...common, lengthBytes: header.lengthBytes };
}
