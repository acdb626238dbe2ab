/**
 * Compression of bulk data between hosts (log shipping and sync), negotiated per connection:
 * each side lists what it can, the pair uses the first algorithm of the sender's
 * preference that the receiver also has, or none (docs/replication.md, "Compression").
 *
 * | id | name      | what                                                    |
 * |----|-----------|---------------------------------------------------------|
 * | 0  | `none`    | plain bytes                                             |
 * | 1  | `deflate` | raw deflate (RFC 1951), level 1, Node's zlib            |
 * | 2  | `brotli`  | brotli quality 1, Node's zlib                           |
 * | 3  | `lz4`     | LZ4 block with a 4-byte size prefix (lz4-napi)          |
 * | 4  | `zstd`    | reserved: not sent (see below)                          |
 *
 * Every (de)compression runs off the main event loop: zlib's async API runs on libuv's
 * thread pool, lz4 on threads of its own (lz4-thread.ts says why). lz4 is optional: a host where
 * its native module does not load simply does not list it. zstd (@mongodb-js/zstd 1.x)
 * was measured and left out: its frames carry no content size and its decompress takes
 * no output bound, so a damaged frame could make the receiver allocate without limit;
 * every other codec here is bounded by the raw length the frame announces.
 *
 * Data that does not compress (random bytes, encrypted or already compressed data) is
 * sent plain: a chunk that shrinks by less than `compressGainMin` is sent as it was, and
 * the next `skipChunksAfterMiss` chunks are not even tried (CPU is not spent on it); each
 * further miss in a row doubles that skip, up to `skipChunksAfterMissMax`, and a chunk
 * that compresses brings it back to `skipChunksAfterMiss`.
 */
import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants as zlibConstants, deflateRaw, inflateRaw } from 'node:zlib';
import { createRequire } from 'node:module';
import { MarsError } from '../core/errors.js';
import { lz4ThreadsMax } from './limits.js';
import { lz4Compress, lz4Uncompress, lz4Warm, lz4WarmUp } from './lz4-worker.js';

export const CompressionId = { none: 0, deflate: 1, brotli: 2, lz4: 3, zstd: 4 } as const;
export type CompressionName = keyof typeof CompressionId;
export const compressionNames = Object.keys(CompressionId) as CompressionName[];

/** A chunk must shrink to at most this share of its size to be sent compressed. */
export const compressGainMin = 0.9;
/** After a chunk that did not compress, this many chunks are sent plain without trying… */
export const skipChunksAfterMiss = 16;
/**
 * …and after each further miss in a row twice as many, up to this many. A sync of random
 * bytes tried 31 of 512 ranges with a fixed skip of 16 (lz4 on 1 MiB of random bytes plus
 * the copy to its thread: about 10 ms of CPU each, a third of the source's CPU on loopback);
 * with the doubling 7. Data that starts to compress again is found within this many
 * chunks (128 MiB of 1 MiB sync ranges or fetch chunks sent plain at most).
 */
export const skipChunksAfterMissMax = 128;
/** Chunks smaller than this are sent plain (headers would eat the gain). */
export const compressBytesMin = 512;

const deflateAsync = promisify(deflateRaw);
const inflateAsync = promisify(inflateRaw);
const brotliAsync = promisify(brotliCompress);
const unbrotliAsync = promisify(brotliDecompress);

interface Codec {
  compress(data: Buffer): Promise<Buffer>;
  /** Decompresses; output beyond `rawBytes` is an error (never allocated beyond it by zlib). */
  decompress(data: Buffer, rawBytes: number): Promise<Buffer>;
}

const require = createRequire(import.meta.url);

function optional(name: string): unknown {
  try {
    return require(name);
  } catch {
    return undefined;
  }
}

function codecs(): Partial<Record<CompressionName, Codec>> {
  const table: Partial<Record<CompressionName, Codec>> = {
    deflate: {
      compress: (data) => deflateAsync(data, { level: 1 }),
      decompress: (data, rawBytes) => inflateAsync(data, { maxOutputLength: Math.max(1, rawBytes) }),
    },
    brotli: {
      compress: (data) => brotliAsync(data, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 1, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: data.length } }),
      decompress: (data, rawBytes) => unbrotliAsync(data, { maxOutputLength: Math.max(1, rawBytes) }),
    },
  };
  // Loaded here only to learn whether this host can do lz4; the work runs on the lz4 thread.
  if (optional('lz4-napi') !== undefined) {
    table.lz4 = {
      compress: (data) => lz4Compress(data),
      decompress: (data, rawBytes) => {
        // The 4-byte little-endian size prefix is checked before the library allocates.
        if (data.length < 4 || data.readUInt32LE(0) !== rawBytes) return Promise.reject(new Error('lz4 size prefix does not match the raw length'));
        return lz4Uncompress(data);
      },
    };
  }
  return table;
}

let table: Partial<Record<CompressionName, Codec>> | undefined;
function codec(name: CompressionName): Codec | undefined {
  table ??= codecs();
  return table[name];
}

