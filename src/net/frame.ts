/**
 * The frame: every message between peers, handshake included, travels in one. A fixed
 * 20-byte header (magic, version, type, length, two CRC32C checksums) lets a receiver
 * refuse garbage, a bad checksum or an oversized length from the header alone, before it
 * allocates or reads the payload. docs/network.md lays out every byte.
 *
 *   0  magic "MARS"         4  version u8 (1)     5  type u8     6  checked bytes u16
 *   8  payload bytes u32   12  payload crc32c    16  header crc32c (over bytes 0..15)
 *   20 payload
 *
 * The payload checksum covers the whole payload when `checked bytes` is 0 (every frame of
 * a peer that predates the field, which it sent as a reserved 0). A frame type whose
 * payload carries checksums of its own that the receiver verifies before it uses a byte
 * (fetch DATA: log records, each with a header CRC32C and a payload xxh64) may be sent
 * with the checksum over its first `checked bytes` only (the message's own header): the
 * sender then does not pass over the bulk bytes a second time, nor does the receiver.
 * Only to a receiver that said it accepts it (fetch: HELLO's feature list): an older
 * receiver refuses a non-zero field.
 */
import { crc32c } from '@node-rs/crc32';
import { MarsError } from '../core/errors.js';
import { decoderPoolBufferBytes, decoderPoolBuffersMax, decoderPooledBytesMin, frameBytesMax } from './limits.js';

export const frameMagic = Buffer.from('MARS', 'ascii');
export const frameVersion = 1;
export const frameHeaderBytes = 20;

/** Frame types. 0x20..0x2f are for log fetch, 0x30..0x3f for sync: those areas name them. */
export const FrameType = {
  helloInitiator: 0x01,
  helloResponder: 0x02,
  proof: 0x03,
  accept: 0x04,
  refuse: 0x05,
  keepalive: 0x06,
  meta: 0x10,
} as const;
export type FrameTypeName = keyof typeof FrameType;

export const fetchFrameTypesFirst = 0x20;

/**
 * Frame types whose payload may be checked in part (`checked bytes` > 0): fetch DATA
 * (0x29), whose chunk is log records that the client verifies one by one (record header
 * CRC32C, payload xxh64, offsets in sequence) before it stores or applies any of them. A
 * partial checksum on any other type is refused (FRAME_CORRUPT).
 */
export const selfCheckedFrameTypes: ReadonlySet<number> = new Set([0x29]);
export const syncFrameTypesLast = 0x3f;

export function isKnownFrameType(type: number): boolean {
  return (type >= FrameType.helloInitiator && type <= FrameType.keepalive) || type === FrameType.meta || (type >= fetchFrameTypesFirst && type <= syncFrameTypesLast);
}

export interface Frame {
  readonly type: number;
  readonly payload: Buffer;
  /**
   * Set when the payload lies in one of the decoder's reusable buffers: the consumer may
   * call it once it no longer needs the payload (nor any part of it); the buffer is then
   * reused for a later frame. Not calling it is safe (the buffer is left to the GC).
   */
  readonly release?: () => void;
}

export function encodeFrame(type: number, payload: Buffer): Buffer {
  if (!isKnownFrameType(type)) throw new Error(`assertion failed: unknown frame type ${type}`);
  if (payload.length > frameBytesMax) throw new Error(`assertion failed: frame payload of ${payload.length} bytes exceeds frameBytesMax`);
  const header = Buffer.alloc(frameHeaderBytes);
  frameMagic.copy(header, 0);
  header.writeUInt8(frameVersion, 4);
  header.writeUInt8(type, 5);
  header.writeUInt16LE(0, 6);
  header.writeUInt32LE(payload.length, 8);
  header.writeUInt32LE(crc32c(payload), 12);
  header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
  return Buffer.concat([header, payload]);
}

/** The largest `checked bytes` of a frame header (a u16; 0 means the whole payload). */
export const frameCheckedBytesMax = 0xffff;

/**
 * The same frame as `encodeFrame(type, concat(parts))`, as its header followed by the
 * parts themselves: a bulk sender (fetch DATA) writes a 1 MiB chunk without copying it
 * into a frame buffer. The payload checksum runs over the parts in order; with
 * `checkedBytes` > 0 (a type of selfCheckedFrameTypes, to a receiver that accepts it)
 * over the first that many bytes only.
 */
