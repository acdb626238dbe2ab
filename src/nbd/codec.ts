/**
 * The one codec of the NBD wire records we use: greeting, options and their replies,
 * requests and simple replies. Pure functions over Buffers, shared by the server and the
 * client so that both read the same bytes the same way. docs/nbd.md has the byte tables.
 */
import { NbdInfo, NbdMagic, NbdWire } from './protocol.js';

const TWO_POW_32 = 0x1_0000_0000;

/** A request header as received. `offsetBytes` may exceed 2^53 only for nonsense offsets; callers range-check it. */
export interface RequestHeader {
  readonly magic: number;
  readonly flags: number;
  readonly type: number;
  readonly handle: bigint;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export interface OptionHeader {
  readonly magic: bigint;
  readonly option: number;
  readonly lengthBytes: number;
}

export interface OptionReplyHeader {
  readonly magic: bigint;
  readonly option: number;
  readonly replyType: number;
  readonly lengthBytes: number;
}

export interface SimpleReplyHeader {
  readonly magic: number;
  readonly error: number;
  readonly handle: bigint;
}

/** What NBD_OPT_INFO and NBD_OPT_GO carry. */
export interface GoRequest {
  readonly exportName: string;
  readonly infoRequests: readonly number[];
}

export interface BlockSizeInfo {
  readonly minBytes: number;
  readonly preferredBytes: number;
  readonly maxBytes: number;
}

function readUint64(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * TWO_POW_32 + buf.readUInt32BE(at + 4);
}

function writeUint64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_POW_32), at);
  buf.writeUInt32BE(value % TWO_POW_32, at + 4);
}

// ---- handshake, server side ----

export function encodeGreeting(handshakeFlags: number): Buffer {
  const buf = Buffer.allocUnsafe(NbdWire.GREETING_BYTES);
  buf.writeBigUInt64BE(NbdMagic.INIT_PASSWD, 0);
  buf.writeBigUInt64BE(NbdMagic.IHAVEOPT, 8);
  buf.writeUInt16BE(handshakeFlags, 16);
  return buf;
}

export function decodeOptionHeader(buf: Buffer): OptionHeader {
  return { magic: buf.readBigUInt64BE(0), option: buf.readUInt32BE(8), lengthBytes: buf.readUInt32BE(12) };
}

export function encodeOptionReply(option: number, replyType: number, data?: Buffer): Buffer {
  const dataBytes = data?.length ?? 0;
  const buf = Buffer.allocUnsafe(NbdWire.OPTION_REPLY_HEADER_BYTES + dataBytes);
  buf.writeBigUInt64BE(NbdMagic.OPTION_REPLY, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(replyType, 12);
  buf.writeUInt32BE(dataBytes, 16);
  data?.copy(buf, NbdWire.OPTION_REPLY_HEADER_BYTES);
  return buf;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags and (unless NO_ZEROES) 124 zero bytes. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const zeroes = noZeroes ? 0 : NbdWire.EXPORT_NAME_ZEROES_BYTES;
  const buf = Buffer.alloc(NbdWire.EXPORT_NAME_REPLY_BYTES + zeroes);
  writeUint64(buf, sizeBytes, 0);
  buf.writeUInt16BE(transmissionFlags, 8);
  return buf;
}

/** Data of an NBD_REP_SERVER reply: name length + name. */
export function encodeServerEntry(name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const buf = Buffer.allocUnsafe(4 + nameBytes.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  return buf;
}

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const buf = Buffer.allocUnsafe(12);
  buf.writeUInt16BE(NbdInfo.EXPORT, 0);
  writeUint64(buf, sizeBytes, 2);
  buf.writeUInt16BE(transmissionFlags, 10);
  return buf;
}

export function encodeInfoBlockSize(info: BlockSizeInfo): Buffer {
  const buf = Buffer.allocUnsafe(14);
  buf.writeUInt16BE(NbdInfo.BLOCK_SIZE, 0);
  buf.writeUInt32BE(info.minBytes, 2);
  buf.writeUInt32BE(info.preferredBytes, 6);
  buf.writeUInt32BE(info.maxBytes, 10);
  return buf;
}

export function encodeInfoName(name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const buf = Buffer.allocUnsafe(2 + nameBytes.length);
  buf.writeUInt16BE(NbdInfo.NAME, 0);
  nameBytes.copy(buf, 2);
  return buf;
}

/**
 * Parses the payload of NBD_OPT_INFO / NBD_OPT_GO; undefined when malformed (lengths that
 * do not add up to the option length, a name over the string limit, a NUL in the name).
 */
export function decodeGoRequest(data: Buffer): GoRequest | undefined {
  if (data.length < 6) return undefined;
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 6 || nameBytes > NbdWire.STRING_BYTES_MAX) return undefined;
  const name = data.subarray(4, 4 + nameBytes);
  if (name.includes(0)) return undefined;
  const count = data.readUInt16BE(4 + nameBytes);
  if (data.length !== 4 + nameBytes + 2 + 2 * count) return undefined;
  const infoRequests: number[] = [];
  for (let i = 0; i < count; i++) infoRequests.push(data.readUInt16BE(4 + nameBytes + 2 + 2 * i));
  return { exportName: name.toString('utf8'), infoRequests };
}