/** What this host can do, best first (the order a sender prefers): lz4, brotli, deflate (docs/benchmarks.md, "WAN"). */
export function availableCompressions(): CompressionName[] {
  return (['lz4', 'brotli', 'deflate'] as const).filter((name) => codec(name) !== undefined);
}

export function compressionName(id: number): CompressionName | undefined {
  return compressionNames.find((name) => CompressionId[name] === id);
}

/**
 * Parses `marsd --compression LIST`: names separated by commas, in order of preference;
 * `none` alone turns compression off. Names this host cannot do are refused.
 */
export function parseCompressionList(text: string): CompressionName[] {
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 1 && names[0] === 'none') return [];
  const can = availableCompressions();
  for (const name of names) {
    if (!can.includes(name as CompressionName)) throw new MarsError('EINVAL', `bad --compression '${text}': '${name}' is not one of ${can.join(', ')} (or none alone)`);
  }
  if (names.length === 0) throw new MarsError('EINVAL', `bad --compression '${text}': name at least one of ${can.join(', ')}, or none`);
  return [...new Set(names)] as CompressionName[];
}

/** The algorithm a sender with preference `ours` uses towards a receiver that can do `theirs`. */
export function pickCompression(ours: readonly CompressionName[], theirs: readonly CompressionName[]): CompressionName {
  return ours.find((name) => name !== 'none' && theirs.includes(name)) ?? 'none';
}

export async function decompress(name: CompressionName, data: Buffer, rawBytes: number): Promise<Buffer> {
  const c = codec(name);
  if (name === 'none' || c === undefined) throw new MarsError('BAD_REQUEST', `cannot decompress ${name}`);
  let out: Buffer;
  try {
    out = await c.decompress(data, rawBytes);
  } catch (err) {
    throw new MarsError('BAD_REQUEST', `a ${name} frame does not decompress: ${(err as Error).message}`);
  }
  if (out.length !== rawBytes) throw new MarsError('BAD_REQUEST', `a ${name} frame decompresses to ${out.length} bytes, not the ${rawBytes} it announces`);
  return out;
}

/** One sender's compressor: tries its algorithm on each chunk, sends plain what does not compress. */
export class Compressor {
  private skip = 0;
  /** The skip after the next miss: `skipChunksAfterMiss`, doubled by each miss in a row. */
  private nextSkip = skipChunksAfterMiss;
  /** The last chunk tried did not compress; and how many tries are running now. */
  private lastMissed = false;
  private tryingCount = 0;
  /** Raw bytes offered, bytes sent (compressed or not), and chunks sent plain because they did not compress. */
  rawBytes = 0;
  sentBytes = 0;
  missed = 0;
  /** Chunks the algorithm ran on. */
  tried = 0;

  constructor(readonly name: CompressionName) {}

  /**
   * Gets the algorithm going ahead of the first chunk (lz4: starts its threads, a median of
   * 375–411 ms on a busy 2-vCPU machine, bench/sync-first-byte.ts), with small jobs whose results are dropped (one per lz4 thread: a
   * chunk goes to the thread with the fewest jobs, and would start the other one); nothing
   * waits for them. `threads`: how many lz4 threads the sender needs running (all by
   * default; one for a sender that compresses one chunk at a time: each costs about 0.1 s
   * of CPU to start). A chunk given while a thread is still starting waits for that
   * thread, not for another one started from scratch.
   */
  warmUp(threads = lz4ThreadsMax): void {
    if (this.name === 'lz4') {
      if (codec('lz4') !== undefined) lz4WarmUp(threads);
      return;
    }
    const c = this.name === 'none' ? undefined : codec(this.name);
    c?.compress(Buffer.alloc(compressBytesMin)).catch(() => undefined);
  }

  /** False while the algorithm would first have to start (lz4: while the thread a chunk would go to has not answered once; see warmUp). */
  get warm(): boolean {
    return this.name !== 'lz4' || lz4Warm();
  }

  /**
   * The chunk to send: compressed with this algorithm, or undefined to send it plain. After
   * a miss, only one chunk is tried at a time: a sender that compresses several chunks
   * ahead (the fetch server) would otherwise try every chunk in flight before the miss is
   * known, and spend on data that does not compress several times the CPU the skip saves.
   */
  async compress(data: Buffer): Promise<Buffer | undefined> {
    this.rawBytes += data.length;
    const c = this.name === 'none' ? undefined : codec(this.name);
    if (c === undefined || data.length < compressBytesMin || this.skip > 0 || (this.lastMissed && this.tryingCount > 0)) {
      if (this.skip > 0) this.skip--;
      this.sentBytes += data.length;
      return undefined;
    }
    this.tried++;
    this.tryingCount++;
    let out: Buffer;
    try {
      out = await c.compress(data);
    } finally {
      this.tryingCount--;
    }
    if (out.length > data.length * compressGainMin) {
      this.missed++;
      this.lastMissed = true;
      this.skip = this.nextSkip;
      this.nextSkip = Math.min(skipChunksAfterMissMax, this.nextSkip * 2);
      this.sentBytes += data.length;
      return undefined;
    }
    this.lastMissed = false;
    this.nextSkip = skipChunksAfterMiss;
    this.sentBytes += out.length;
    return out;
  }
}