export function encodeFrameParts(type: number, parts: readonly Buffer[], checkedBytes = 0): Buffer[] {
  if (!isKnownFrameType(type)) throw new Error(`assertion failed: unknown frame type ${type}`);
  const length = parts.reduce((sum, p) => sum + p.length, 0);
  if (length > frameBytesMax) throw new Error(`assertion failed: frame payload of ${length} bytes exceeds frameBytesMax`);
  if (checkedBytes !== 0 && (!selfCheckedFrameTypes.has(type) || !Number.isInteger(checkedBytes) || checkedBytes < 0 || checkedBytes > Math.min(length, frameCheckedBytesMax))) {
    throw new Error(`assertion failed: a payload checksum over ${checkedBytes} of ${length} bytes of frame type ${type}`);
  }
  let crc = 0;
  let rest = checkedBytes === 0 ? length : checkedBytes;
  for (const p of parts) {
    if (rest === 0) break;
    const n = Math.min(rest, p.length);
    crc = crc32c(n === p.length ? p : p.subarray(0, n), crc);
    rest -= n;
  }
  const header = Buffer.alloc(frameHeaderBytes);
  frameMagic.copy(header, 0);
  header.writeUInt8(frameVersion, 4);
  header.writeUInt8(type, 5);
  header.writeUInt16LE(checkedBytes, 6);
  header.writeUInt32LE(length, 8);
  header.writeUInt32LE(crc, 12);
  header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
  return [header, ...parts];
}

/** A parsed header: `checkedBytes` 0 means the checksum covers the whole payload. */
interface FrameHeader {
  readonly type: number;
  readonly length: number;
  readonly payloadCrc: number;
  readonly checkedBytes: number;
}

function corrupt(reason: string): MarsError {
  return new MarsError('FRAME_CORRUPT', `bad frame: ${reason}`);
}

/**
 * Splits a byte stream into frames. The first bad frame throws (FRAME_CORRUPT,
 * FRAME_TOO_LARGE, FRAME_BAD_VERSION) and the decoder must not be used again: the
 * connection is closed, since nothing after a bad frame can be trusted.
 *
 * A payload that lies inside one received chunk is handed out as a view of it (no copy);
 * any other is copied, as its bytes arrive, into a buffer of its own (from the pool below
 * for large ones). A chunk may be borrowed (`push(view, undefined, true)`: a view of a
 * socket's reusable read buffer, rewritten by the next read): then no frame is a view of
 * it, and what of it is not yet parsed when push returns is copied (at most a header).
 */
export class FrameDecoder {
  /** Received bytes not yet parsed, in order; after push returns none of them is borrowed. */
  private rest: Buffer[] = [];
  private restBytes = 0;
  /** The last of `rest` is (a part of) the borrowed chunk of the push running now. */
  private restLastBorrowed = false;
  private header: FrameHeader | undefined;
  /** The payload being copied into its own buffer as it arrives (`pooled`: the buffer its release gives back). */
  private filling: { target: Buffer; pooled: Buffer | undefined; filledBytes: number } | undefined;
  /** Payload buffers released by consumers, for reuse (at most `decoderPoolBuffersMax`). */
  private readonly pool: Buffer[] = [];
  /** Set by the first `release`: from then on large payloads go into buffers of the pool's size. */
  private consumerReleases = false;

  /** `limitBytes` may be raised after the handshake (from handshakeFrameBytesMax to frameBytesMax). */
  constructor(public limitBytes: number = frameBytesMax) {}

  /** Bytes received and not yet handed out in a frame. */
  get bufferedBytes(): number {
    return this.restBytes + (this.filling?.filledBytes ?? 0);
  }

  /**
   * Decodes the frames complete so far. With `stopAfter`, stops after the first frame it
   * holds true for and leaves the rest buffered (the handshake's last frame: what follows
   * it is read under the raised limit, by `push(Buffer.alloc(0))`). With `borrowed`, the
   * chunk is valid only during this call (see the class comment).
   */
  push(chunk: Buffer, stopAfter?: (frame: Frame) => boolean, borrowed = false): Frame[] {
    if (chunk.length > 0) {
      this.rest.push(chunk);
      this.restBytes += chunk.length;
      this.restLastBorrowed = borrowed;
    }
    try {
      return this.decode(stopAfter);
    } finally {
      this.keepBorrowed();
    }
  }

  private decode(stopAfter: ((frame: Frame) => boolean) | undefined): Frame[] {
    const frames: Frame[] = [];
    for (;;) {
      if (stopAfter !== undefined && frames.length > 0 && stopAfter(frames[frames.length - 1]!)) return frames;
      if (this.header === undefined) {
        this.checkMagicPrefix();
        if (this.restBytes < frameHeaderBytes) return frames;
        this.header = this.parseHeader(this.takeHeader());
      }
      const payload = this.takePayload(this.header.length);
      if (payload === undefined) return frames;
      const checked = this.header.checkedBytes === 0 ? payload.bytes : payload.bytes.subarray(0, this.header.checkedBytes);
      if (crc32c(checked) !== this.header.payloadCrc) throw corrupt('payload checksum mismatch');
      const type = this.header.type;
      frames.push(payload.pooled === undefined ? { type, payload: payload.bytes } : { type, payload: payload.bytes, release: this.releaser(payload.pooled) });
      this.header = undefined;
    }
  }

  /** Refuses a stream that does not start like a frame as soon as its first bytes arrive. */
  private checkMagicPrefix(): void {
    const first = this.rest[0];
    if (first === undefined) return;
    const n = Math.min(first.length, frameMagic.length);
    if (!first.subarray(0, n).equals(frameMagic.subarray(0, n))) throw corrupt('bad magic (not a MARS peer)');
  }

