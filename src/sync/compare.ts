/**
 * The pure heart of fast full sync: given the digests of one range on both sides, which
 * blocks must travel, coalesced into runs so that a wholly different range is one
 * message and a few scattered changes are a few small ones. A differing block that is
 * all zeroes on the source travels as a zero run, without data. No I/O here.
 */
import { assert } from '../core/errors.js';
import { digestBytes } from './limits.js';

export type RunKind = 'data' | 'zero';

/** Consecutive differing blocks of one kind: blocks [firstBlock, firstBlock + blocks) of the range. */
export interface Run {
  readonly firstBlock: number;
  readonly blocks: number;
  readonly kind: RunKind;
}

function sameDigest(source: Buffer, target: Buffer, block: number): boolean {
  const at = block * digestBytes;
  return source.readUInt32LE(at) === target.readUInt32LE(at) && source.readUInt32LE(at + 4) === target.readUInt32LE(at + 4);
}

/** The runs of the blocks for which `differs(i)` holds, split by `isZero(i)` (asked only of those). */
function runsOf(blocks: number, differs: (block: number) => boolean, isZero: (block: number) => boolean): Run[] {
  const runs: Run[] = [];
  let open: { firstBlock: number; blocks: number; kind: RunKind } | undefined;
  for (let i = 0; i < blocks; i++) {
    if (!differs(i)) {
      if (open !== undefined) runs.push(open);
      open = undefined;
      continue;
    }
    const kind: RunKind = isZero(i) ? 'zero' : 'data';
    if (open !== undefined && open.kind === kind) {
      open.blocks++;
      continue;
    }
    if (open !== undefined) runs.push(open);
    open = { firstBlock: i, blocks: 1, kind };
  }
  if (open !== undefined) runs.push(open);
  return runs;
}

/**
 * The runs of blocks whose digests differ, in block order. `isZero(i)` says whether the
 * source's block i is all zeroes; it is asked only for differing blocks.
 */
export function differingRuns(sourceDigests: Buffer, targetDigests: Buffer, isZero: (block: number) => boolean): Run[] {
  assert(sourceDigests.length === targetDigests.length && sourceDigests.length % digestBytes === 0, 'digest lists of different lengths');
  return runsOf(sourceDigests.length / digestBytes, (i) => !sameDigest(sourceDigests, targetDigests, i), isZero);
}

/** Every block of a range, as runs (a COPY request: the target did not send digests). */
export function allRuns(blocks: number, isZero: (block: number) => boolean): Run[] {
  return runsOf(blocks, () => true, isZero);
}

/** Blocks covered by a list of runs. */
export function runBlocks(runs: readonly Run[]): number {
  let total = 0;
  for (const run of runs) total += run.blocks;
  return total;
}
