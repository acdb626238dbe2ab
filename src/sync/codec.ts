/**
 * The sync wire protocol: one codec for every message of the 'sync' channel (frame types
 * 0x30–0x39). docs/sync.md lays out every byte. All integers are little-endian; 64-bit
 * byte counts must be safe integers (< 2^53). Decoding checks everything that can be
 * checked without knowing the session (lengths, reserved bytes, versions, names,
 * alignment) and throws SYNC_BAD_MESSAGE; the sessions check offsets against the device
 * and the range being answered.
 */
import type { Frame } from '../net/index.js';
import type { ReplayPosition } from '../replay/position.js';
import { SyncError } from './errors.js';
import { CompressionId, compressionName, type CompressionName } from '../compress/index.js';
import { blockBytes, digestBytes, errorTextBytesMax, nameBytesMax, rangeBlocksMax, rangeBytesMax } from './limits.js';

/** Version of the sync protocol, carried by START and ACCEPT. */
export const syncProtocolVersion = 1;

export const SyncFrameType = {
  start: 0x30,
  accept: 0x31,
  digests: 0x32,
  copy: 0x33,
  blocks: 0x34,
  zeroes: 0x35,
  rangeDone: 0x36,
  finish: 0x37,
  finished: 0x38,
  error: 0x39,
  hello: 0x3a,
  blocksCompressed: 0x3b,
} as const;

/** Why a peer gave up, carried by ERROR. */
export const SyncErrorReason = { badMessage: 1, unknownResource: 2, sizeMismatch: 3, badVersion: 4, busy: 5, sourceIo: 6 } as const;
export type SyncErrorReasonName = keyof typeof SyncErrorReason;

export type SyncMessage =
  | { readonly kind: 'start'; readonly resource: string; readonly sizeBytes: number; readonly resumeFromBytes: number }
  | { readonly kind: 'accept'; readonly sizeBytes: number; readonly digestSeed: bigint; readonly startPosition: ReplayPosition }
  | { readonly kind: 'digests'; readonly offsetBytes: number; readonly digests: Buffer }
  | { readonly kind: 'copy'; readonly offsetBytes: number; readonly blocks: number }
  | { readonly kind: 'blocks'; readonly offsetBytes: number; readonly data: Buffer }
  | { readonly kind: 'zeroes'; readonly offsetBytes: number; readonly lengthBytes: number }
  | { readonly kind: 'range-done'; readonly offsetBytes: number; readonly blocks: number; readonly differingBlocks: number }
  | { readonly kind: 'finish' }
  | { readonly kind: 'finished'; readonly endPosition: ReplayPosition }
  | { readonly kind: 'error'; readonly reason: SyncErrorReasonName; readonly text: string }
  /** Target, before START: the compressions it can receive (src/compress). */
  | { readonly kind: 'hello'; readonly compressions: readonly CompressionName[] }
  /** Source: a BLOCKS run whose data is compressed; `rawBytes` is the run's length. */
  | { readonly kind: 'blocks-z'; readonly offsetBytes: number; readonly compression: CompressionName; readonly rawBytes: number; readonly data: Buffer };

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Fixed bytes before a START's resource name, an ACCEPT's position, a DIGESTS' digests. */
const startFixedBytes = 21;
const acceptFixedBytes = 20;
const positionFixedBytes = 21;
const digestsFixedBytes = 12;
const offsetBytes = 8;

function bad(why: string): SyncError {
  return new SyncError('SYNC_BAD_MESSAGE', `bad sync message: ${why}`);
}