// ---- handshake, client side ----

export function encodeClientFlags(flags: number): Buffer {
  const buf = Buffer.allocUnsafe(NbdWire.CLIENT_FLAGS_BYTES);
  buf.writeUInt32BE(flags, 0);
  return buf;
}

export function encodeOption(option: number, data?: Buffer): Buffer {
  const dataBytes = data?.length ?? 0;
  const buf = Buffer.allocUnsafe(NbdWire.OPTION_HEADER_BYTES + dataBytes);
  buf.writeBigUInt64BE(NbdMagic.IHAVEOPT, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(dataBytes, 12);
  data?.copy(buf, NbdWire.OPTION_HEADER_BYTES);
  return buf;
}

export function encodeGoRequest(request: GoRequest): Buffer {
  const name = Buffer.from(request.exportName, 'utf8');
  const buf = Buffer.allocUnsafe(4 + name.length + 2 + 2 * request.infoRequests.length);
  buf.writeUInt32BE(name.length, 0);
  name.copy(buf, 4);
  let at = buf.writeUInt16BE(request.infoRequests.length, 4 + name.length);
  for (const info of request.infoRequests) at = buf.writeUInt16BE(info, at);
  return buf;
}

export function decodeOptionReplyHeader(buf: Buffer): OptionReplyHeader {
  return {
    magic: buf.readBigUInt64BE(0),
    option: buf.readUInt32BE(8),
    replyType: buf.readUInt32BE(12),
    lengthBytes: buf.readUInt32BE(16),
  };
}

export function decodeUint64(buf: Buffer, at: number): number {
  return readUint64(buf, at);
}

// ---- transmission ----

export function decodeRequestHeader(buf: Buffer): RequestHeader {
  return {
    magic: buf.readUInt32BE(0),
    flags: buf.readUInt16BE(4),
    type: buf.readUInt16BE(6),
    handle: buf.readBigUInt64BE(8),
    offsetBytes: readUint64(buf, 16),
    lengthBytes: buf.readUInt32BE(24),
  };
}

export function encodeRequestHeader(request: Omit<RequestHeader, 'magic'>): Buffer {
  const buf = Buffer.allocUnsafe(NbdWire.REQUEST_HEADER_BYTES);
  buf.writeUInt32BE(NbdMagic.REQUEST, 0);
  buf.writeUInt16BE(request.flags, 4);
  buf.writeUInt16BE(request.type, 6);
  buf.writeBigUInt64BE(request.handle, 8);
  writeUint64(buf, request.offsetBytes, 16);
  buf.writeUInt32BE(request.lengthBytes, 24);
  return buf;
}

export function encodeSimpleReply(error: number, handle: bigint): Buffer {
  const buf = Buffer.allocUnsafe(NbdWire.SIMPLE_REPLY_HEADER_BYTES);
  encodeSimpleReplyInto(buf, 0, error, handle);
  return buf;
}

/** Writes a simple reply header into `buf` at `at` (SIMPLE_REPLY_HEADER_BYTES bytes). */
export function encodeSimpleReplyInto(buf: Buffer, at: number, error: number, handle: bigint): void {
  buf.writeUInt32BE(NbdMagic.SIMPLE_REPLY, at);
  buf.writeUInt32BE(error, at + 4);
  buf.writeBigUInt64BE(handle, at + 8);
}

export function decodeSimpleReply(buf: Buffer): SimpleReplyHeader {
  return { magic: buf.readUInt32BE(0), error: buf.readUInt32BE(4), handle: buf.readBigUInt64BE(8) };
}