  private parseHeader(header: Buffer): FrameHeader {
    if (!header.subarray(0, 4).equals(frameMagic)) throw corrupt('bad magic (not a MARS peer)');
    if (crc32c(header.subarray(0, 16)) !== header.readUInt32LE(16)) throw corrupt('header checksum mismatch');
    const version = header.readUInt8(4);
    if (version !== frameVersion) throw new MarsError('FRAME_BAD_VERSION', `frame version ${version}, this host speaks ${frameVersion}`);
    const type = header.readUInt8(5);
    if (!isKnownFrameType(type)) throw corrupt(`unknown frame type ${type}`);
    const length = header.readUInt32LE(8);
    if (length > this.limitBytes) throw new MarsError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${this.limitBytes}`);
    const checkedBytes = header.readUInt16LE(6);
    if (checkedBytes !== 0 && !selfCheckedFrameTypes.has(type)) throw corrupt(`a partial payload checksum on frame type ${type}`);
    if (checkedBytes > length) throw corrupt(`a payload checksum over ${checkedBytes} bytes of a ${length}-byte payload`);
    return { type, length, payloadCrc: header.readUInt32LE(12), checkedBytes };
  }

  private releaser(buffer: Buffer): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.consumerReleases = true;
      if (buffer.byteLength === decoderPoolBufferBytes && this.pool.length < decoderPoolBuffersMax) this.pool.push(buffer);
    };
  }

  /** The next header's bytes (rest holds at least that many): a view, read at once, or a copy when split. */
  private takeHeader(): Buffer {
    const first = this.rest[0]!;
    if (first.length >= frameHeaderBytes) {
      this.consume(frameHeaderBytes);
      return first.subarray(0, frameHeaderBytes);
    }
    const header = Buffer.allocUnsafe(frameHeaderBytes);
    this.copyOut(header, 0, frameHeaderBytes);
    return header;
  }

  /**
   * The payload of `n` bytes once it is all there, else undefined (what came is copied into
   * its buffer already). A view when it lies in one chunk of the receiver's own.
   */
  private takePayload(n: number): { bytes: Buffer; pooled: Buffer | undefined } | undefined {
    if (this.filling === undefined) {
      if (n === 0) return { bytes: Buffer.alloc(0), pooled: undefined };
      if (this.restBytes === 0) return undefined; // wait: the next chunk may hold all of it
      const first = this.rest[0]!;
      if (first.length >= n && !(this.restLastBorrowed && this.rest.length === 1)) {
        this.consume(n);
        return { bytes: first.subarray(0, n), pooled: undefined };
      }
      this.filling = this.payloadBuffer(n);
    }
    const f = this.filling;
    f.filledBytes += this.copyOut(f.target, f.filledBytes, n - f.filledBytes);
    if (f.filledBytes < n) return undefined;
    this.filling = undefined;
    return { bytes: f.target, pooled: f.pooled };
  }

  /** A buffer for a payload of `n` bytes that must be copied. */
  private payloadBuffer(n: number): { target: Buffer; pooled: Buffer | undefined; filledBytes: number } {
    if (n < decoderPooledBytesMin || n > decoderPoolBufferBytes) return { target: Buffer.allocUnsafe(n), pooled: undefined, filledBytes: 0 };
    // Buffers of the pool's size only once the consumer has shown it gives them back: a
    // consumer that keeps payloads (fetch) must not hold 1 MiB for each smaller one.
    const pooled = this.pool.pop() ?? (this.consumerReleases ? Buffer.allocUnsafeSlow(decoderPoolBufferBytes) : Buffer.allocUnsafe(n));
    return { target: pooled.subarray(0, n), pooled, filledBytes: 0 };
  }

  /** Copies up to `max` bytes from the front of rest into target at `at`, consuming them; returns how many. */
  private copyOut(target: Buffer, at: number, max: number): number {
    let done = 0;
    while (done < max && this.rest.length > 0) {
      const chunk = this.rest[0]!;
      const part = Math.min(chunk.length, max - done);
      chunk.copy(target, at + done, 0, part);
      done += part;
      this.consume(part);
    }
    return done;
  }

  /** Drops the first `n` bytes of rest (n <= the first chunk's length). */
  private consume(n: number): void {
    const first = this.rest[0]!;
    if (first.length === n) this.rest.shift();
    else this.rest[0] = first.subarray(n);
    this.restBytes -= n;
  }

  /** What is left of a borrowed chunk (the last of rest, if any of it is) becomes a copy of the decoder's own. */
  private keepBorrowed(): void {
    if (!this.restLastBorrowed) return;
    this.restLastBorrowed = false;
    const last = this.rest.length - 1;
    if (last >= 0) this.rest[last] = Buffer.from(this.rest[last]!);
  }
}