/** Reads fields in order and refuses short or trailing bytes. */
class Reader {
  private at = 0;
  constructor(private readonly buffer: Buffer, private readonly what: string) {}
  need(n: number): void {
    if (this.buffer.length - this.at < n) throw bad(`${this.what} is too short`);
  }
  u8(): number {
    this.need(1);
    return this.buffer.readUInt8(this.at++);
  }
  u16(): number {
    this.need(2);
    const v = this.buffer.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buffer.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  u64big(): bigint {
    this.need(8);
    const v = this.buffer.readBigUInt64LE(this.at);
    this.at += 8;
    return v;
  }
  u64(field: string): number {
    const v = this.u64big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${this.what} ${field} too large`);
    return Number(v);
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buffer.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  name(field: string): string {
    const text = this.bytes(this.u8()).toString('latin1');
    if (!namePattern.test(text)) throw bad(`${this.what} ${field} is not a valid name`);
    return text;
  }
  rest(): Buffer {
    return this.bytes(this.buffer.length - this.at);
  }
  end(): void {
    if (this.at !== this.buffer.length) throw bad(`${this.what} has ${this.buffer.length - this.at} trailing bytes`);
  }
}

function nameField(name: string): Buffer {
  if (!namePattern.test(name) || name.length > nameBytesMax) throw new Error(`assertion failed: bad name '${name}'`);
  return Buffer.concat([Buffer.from([name.length]), Buffer.from(name, 'latin1')]);
}

function encodePosition(position: ReplayPosition): Buffer {
  const fixed = Buffer.alloc(positionFixedBytes - 1);
  fixed.writeUInt32LE(position.logNumber, 0);
  fixed.writeBigUInt64LE(BigInt(position.offsetBytes), 4);
  fixed.writeBigUInt64LE(position.nextSeq, 12);
  return Buffer.concat([fixed, nameField(position.logHost)]);
}

function decodePosition(r: Reader): ReplayPosition {
  const logNumber = r.u32();
  if (logNumber < 1) throw bad('position log number 0');
  const offsetBytesValue = r.u64('position offset');
  const nextSeq = r.u64big();
  return { logNumber, logHost: r.name('position host'), offsetBytes: offsetBytesValue, nextSeq };
}

function withOffset(offsetBytesValue: number, rest: Buffer): Buffer {
  const head = Buffer.allocUnsafe(offsetBytes);
  head.writeBigUInt64LE(BigInt(offsetBytesValue), 0);
  return Buffer.concat([head, rest]);
}

function encodeStart(m: Extract<SyncMessage, { kind: 'start' }>): Buffer {
  const fixed = Buffer.alloc(startFixedBytes - 1);
  fixed.writeUInt8(syncProtocolVersion, 0);
  fixed.writeUInt8(m.resumeFromBytes > 0 ? 1 : 0, 1);
  fixed.writeBigUInt64LE(BigInt(m.sizeBytes), 4);
  fixed.writeBigUInt64LE(BigInt(m.resumeFromBytes), 12);
  return Buffer.concat([fixed, nameField(m.resource)]);
}

function encodeAccept(m: Extract<SyncMessage, { kind: 'accept' }>): Buffer {
  const fixed = Buffer.alloc(acceptFixedBytes);
  fixed.writeUInt8(syncProtocolVersion, 0);
  fixed.writeBigUInt64LE(BigInt(m.sizeBytes), 4);
  fixed.writeBigUInt64LE(m.digestSeed, 12);
  return Buffer.concat([fixed, encodePosition(m.startPosition)]);
}

function encodeDigests(m: Extract<SyncMessage, { kind: 'digests' }>): Buffer {
  const fixed = Buffer.alloc(digestsFixedBytes);
  fixed.writeBigUInt64LE(BigInt(m.offsetBytes), 0);
  fixed.writeUInt16LE(m.digests.length / digestBytes, 8);
  return Buffer.concat([fixed, m.digests]);
}

function encodeSmall(m: Extract<SyncMessage, { kind: 'copy' | 'zeroes' | 'range-done' | 'error' }>): Buffer {
  if (m.kind === 'copy') {
    const b = Buffer.alloc(digestsFixedBytes);
    b.writeBigUInt64LE(BigInt(m.offsetBytes), 0);
    b.writeUInt16LE(m.blocks, 8);
    return b;
  }
  if (m.kind === 'zeroes') {
    const b = Buffer.alloc(offsetBytes + 4);
    b.writeBigUInt64LE(BigInt(m.offsetBytes), 0);
    b.writeUInt32LE(m.lengthBytes, 8);
    return b;
  }
  if (m.kind === 'range-done') {
    const b = Buffer.alloc(offsetBytes + 4);
    b.writeBigUInt64LE(BigInt(m.offsetBytes), 0);
    b.writeUInt16LE(m.blocks, 8);
    b.writeUInt16LE(m.differingBlocks, 10);
    return b;
  }
  let text = Buffer.from(m.text, 'utf8');
  if (text.length > errorTextBytesMax) text = text.subarray(0, errorTextBytesMax);
  return Buffer.concat([Buffer.from([SyncErrorReason[m.reason], text.length]), text]);
}

/** Bytes a BLOCKS payload needs before its data (the offset). */
export const blocksHeaderBytes = offsetBytes;

/**
 * A BLOCKS payload built in place, without copying the data: `buffer` holds the data at
 * `dataAt`, and the 8 bytes before it (which the caller no longer needs) take the offset.
 */
export function blocksPayloadInPlace(buffer: Buffer, dataAt: number, dataBytes: number, offsetBytesValue: number): Buffer {
  if (dataAt < offsetBytes || dataAt + dataBytes > buffer.length || dataBytes === 0) throw new Error('assertion failed: no room for a BLOCKS header');
  buffer.writeBigUInt64LE(BigInt(offsetBytesValue), dataAt - offsetBytes);
  return buffer.subarray(dataAt - offsetBytes, dataAt + dataBytes);
}

/** The frame type and payload of a message (a broken invariant throws: callers build valid messages). */
export function encodeSyncMessage(m: SyncMessage): Frame {
  switch (m.kind) {
    case 'start':
      return { type: SyncFrameType.start, payload: encodeStart(m) };
    case 'accept':
      return { type: SyncFrameType.accept, payload: encodeAccept(m) };
    case 'digests':
      return { type: SyncFrameType.digests, payload: encodeDigests(m) };
    case 'copy':
      return { type: SyncFrameType.copy, payload: encodeSmall(m) };
    case 'blocks':
      return { type: SyncFrameType.blocks, payload: withOffset(m.offsetBytes, m.data) };
    case 'zeroes':
      return { type: SyncFrameType.zeroes, payload: encodeSmall(m) };
    case 'range-done':
      return { type: SyncFrameType.rangeDone, payload: encodeSmall(m) };
    case 'finish':
      return { type: SyncFrameType.finish, payload: Buffer.alloc(0) };
    case 'finished':
      return { type: SyncFrameType.finished, payload: encodePosition(m.endPosition) };
    case 'error':
      return { type: SyncFrameType.error, payload: encodeSmall(m) };
    case 'hello': {
      const ids = [...new Set(m.compressions.filter((c) => c !== 'none'))].map((c) => CompressionId[c]);
      return { type: SyncFrameType.hello, payload: Buffer.from([ids.length, ...ids]) };
    }
    case 'blocks-z': {
      if (m.compression === 'none' || m.rawBytes < 1 || m.rawBytes > rangeBytesMax || m.data.length < 1 || m.data.length > rangeBytesMax) throw new Error('assertion failed: bad BLOCKS_Z');
      const head = Buffer.alloc(offsetBytes + 5);
      head.writeBigUInt64LE(BigInt(m.offsetBytes), 0);
      head.writeUInt8(CompressionId[m.compression], 8);
      head.writeUInt32LE(m.rawBytes, 9);
      return { type: SyncFrameType.blocksCompressed, payload: Buffer.concat([head, m.data]) };
    }
  }
}

function checkVersionAndReserved(r: Reader, what: string, flagsAllowedMask: number): number {
  const version = r.u8();
  if (version !== syncProtocolVersion) throw new SyncError('SYNC_BAD_MESSAGE', `${what}: sync protocol version ${version}, this host speaks ${syncProtocolVersion}`);
  const flags = r.u8();
  if ((flags & ~flagsAllowedMask) !== 0 || r.u16() !== 0) throw bad(`${what} has reserved bits set`);
  return flags;
}

function aligned(offset: number, what: string): number {
  if (offset % blockBytes !== 0) throw bad(`${what} offset ${offset} is not a multiple of ${blockBytes}`);
  return offset;
}

function decodeStart(r: Reader): SyncMessage {
  const flags = checkVersionAndReserved(r, 'START', 1);
  const sizeBytes = r.u64('size');
  const resumeFromBytes = aligned(r.u64('resume offset'), 'START resume');
  if ((flags === 1) !== resumeFromBytes > 0) throw bad('START resume flag disagrees with its offset');
  if (resumeFromBytes > sizeBytes) throw bad('START resumes past the end of the device');
  return { kind: 'start', sizeBytes, resumeFromBytes, resource: r.name('resource') };
}

function decodeAccept(r: Reader): SyncMessage {
  checkVersionAndReserved(r, 'ACCEPT', 0);
  const sizeBytes = r.u64('size');
  const digestSeed = r.u64big();
  return { kind: 'accept', sizeBytes, digestSeed, startPosition: decodePosition(r) };
}

function decodeDigests(type: number, r: Reader): SyncMessage {
  const what = type === SyncFrameType.copy ? 'COPY' : 'DIGESTS';
  const offset = aligned(r.u64('offset'), what);
  const blocks = r.u16();
  if (r.u16() !== 0) throw bad(`${what} has reserved bits set`);
  if (blocks < 1 || blocks > rangeBlocksMax) throw bad(`${what} for ${blocks} blocks (1..${rangeBlocksMax})`);
  if (type === SyncFrameType.copy) return { kind: 'copy', offsetBytes: offset, blocks };
  const digests = r.rest();
  if (digests.length !== blocks * digestBytes) throw bad(`DIGESTS for ${blocks} blocks carries ${digests.length} bytes of digests, not ${blocks * digestBytes}`);
  return { kind: 'digests', offsetBytes: offset, digests };
}

function decodeRunOrDone(type: number, r: Reader): SyncMessage {
  const offset = aligned(r.u64('offset'), 'run');
  if (type === SyncFrameType.blocks) {
    const data = r.rest();
    if (data.length === 0 || data.length > rangeBytesMax) throw bad(`BLOCKS of ${data.length} bytes (1..${rangeBytesMax})`);
    return { kind: 'blocks', offsetBytes: offset, data };
  }
  if (type === SyncFrameType.zeroes) {
    const lengthBytes = r.u32();
    if (lengthBytes === 0 || lengthBytes > rangeBytesMax) throw bad(`ZEROES of ${lengthBytes} bytes (1..${rangeBytesMax})`);
    return { kind: 'zeroes', offsetBytes: offset, lengthBytes };
  }
  const blocks = r.u16();
  const differingBlocks = r.u16();
  if (blocks < 1 || blocks > rangeBlocksMax || differingBlocks > blocks) throw bad(`RANGE_DONE for ${differingBlocks} of ${blocks} blocks`);
  return { kind: 'range-done', offsetBytes: offset, blocks, differingBlocks };
}

function decodeError(r: Reader): SyncMessage {
  const code = r.u8();
  const reason = (Object.keys(SyncErrorReason) as SyncErrorReasonName[]).find((name) => SyncErrorReason[name] === code);
  if (reason === undefined) throw bad(`ERROR with unknown reason ${code}`);
  const text = r.bytes(r.u8()).toString('utf8');
  return { kind: 'error', reason, text };
}

function decodeBody(type: number, r: Reader): SyncMessage {
  switch (type) {
    case SyncFrameType.start:
      return decodeStart(r);
    case SyncFrameType.accept:
      return decodeAccept(r);
    case SyncFrameType.digests:
    case SyncFrameType.copy:
      return decodeDigests(type, r);
    case SyncFrameType.blocks:
    case SyncFrameType.zeroes:
    case SyncFrameType.rangeDone:
      return decodeRunOrDone(type, r);
    case SyncFrameType.finish:
      return { kind: 'finish' };
    case SyncFrameType.finished:
      return { kind: 'finished', endPosition: decodePosition(r) };
    case SyncFrameType.error:
      return decodeError(r);
    case SyncFrameType.hello: {
      const count = r.u8();
      const compressions: CompressionName[] = [];
      for (const id of r.bytes(count)) {
        const name = compressionName(id);
        if (name !== undefined && name !== 'none' && !compressions.includes(name)) compressions.push(name); // unknown ids: a newer peer's, ignored
      }
      return { kind: 'hello', compressions };
    }
    case SyncFrameType.blocksCompressed: {
      const offset = aligned(r.u64('offset'), 'run');
      const compression = compressionName(r.u8());
      const rawBytes = r.u32();
      const data = r.rest();
      if (compression === undefined || compression === 'none') throw bad('BLOCKS_Z names no known compression');
      if (rawBytes === 0 || rawBytes > rangeBytesMax) throw bad(`BLOCKS_Z of ${rawBytes} bytes (1..${rangeBytesMax})`);
      if (data.length === 0 || data.length > rangeBytesMax) throw bad(`BLOCKS_Z with ${data.length} compressed bytes`);
      return { kind: 'blocks-z', offsetBytes: offset, compression, rawBytes, data };
    }
    default:
      throw bad(`unknown frame type 0x${type.toString(16)} on the sync channel`);
  }
}

/** Decodes one frame of the sync channel; anything malformed throws SYNC_BAD_MESSAGE. */
export function decodeSyncMessage(frame: Frame): SyncMessage {
  const r = new Reader(frame.payload, `frame 0x${frame.type.toString(16)}`);
  const message = decodeBody(frame.type, r);
  r.end();
  return message;
}
