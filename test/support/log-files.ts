/**
 * Reading a real log file's record layout from its headers, for tests that damage logs
 * on purpose (docs/log-format.md: 64-byte little-endian header; kind at 6 (u8), lengthBytes at 32 (u32), payloadBytes at 36 (u32),
 * syncedBytes at 40 (u64), seq at 8 (u64)). Only what the tests need; no verification.
 */
import { open, readFile } from 'node:fs/promises';

export const recordHeaderBytes = 64;
const magic = 0x474c4d89;

export interface RecordLayout {
  offsetBytes: number;
  endOffsetBytes: number;
  seq: bigint;
  /** 1 WRITE, 2 TRIM, 3 WRITE_ZEROES. */
  kind: number;
  lengthBytes: number;
  payloadBytes: number;
  syncedBytes: number;
}

/** The records of a log file, walking headers from offset 0 until one does not look like a header. */
export async function recordLayout(path: string): Promise<RecordLayout[]> {
  const data = await readFile(path);
  const records: RecordLayout[] = [];
  let at = 0;
  while (at + recordHeaderBytes <= data.length && data.readUInt32LE(at) === magic) {
    const payloadBytes = data.readUInt32LE(at + 36);
    const syncedBytes = Number(data.readBigUInt64LE(at + 40));
    const endOffsetBytes = at + recordHeaderBytes + payloadBytes;
    if (endOffsetBytes > data.length) break;
    records.push({ offsetBytes: at, endOffsetBytes, seq: data.readBigUInt64LE(at + 8), kind: data.readUInt8(at + 6), lengthBytes: data.readUInt32LE(at + 32), payloadBytes, syncedBytes });
    at = endOffsetBytes;
  }
  return records;
}

/** XORs one byte of a file with 0xff. */
export async function flipByte(path: string, offsetBytes: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, offsetBytes);
    one[0] = one[0]! ^ 0xff;
    await handle.write(one, 0, 1, offsetBytes);
  } finally {
    await handle.close();
  }
}

export async function truncateFile(path: string, lengthBytes: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(lengthBytes);
  } finally {
    await handle.close();
  }
}

export async function appendBytes(path: string, data: Buffer): Promise<void> {
  const handle = await open(path, 'a');
  try {
    await handle.write(data);
  } finally {
    await handle.close();
  }
}
