/**
 * The worker thread behind FsFile.writeBatch: it receives many pieces for one file
 * descriptor in one message and writes them with plain synchronous pwrites. Random
 * writeback of 4 KiB pieces costs one thread hand-off per batch instead of one per piece.
 *
 * Message in:  { id, fd, data: ArrayBuffer, jobs: ArrayBuffer } where jobs holds a Float64Array
 *               of batchJobFields numbers per piece: positionBytes, dataOffset, lengthBytes, isZero
 *               (both buffers transferred: a table of numbers costs one copy-free transfer, where
 *               an array of arrays cost a structured clone of one object per piece)
 * Message out: { id, data } on success, { id, data, code, message } on failure (the first error
 *               stops the batch); `data` is the request's data buffer, transferred back so that
 *               the next batch packs into pages that are already mapped.
 */
import { parentPort } from 'node:worker_threads';
import { writeSync } from 'node:fs';

export interface BatchRequest {
  id: number;
  fd: number;
  data: ArrayBuffer;
  /** A Float64Array's bytes: per piece [positionBytes, offset in data, lengthBytes, 1 if zeroes (offset unused)]. */
  jobs: ArrayBuffer;
}

/** Numbers per piece in BatchRequest.jobs. */
export const batchJobFields = 4;

export type BatchReply = { id: number; data: ArrayBuffer } | { id: number; data: ArrayBuffer; code: string; message: string };

const zeroChunk = Buffer.alloc(1024 * 1024);

function writeAll(fd: number, source: Buffer, positionBytes: number): void {
  let done = 0;
  while (done < source.length) {
    const n = writeSync(fd, source, done, source.length - done, positionBytes + done);
    if (n <= 0) throw Object.assign(new Error('pwrite made no progress'), { code: 'EIO' });
    done += n;
  }
}

function run(request: BatchRequest): BatchReply {
  const data = Buffer.from(request.data);
  const table = new Float64Array(request.jobs);
  try {
    for (let at = 0; at < table.length; at += batchJobFields) {
      const positionBytes = table[at]!;
      const offset = table[at + 1]!;
      const lengthBytes = table[at + 2]!;
      const isZero = table[at + 3]!;
      if (isZero === 1) {
        for (let done = 0; done < lengthBytes; done += zeroChunk.length) {
          writeAll(request.fd, zeroChunk.subarray(0, Math.min(zeroChunk.length, lengthBytes - done)), positionBytes + done);
        }
      } else {
        writeAll(request.fd, data.subarray(offset, offset + lengthBytes), positionBytes);
      }
    }
    return { id: request.id, data: request.data };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { id: request.id, data: request.data, code: typeof e.code === 'string' ? e.code : 'EIO', message: String(e.message) };
  }
}

parentPort?.on('message', (request: BatchRequest) => {
  const reply = run(request);
  parentPort?.postMessage(reply, [reply.data]);
});
