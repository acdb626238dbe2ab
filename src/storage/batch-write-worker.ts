/**
 * The worker thread behind FsFile.writeBatch: it receives many pieces for one file
 * descriptor in one message and writes them with plain synchronous pwrites. Random
 * writeback of 4 KiB pieces costs one thread hand-off per batch instead of one per piece.
 *
 * Message in:  { id, fd, data: ArrayBuffer, jobs: [positionBytes, dataOffset, lengthBytes, isZero][] }
 * Message out: { id } on success, { id, code, message } on failure (the first error stops the batch).
 */
import { parentPort } from 'node:worker_threads';
import { writeSync } from 'node:fs';

export interface BatchRequest {
  id: number;
  fd: number;
  data: ArrayBuffer;
  /** [positionBytes, offset in data, lengthBytes, 1 if zeroes (offset unused)]. */
  jobs: [number, number, number, number][];
}

export type BatchReply = { id: number } | { id: number; code: string; message: string };

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
  try {
    for (const [positionBytes, offset, lengthBytes, isZero] of request.jobs) {
      if (isZero === 1) {
        for (let done = 0; done < lengthBytes; done += zeroChunk.length) {
          writeAll(request.fd, zeroChunk.subarray(0, Math.min(zeroChunk.length, lengthBytes - done)), positionBytes + done);
        }
      } else {
        writeAll(request.fd, data.subarray(offset, offset + lengthBytes), positionBytes);
      }
    }
    return { id: request.id };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { id: request.id, code: typeof e.code === 'string' ? e.code : 'EIO', message: String(e.message) };
  }
}

parentPort?.on('message', (request: BatchRequest) => {
  parentPort?.postMessage(run(request));
});
