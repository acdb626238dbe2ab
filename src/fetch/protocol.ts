/**
 * The codec of the 'fetch' channel: the messages of log shipping, each the payload of one
 * frame of type 0x20..0x2f (docs/replication.md lays out every byte). Frames already carry
 * a CRC32C, so a damaged message never gets here; this module refuses everything that is
 * well-checksummed but wrong (a newer protocol version, lengths beyond the limits, bad
 * names, trailing bytes) with FETCH_PROTOCOL, and asserts its invariants when encoding.
 *
 * Every message starts with the same 8 bytes:
 *   0 version u8 (1)   1 reserved u8×3 (0)   4 requestId u32 LE
 * The client numbers its requests; every answer echoes the id of the request it answers,
 * so that answers to an abandoned request (after a new FETCH) are recognised and dropped.
 */
import { assert } from '../core/errors.js';
import { parseLogName } from '../log/index.js';
import { FetchError } from './errors.js';
import { fetchChunkBytesMax, fetchErrorMessageBytesMax, fetchFrameBytesMax, fetchListEntriesMax } from './limits.js';
import type { LogInfo } from './log-source.js';
import { CompressionId, compressionName, type CompressionName } from '../compress/index.js';

export const fetchProtocolVersion = 1;
export const fetchMessageHeaderBytes = 8;

/** Frame types of the fetch channel: 0x20.. client to server, 0x28.. server to client. */
export const FetchFrameType = {
  list: 0x20,
  fetch: 0x21,
  credit: 0x22,
  hello: 0x23,
  listReply: 0x28,
  data: 0x29,
  caughtUp: 0x2a,
  complete: 0x2b,
  error: 0x2c,
  helloReply: 0x2d,
  dataCompressed: 0x2e,
} as const;

/** Why a server refused a request (the ERROR message's reason byte). */
export const FetchRefusal = {
  badRequest: 1,
  noResource: 2,
  noLog: 3,
  beyondDurable: 4,
  sourceDamaged: 5,
  sourceIo: 6,
} as const;
export type FetchRefusalName = keyof typeof FetchRefusal;

/**
 * What a client can receive besides compressions, listed in its HELLO among the
 * compression ids (ids from 0x80 up; a server that does not know one ignores it, as it
 * ignores unknown compressions, and so never uses it).
 * - recordCheckedData: DATA frames whose frame payload checksum covers the DATA header
 *   (the first `fetchDataHeaderBytes`) only, not the chunk: the chunk's records carry
 *   their own checksums, which this client verifies before it stores a byte
 *   (src/net/frame.ts, selfCheckedFrameTypes). Saves a CRC32C pass over every byte on
 *   both sides (about 0.4 ms per MiB each on the development machine).
 */
export const FetchFeature = { recordCheckedData: 0x80 } as const;
export type FetchFeatureName = keyof typeof FetchFeature;
const fetchFeatureIdsFirst = 0x80;

export type FetchMessage =
  | { type: 'list'; requestId: number; resource: string; fromLogNumber: number }
  | { type: 'fetch'; requestId: number; resource: string; logName: string; fromOffsetBytes: number; creditEndBytes: number }
  | { type: 'credit'; requestId: number; creditEndBytes: number }
  | { type: 'list-reply'; requestId: number; logs: LogInfo[]; more: boolean }
  | { type: 'data'; requestId: number; offsetBytes: number; durableBytes: number; data: Buffer }
  | { type: 'caught-up'; requestId: number; durableBytes: number }
  | { type: 'complete'; requestId: number; finalBytes: number }
  | { type: 'error'; requestId: number; reason: FetchRefusalName; message: string }
  /** Client, first on a link: the compressions it can receive, and the features (absent: none). */
  | { type: 'hello'; requestId: number; compressions: CompressionName[]; features?: FetchFeatureName[] }
  /** Server: what it will use on this link (`none`: plain DATA only). */
  | { type: 'hello-reply'; requestId: number; compression: CompressionName }
  /** DATA whose chunk is compressed: `data` are the compressed bytes, `rawBytes` the log bytes they stand for. */
  | { type: 'data-z'; requestId: number; offsetBytes: number; durableBytes: number; compression: CompressionName; rawBytes: number; data: Buffer };

const resourcePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const u32Span = 0x1_0000_0000;
/** The data header of a DATA message: common header, offset u64, durable u64. */
export const fetchDataHeaderBytes = fetchMessageHeaderBytes + 16;
const listEntryBytesMax = 1 + 255 + 8 + 1;

export function isValidResourceName(name: string): boolean {
  return resourcePattern.test(name);
}

function protocolError(why: string): FetchError {
  return new FetchError('FETCH_PROTOCOL', `bad fetch message: ${why}`);
}

/** Appends fields to a growing list of buffers. */
export class Writer {
  readonly parts: Buffer[] = [];
  constructor(requestId: number) {
    assert(Number.isInteger(requestId) && requestId >= 0 && requestId < u32Span, `request id ${requestId} is not a u32`);
    const head = Buffer.alloc(fetchMessageHeaderBytes);
    head.writeUInt8(fetchProtocolVersion, 0);
    head.writeUInt32LE(requestId, 4);
    this.parts.push(head);
  }
  u8(value: number): this {
    this.parts.push(Buffer.from([value]));
    return this;
  }
  u16(value: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value);
    this.parts.push(b);
    return this;
  }
  u32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value);
    this.parts.push(b);
    return this;
  }
  u64(value: number): this {
    assert(Number.isSafeInteger(value) && value >= 0, `${value} is not a byte count`);
    const b = Buffer.alloc(8);
    b.writeUInt32LE(value % u32Span, 0);
    b.writeUInt32LE(Math.floor(value / u32Span), 4);
    this.parts.push(b);
    return this;
  }
  name(value: string): this {
    const bytes = Buffer.from(value, 'ascii');
    assert(bytes.length >= 1 && bytes.length <= 255, `name ${value} does not fit a length byte`);
    return this.u8(bytes.length).bytes(bytes);
  }
  bytes(value: Buffer): this {
    this.parts.push(value);
    return this;
  }
  done(): Buffer {
    const out = Buffer.concat(this.parts);
    assert(out.length <= fetchFrameBytesMax, 'fetch message exceeds a frame');
    return out;
  }
}

