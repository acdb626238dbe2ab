/** Helpers of the frame codec's tests: a byte stream cut anywhere, and an error's code. */
import { MarsError } from '../../src/core/errors.js';

export function errorCode(err: unknown): string | undefined {
  return err instanceof MarsError ? err.code : undefined;
}

/** Splits bytes at the given cut points (a stream delivered in arbitrary chunks). */
export function chunks(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(bytes.subarray(last, p));
    last = p;
  }
  out.push(bytes.subarray(last));
  return out;
}
