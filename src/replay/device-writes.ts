/**
 * Writing ranges of zeroes to a device in bounded chunks: TRIM and WRITE_ZEROES records
 * carry no payload, and a whole-device discard must not allocate a whole-device buffer.
 */
import type { StorageFile } from '../storage/storage.js';

export const zeroChunkBytes = 1024 * 1024;
const zeroChunk = Buffer.alloc(zeroChunkBytes);

export async function writeZeroes(device: StorageFile, offsetBytes: number, lengthBytes: number): Promise<void> {
  for (let done = 0; done < lengthBytes; done += zeroChunkBytes) {
    const n = Math.min(zeroChunkBytes, lengthBytes - done);
    await device.write(zeroChunk.subarray(0, n), offsetBytes + done);
  }
}
