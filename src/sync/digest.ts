/**
 * Block digests: xxh64 (seeded) of each 4 KiB block of a range, 8 bytes little-endian
 * each. xxh64 because it is the fastest 64-bit hash available here at 4 KiB (measured in
 * docs/sync.md); 64 bits because a missed difference must be negligible over the whole
 * device (2^-64 per block). The seed is chosen afresh by the source for every session,
 * so data written on the primary cannot be crafted in advance to collide with what the
 * secondary holds. The last block of a device whose size is not a multiple of 4 KiB is
 * digested over the bytes it has.
 */
import { xxh64 } from '@node-rs/xxhash';
import { assert } from '../core/errors.js';
import { blockBytes, digestBytes } from './limits.js';

/** Blocks needed to cover `lengthBytes` (the last one may be short). */
export function blocksIn(lengthBytes: number): number {
  return Math.ceil(lengthBytes / blockBytes);
}

/** The digests of every block of `data`, written into `out` (8 bytes each) or a new buffer. */
export function blockDigests(data: Buffer, seed: bigint, out: Buffer = Buffer.allocUnsafe(blocksIn(data.length) * digestBytes)): Buffer {
  const blocks = blocksIn(data.length);
  assert(out.length >= blocks * digestBytes, 'digest buffer too small');
  for (let i = 0; i < blocks; i++) {
    const start = i * blockBytes;
    out.writeBigUInt64LE(xxh64(data.subarray(start, Math.min(start + blockBytes, data.length)), seed), i * digestBytes);
  }
  return out.subarray(0, blocks * digestBytes);
}

const zeroBlock = Buffer.alloc(blockBytes);

/** Whether bytes [start, end) of `data` (at most one block) are all zero; most data blocks fail on the first word. */
export function isZeroBlock(data: Buffer, start: number, end: number): boolean {
  if (end - start >= 8 && (data.readUInt32LE(start) !== 0 || data.readUInt32LE(start + 4) !== 0)) return false;
  return data.subarray(start, end).equals(zeroBlock.subarray(0, end - start));
}