/** Reads fields with bounds checks; every fault is FETCH_PROTOCOL. */
export class Reader {
  private at = fetchMessageHeaderBytes;
  constructor(private readonly source: Buffer) {}
  private need(n: number): void {
    if (this.source.length - this.at < n) throw protocolError(`${this.source.length} bytes end before a field of ${n}`);
  }
  u8(): number {
    this.need(1);
    return this.source.readUInt8(this.at++);
  }
  u16(): number {
    this.need(2);
    const v = this.source.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.source.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  u64(): number {
    this.need(8);
    const low = this.source.readUInt32LE(this.at);
    const high = this.source.readUInt32LE(this.at + 4);
    this.at += 8;
    if (high >= 0x20_0000) throw protocolError('a byte count beyond 2^53');
    return high * u32Span + low;
  }
  ascii(n: number): string {
    this.need(n);
    const bytes = this.source.subarray(this.at, this.at + n);
    this.at += n;
    for (const byte of bytes) if (byte < 0x20 || byte > 0x7e) throw protocolError('a name with a non-printable byte');
    return bytes.toString('ascii');
  }
  rest(): Buffer {
    const out = this.source.subarray(this.at);
    this.at = this.source.length;
    return out;
  }
  end(): void {
    if (this.at !== this.source.length) throw protocolError(`${this.source.length - this.at} trailing bytes`);
  }
}

export function readResource(r: Reader): string {
  const name = r.ascii(r.u8());
  if (!isValidResourceName(name)) throw protocolError(`bad resource name ${JSON.stringify(name)}`);
  return name;
}

export function readLogName(r: Reader): string {
  const name = r.ascii(r.u8());
  if (parseLogName(name) === undefined) throw protocolError(`bad log name ${JSON.stringify(name)}`);
  return name;
}

/**
 * The same message as encodeFetchMessage, as parts to send without joining: DATA keeps
 * its chunk as a part of its own (no copy of 1 MiB per message); others are one part.
 */
export function encodeFetchMessageParts(m: FetchMessage): { type: number; parts: Buffer[] } {
  if (m.type === 'data') {
    assert(m.data.length >= 1 && m.data.length <= fetchChunkBytesMax, `data chunk of ${m.data.length} bytes`);
    assert(m.offsetBytes + m.data.length <= m.durableBytes, 'data beyond the durable end');
    return { type: FetchFrameType.data, parts: [new Writer(m.requestId).u64(m.offsetBytes).u64(m.durableBytes).done(), m.data] };
  }
  if (m.type === 'data-z') {
    checkCompressed(m);
    return { type: FetchFrameType.dataCompressed, parts: [new Writer(m.requestId).u64(m.offsetBytes).u64(m.durableBytes).u8(CompressionId[m.compression]).u32(m.rawBytes).done(), m.data] };
  }
  const { type, payload } = encodeFetchMessage(m);
  return { type, parts: [payload] };
}

export function encodeFetchMessage(m: FetchMessage): { type: number; payload: Buffer } {
  switch (m.type) {
    case 'list':
      assert(isValidResourceName(m.resource), 'bad resource name');
      return { type: FetchFrameType.list, payload: new Writer(m.requestId).u32(m.fromLogNumber).name(m.resource).done() };
    case 'fetch':
      assert(isValidResourceName(m.resource) && parseLogName(m.logName) !== undefined, 'bad resource or log name');
      assert(m.creditEndBytes >= m.fromOffsetBytes, 'credit ends before the start');
      return { type: FetchFrameType.fetch, payload: new Writer(m.requestId).u64(m.fromOffsetBytes).u64(m.creditEndBytes).name(m.resource).name(m.logName).done() };
    case 'credit':
      return { type: FetchFrameType.credit, payload: new Writer(m.requestId).u64(m.creditEndBytes).done() };
    case 'list-reply':
      return { type: FetchFrameType.listReply, payload: encodeListReply(m.requestId, m.logs, m.more) };
    case 'data':
      assert(m.data.length >= 1 && m.data.length <= fetchChunkBytesMax, `data chunk of ${m.data.length} bytes`);
      assert(m.offsetBytes + m.data.length <= m.durableBytes, 'data beyond the durable end');
      return { type: FetchFrameType.data, payload: new Writer(m.requestId).u64(m.offsetBytes).u64(m.durableBytes).bytes(m.data).done() };
    case 'caught-up':
      return { type: FetchFrameType.caughtUp, payload: new Writer(m.requestId).u64(m.durableBytes).done() };
    case 'complete':
      return { type: FetchFrameType.complete, payload: new Writer(m.requestId).u64(m.finalBytes).done() };
    case 'hello': {
      const ids = [...new Set(m.compressions.filter((c) => c !== 'none'))].map((c) => CompressionId[c] as number);
      for (const f of new Set(m.features ?? [])) ids.push(FetchFeature[f]);
      return { type: FetchFrameType.hello, payload: new Writer(m.requestId).u8(ids.length).bytes(Buffer.from(ids)).done() };
    }
    case 'hello-reply':
      return { type: FetchFrameType.helloReply, payload: new Writer(m.requestId).u8(CompressionId[m.compression]).done() };
    case 'data-z':
      checkCompressed(m);
      return { type: FetchFrameType.dataCompressed, payload: new Writer(m.requestId).u64(m.offsetBytes).u64(m.durableBytes).u8(CompressionId[m.compression]).u32(m.rawBytes).bytes(m.data).done() };
    case 'error': {
      const message = truncateUtf8(m.message, fetchErrorMessageBytesMax);
      return { type: FetchFrameType.error, payload: new Writer(m.requestId).u8(FetchRefusal[m.reason]).u16(message.length).bytes(message).done() };
    }
  }
}

function checkCompressed(m: Extract<FetchMessage, { type: 'data-z' }>): void {
  assert(m.compression !== 'none', 'compressed data without an algorithm');
  assert(m.rawBytes >= 1 && m.rawBytes <= fetchChunkBytesMax, `data chunk of ${m.rawBytes} bytes`);
  assert(m.data.length >= 1 && m.data.length <= fetchChunkBytesMax, `compressed chunk of ${m.data.length} bytes`);
  assert(m.offsetBytes + m.rawBytes <= m.durableBytes, 'data beyond the durable end');
}

function encodeListReply(requestId: number, logs: readonly LogInfo[], more: boolean): Buffer {
  assert(logs.length <= fetchListEntriesMax, `${logs.length} log entries exceed ${fetchListEntriesMax}`);
  const w = new Writer(requestId).u8(more ? 1 : 0).u16(logs.length);
  for (const log of logs) {
    assert(parseLogName(log.name) !== undefined, `bad log name ${log.name}`);
    w.name(log.name).u64(log.durableBytes).u8(log.complete ? 1 : 0);
  }
  return w.done();
}

/** The first `maxBytes` of a string's UTF-8, cut at a character boundary. */
function truncateUtf8(text: string, maxBytes: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** Decodes the payload of a fetch frame; throws FetchError FETCH_PROTOCOL for anything wrong. */
export function decodeFetchMessage(type: number, payload: Buffer): FetchMessage {
  if (payload.length < fetchMessageHeaderBytes) throw protocolError(`${payload.length} bytes are shorter than the header`);
  const version = payload.readUInt8(0);
  if (version !== fetchProtocolVersion) throw protocolError(`fetch protocol version ${version}, this host speaks ${fetchProtocolVersion}`);
  if (payload.readUInt8(1) !== 0 || payload.readUInt16LE(2) !== 0) throw protocolError('reserved bytes are not zero');
  const requestId = payload.readUInt32LE(4);
  const r = new Reader(payload);
  const message = decodeBody(type, requestId, r);
  r.end();
  return message;
}

function decodeBody(type: number, requestId: number, r: Reader): FetchMessage {
  switch (type) {
    case FetchFrameType.list: {
      const fromLogNumber = r.u32();
      return { type: 'list', requestId, resource: readResource(r), fromLogNumber };
    }
    case FetchFrameType.fetch: {
      const fromOffsetBytes = r.u64();
      const creditEndBytes = r.u64();
      if (creditEndBytes < fromOffsetBytes) throw protocolError('credit ends before the start');
      return { type: 'fetch', requestId, fromOffsetBytes, creditEndBytes, resource: readResource(r), logName: readLogName(r) };
    }
    case FetchFrameType.credit:
      return { type: 'credit', requestId, creditEndBytes: r.u64() };
    case FetchFrameType.listReply:
      return decodeListReply(requestId, r);
    case FetchFrameType.data:
      return decodeData(requestId, r);
    case FetchFrameType.caughtUp:
      return { type: 'caught-up', requestId, durableBytes: r.u64() };
    case FetchFrameType.complete:
      return { type: 'complete', requestId, finalBytes: r.u64() };
    case FetchFrameType.error:
      return decodeError(requestId, r);
    case FetchFrameType.hello:
      return decodeHello(requestId, r);
    case FetchFrameType.helloReply: {
      const compression = compressionName(r.u8());
      if (compression === undefined) throw protocolError('hello reply names an unknown compression');
      return { type: 'hello-reply', requestId, compression };
    }
    case FetchFrameType.dataCompressed:
      return decodeCompressedData(requestId, r);
    default:
      throw protocolError(`unknown fetch frame type 0x${type.toString(16)}`);
  }
}

function decodeHello(requestId: number, r: Reader): FetchMessage {
  const count = r.u8();
  const compressions: CompressionName[] = [];
  const features: FetchFeatureName[] = [];
  for (let i = 0; i < count; i++) {
    const id = r.u8();
    if (id >= fetchFeatureIdsFirst) {
      const feature = (Object.keys(FetchFeature) as FetchFeatureName[]).find((f) => FetchFeature[f] === id);
      if (feature !== undefined && !features.includes(feature)) features.push(feature);
      continue;
    }
    const name = compressionName(id);
    if (name !== undefined && name !== 'none' && !compressions.includes(name)) compressions.push(name); // unknown ids: a newer peer's, ignored
  }
  return features.length === 0 ? { type: 'hello', requestId, compressions } : { type: 'hello', requestId, compressions, features };
}

function decodeListReply(requestId: number, r: Reader): FetchMessage {
  const flags = r.u8();
  if ((flags & ~1) !== 0) throw protocolError(`list flags 0x${flags.toString(16)}`);
  const count = r.u16();
  if (count > fetchListEntriesMax) throw protocolError(`${count} log entries exceed ${fetchListEntriesMax}`);
  const logs: LogInfo[] = [];
  for (let i = 0; i < count; i++) {
    const name = readLogName(r);
    const durableBytes = r.u64();
    const entryFlags = r.u8();
    if ((entryFlags & ~1) !== 0) throw protocolError(`log entry flags 0x${entryFlags.toString(16)}`);
    logs.push({ name, durableBytes, complete: entryFlags === 1 });
  }
  return { type: 'list-reply', requestId, logs, more: flags === 1 };
}

function decodeData(requestId: number, r: Reader): FetchMessage {
  const offsetBytes = r.u64();
  const durableBytes = r.u64();
  const data = r.rest();
  if (data.length === 0 || data.length > fetchChunkBytesMax) throw protocolError(`data chunk of ${data.length} bytes`);
  if (offsetBytes + data.length > durableBytes) throw protocolError('data beyond the durable end it announces');
  return { type: 'data', requestId, offsetBytes, durableBytes, data };
}

function decodeCompressedData(requestId: number, r: Reader): FetchMessage {
  const offsetBytes = r.u64();
  const durableBytes = r.u64();
  const compression = compressionName(r.u8());
  const rawBytes = r.u32();
  const data = r.rest();
  if (compression === undefined || compression === 'none') throw protocolError('compressed data names no known compression');
  if (rawBytes === 0 || rawBytes > fetchChunkBytesMax) throw protocolError(`data chunk of ${rawBytes} bytes`);
  if (data.length === 0 || data.length > fetchChunkBytesMax) throw protocolError(`compressed chunk of ${data.length} bytes`);
  if (offsetBytes + rawBytes > durableBytes) throw protocolError('data beyond the durable end it announces');
  return { type: 'data-z', requestId, offsetBytes, durableBytes, compression, rawBytes, data };
}

function decodeError(requestId: number, r: Reader): FetchMessage {
  const code = r.u8();
  const reason = (Object.keys(FetchRefusal) as FetchRefusalName[]).find((name) => FetchRefusal[name] === code);
  if (reason === undefined) throw protocolError(`unknown error reason ${code}`);
  const length = r.u16();
  if (length > fetchErrorMessageBytesMax) throw protocolError(`error message of ${length} bytes`);
  const text = r.rest();
  if (text.length !== length) throw protocolError('error message length mismatch');
  return { type: 'error', requestId, reason, message: text.toString('utf8') };
}

/** The largest LIST_REPLY, for the assertion that it fits a frame. */
export const fetchListReplyBytesMax = fetchMessageHeaderBytes + 3 + fetchListEntriesMax * listEntryBytesMax;
