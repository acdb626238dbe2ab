/**
 * One link's worth of a sync target's work: the ranges asked for on it and not yet
 * answered, in order (the source answers in order), and the checks that every run the
 * source sends lies inside the range being answered, after the previous run — so a
 * confused or hostile source can never make the target write outside what it asked for.
 */
import type { WriteJob } from '../storage/storage.js';
import { blocksIn } from './digest.js';
import { SyncError } from './errors.js';
import { blockBytes, rangeBytesMax } from './limits.js';
import type { RangeMode } from './range-mode.js';
import { Signal, type SyncLink } from './sync-link.js';

/** A range asked for (or being asked for) and not yet answered. */
export interface Slot {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly blocks: number;
  /** Asked for with digests (only differing blocks come back) or as a plain copy (every block). */
  readonly mode: RangeMode;
  /** DIGESTS or COPY has been sent: answers may come. */
  sent: boolean;
  /** Where the next run may start (runs come in order and do not overlap). */
  cursorBytes: number;
  differingBlocks: number;
  readonly jobs: WriteJob[];
  /** Gives the received frames' buffers back to the link once the range is written (Frame.release). */
  readonly releases: (() => void)[];
}

function bad(why: string): SyncError {
  return new SyncError('SYNC_BAD_MESSAGE', `bad sync answer: ${why}`);
}

export class TargetSession {
  open = true;
  accepted = false;
  finishSent = false;
  /** The pump is reading the target's own range to digest it. */
  reading = false;
  digestSeed = 0n;
  /** The next range to ask for. */
  nextBytes = 0;
  readonly slots: Slot[] = [];
  /** Wakes the pump: a slot freed, a resume, a rate change, a timer, the end. */
  readonly wake = new Signal();
  /** The pump's buffer for reading one range of the target's device (one per session: an old pump may still be reading). */
  readonly readBuffer = Buffer.allocUnsafe(rangeBytesMax);

  constructor(readonly link: SyncLink, private readonly sizeBytes: number) {}

  /** The host at the other end, where the link knows it. */
  get peerHost(): string | undefined {
    return this.link.peerHost;
  }

  /** A method, not a field test: the session may end while an await is pending. */
  isOpen(): boolean {
    return this.open;
  }

  /** Adds the next range to ask for. */
  newSlot(mode: RangeMode): Slot {
    const lengthBytes = Math.min(rangeBytesMax, this.sizeBytes - this.nextBytes);
    const slot: Slot = { offsetBytes: this.nextBytes, lengthBytes, blocks: blocksIn(lengthBytes), mode, sent: false, cursorBytes: this.nextBytes, differingBlocks: 0, jobs: [], releases: [] };
    this.nextBytes += lengthBytes;
    this.slots.push(slot);
    return slot;
  }

  /** Accepts one run of the range being answered, or throws SYNC_BAD_MESSAGE (nothing is written then). */
  addRun(offsetBytes: number, lengthBytes: number, job: WriteJob, release?: () => void): void {
    const slot = this.slots[0];
    if (slot === undefined || !slot.sent) throw bad(`a run at ${offsetBytes} while no range is asked for`);
    const end = offsetBytes + lengthBytes;
    const slotEnd = slot.offsetBytes + slot.lengthBytes;
    if (offsetBytes < slot.cursorBytes || end > slotEnd) throw bad(`a run [${offsetBytes}, ${end}) outside what is left of the range being answered [${slot.cursorBytes}, ${slotEnd})`);
    if (lengthBytes % blockBytes !== 0 && end !== this.sizeBytes) throw bad(`a run [${offsetBytes}, ${end}) that ends inside a block`);
    slot.jobs.push(job);
    if (release !== undefined) slot.releases.push(release);
    slot.cursorBytes = end;
    slot.differingBlocks += blocksIn(lengthBytes);
  }

  /** Takes the answered range off the queue, or throws SYNC_BAD_MESSAGE if RANGE_DONE does not match it. */
  rangeDone(offsetBytes: number, blocks: number, differingBlocks: number): Slot {
    const slot = this.slots[0];
    if (slot === undefined || !slot.sent) throw bad(`RANGE_DONE at ${offsetBytes} while no range is asked for`);
    if (offsetBytes !== slot.offsetBytes || blocks !== slot.blocks) throw bad(`RANGE_DONE for ${blocks} blocks at ${offsetBytes}, asked for ${slot.blocks} at ${slot.offsetBytes}`);
    if (differingBlocks !== slot.differingBlocks) throw bad(`RANGE_DONE says ${differingBlocks} blocks differ, ${slot.differingBlocks} arrived`);
    if (slot.mode === 'copy' && differingBlocks !== slot.blocks) throw bad(`RANGE_DONE of a copied range with ${differingBlocks} of ${slot.blocks} blocks`);
    this.slots.shift();
    return slot;
  }
}
