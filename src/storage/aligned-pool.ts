/**
 * A fixed pool of page-aligned buffers for O_DIRECT writes.
 *
 * Why WebAssembly memory: O_DIRECT needs the memory address, the file offset and the
 * length of every write aligned to the device's block size, and JavaScript has no way to
 * ask for (or learn) the address of a Buffer. A WebAssembly.Memory is mapped by V8 on its
 * own pages, so its first byte is page-aligned, and so is every slot carved out of it at a
 * multiple of `directAlignBytes`. The memory never grows (growing would detach the views).
 *
 * The pool is process-wide and small (`alignedSlotsMax` slots of `alignedSlotBytes`); a
 * caller that finds it empty waits in FIFO order for a slot to come back, so the memory
 * spent on direct writes is bounded whatever the number of files writing.
 */
import { assert } from '../core/errors.js';

/** Alignment of offsets, lengths and addresses of direct writes (covers 512 and 4096-byte sectors). */
export const directAlignBytes = 4096;
/** Bytes of one slot: one direct pwrite at most. */
export const alignedSlotBytes = 1024 * 1024;
/** Slots in the pool (the whole pool is alignedSlotBytes × this, allocated on first use). */
export const alignedSlotsMax = 8;

const wasmPageBytes = 64 * 1024;

/** The one piece of the WebAssembly API used here (the compiler's libs leave WebAssembly out). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const WasmMemoryClass = (globalThis as unknown as { WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory } }).WebAssembly.Memory;

let memory: WasmMemory | undefined;
const free: Buffer[] = [];
const waiters: ((slot: Buffer) => void)[] = [];

function ensurePool(): void {
  if (memory !== undefined) return;
  const pages = (alignedSlotBytes * alignedSlotsMax) / wasmPageBytes;
  memory = new WasmMemoryClass({ initial: pages, maximum: pages });
  for (let i = 0; i < alignedSlotsMax; i++) free.push(Buffer.from(memory.buffer, i * alignedSlotBytes, alignedSlotBytes));
}

/** A free slot of alignedSlotBytes, page-aligned; waits while all are in use. Give it back with releaseAlignedSlot. */
export function acquireAlignedSlot(): Promise<Buffer> {
  ensurePool();
  const slot = free.pop();
  if (slot !== undefined) return Promise.resolve(slot);
  return new Promise((resolve) => waiters.push(resolve));
}

export function releaseAlignedSlot(slot: Buffer): void {
  assert(slot.length === alignedSlotBytes && memory !== undefined && slot.buffer === memory.buffer, 'not a slot of the aligned pool');
  const next = waiters.shift();
  if (next !== undefined) next(slot);
  else {
    assert(free.length < alignedSlotsMax, 'a slot was released twice');
    free.push(slot);
  }
}

/** Slots free now (for tests). */
export function alignedSlotsFree(): number {
  ensurePool();
  return free.length;
}
