/**
 * The Lamport stamp of the record at a log position, read from the resource's own log
 * files (a primary's log, a secondary's verified copies): 64 bytes of one header. The
 * stamp is the primary's hybrid clock in microseconds when it logged the write, so the
 * age of the oldest write a disk does not hold yet is `now - stamp`, and a primary that
 * writes nothing does not make its replicas look behind.
 */
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeHeader, recordHeaderBytes } from '../log/record.js';
import { formatLogName, parseLogName } from '../log/names.js';

/** The stamp of the record at (logNumber, offset) in log `logHost`'s file, or of the first record of the next log; undefined if none is there. */
export async function stampAt(resourceDir: string, position: { logNumber: number; logHost: string; offsetBytes: number }): Promise<bigint | undefined> {
  const here = await headerStamp(join(resourceDir, formatLogName(position.logNumber, position.logHost)), position.offsetBytes);
  if (here !== undefined) return here;
  const names = await readdir(resourceDir).catch(() => [] as string[]);
  const next = names
    .map((n) => ({ n, parsed: parseLogName(n) }))
    .filter((x) => x.parsed !== undefined && x.parsed.logNumber > position.logNumber)
    .sort((a, b) => a.parsed!.logNumber - b.parsed!.logNumber)[0];
  return next === undefined ? undefined : headerStamp(join(resourceDir, next.n), 0);
}

async function headerStamp(path: string, offsetBytes: number): Promise<bigint | undefined> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (handle === undefined) return undefined;
  try {
    const buffer = Buffer.alloc(recordHeaderBytes);
    const { bytesRead } = await handle.read(buffer, 0, recordHeaderBytes, offsetBytes);
    if (bytesRead < recordHeaderBytes) return undefined;
    const decoded = decodeHeader(buffer);
    return decoded.ok ? decoded.header.lamport : undefined;
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}
