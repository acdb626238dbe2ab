/**
 * Counts what NBD clients ask of each export: requests, bytes and latency per operation,
 * by wrapping the export's BlockBackend. The NBD server and the logger are unchanged; the
 * wrapper adds two clock reads and a histogram update per request, and only when
 * `marsd --metrics` is given.
 */
import type { BlockBackend } from '../nbd/backend.js';

export const nbdOps = ['read', 'write', 'flush', 'trim', 'write_zeroes'] as const;
export type NbdOp = (typeof nbdOps)[number];

export interface NbdObserver {
  /** One finished request: its operation, device bytes, seconds it took, and whether it failed. */
  request(resource: string, op: NbdOp, bytes: number, seconds: number, failed: boolean): void;
}

export class MeteredBackend implements BlockBackend {
  constructor(
    private readonly resource: string,
    private readonly inner: BlockBackend,
    private readonly observer: NbdObserver,
  ) {}

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get canMultiConn(): boolean {
    return this.inner.canMultiConn;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.timed('read', lengthBytes, () => this.inner.read(offsetBytes, lengthBytes));
  }

  write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    return this.timed('write', data.length, () => this.inner.write(offsetBytes, data, fua));
  }

  flush(): Promise<void> {
    return this.timed('flush', 0, () => this.inner.flush());
  }

  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.timed('trim', lengthBytes, () => this.inner.trim(offsetBytes, lengthBytes, fua));
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    return this.timed('write_zeroes', lengthBytes, () => this.inner.writeZeroes(offsetBytes, lengthBytes, fua));
  }

  private async timed<T>(op: NbdOp, bytes: number, call: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint();
    let failed = true;
    try {
      const result = await call();
      failed = false;
      return result;
    } finally {
      this.observer.request(this.resource, op, bytes, Number(process.hrtime.bigint() - start) / 1e9, failed);
    }
  }
}
