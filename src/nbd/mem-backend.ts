/**
 * An in-memory BlockBackend: one Buffer of fixed size. For tests, the demo and as the
 * simplest possible reference of the BlockBackend contract. Nothing is volatile, so
 * FUA and flush have nothing to do. Trim zeroes the range, so
 * reads after a trim are deterministic (the spec allows any content there).
 */
import { assert } from '../core/errors.js';
import type { BlockBackend } from './backend.js';

export class MemBackend implements BlockBackend {
  readonly canMultiConn = true;
  private readonly data: Buffer;

  constructor(readonly sizeBytes: number) {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, `bad size ${sizeBytes}`);
    this.data = Buffer.alloc(sizeBytes);
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes);
    // A copy: the caller may still be sending it when a later write changes the disk.
    return Promise.resolve(Buffer.from(this.data.subarray(offsetBytes, offsetBytes + lengthBytes)));
  }

  write(offsetBytes: number, data: Buffer): Promise<void> {
    this.checkRange(offsetBytes, data.length);
    data.copy(this.data, offsetBytes);
    return Promise.resolve();
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.writeZeroes(offsetBytes, lengthBytes);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes);
    this.data.fill(0, offsetBytes, offsetBytes + lengthBytes);
    return Promise.resolve();
  }

  /** A copy of the whole disk, for tests. */
  snapshot(): Buffer {
    return Buffer.from(this.data);
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    assert(offsetBytes >= 0 && lengthBytes >= 0 && offsetBytes + lengthBytes <= this.sizeBytes, `range ${offsetBytes}+${lengthBytes} outside ${this.sizeBytes}`);
  }
}
