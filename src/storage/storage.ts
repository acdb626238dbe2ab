/**
 * The small storage interface the core runs against. The daemon uses real files
 * (fs-storage.ts); tests and the simulator use an in-memory disk that loses unsynced
 * writes when it "crashes" (mem-storage.ts).
 *
 * Durability contract (the same as POSIX with fdatasync):
 * - `write` puts bytes in the file, visible to later reads, but not durable;
 * - `sync` makes every completed write of that file durable;
 * - a file created by `open(.., 'create')` or removed by `remove` survives a crash only
 *   after `syncDir`; `writeAtomic` and `remove` are durable on return.
 */
/** One piece of a batch write: bytes, or a run of zeroes. */
export type WriteJob = { positionBytes: number; data: Buffer } | { positionBytes: number; zeroBytes: number };

export interface StorageFile {
  readonly name: string;
  /** Reads `target.length` bytes at `position`; returns how many were read (short at EOF). */
  read(target: Buffer, position: number): Promise<number>;
  /** Writes all of `data` at `position`, or throws (ENOSPC, EIO). */
  write(data: Buffer, position: number): Promise<void>;
  /**
   * Writes many pieces, in no particular order (they must not overlap). Real files do it
   * off the main thread in one hand-off, which matters for random writeback.
   */
  writeBatch(jobs: readonly WriteJob[]): Promise<void>;
  /**
   * Optional: writes `parts` back to back from `position` in one gathered write (pwritev),
   * so callers need not join them into one buffer. `writeParts` falls back to `write`.
   */
  writev?(parts: readonly Buffer[], position: number): Promise<void>;
  /**
   * Optional: like writev, for appends to a file whose written bytes are never rewritten
   * (a log). Real files write the whole blocks of a large append with O_DIRECT (no page
   * cache copy, no writeback later) and its unaligned head and tail through the page
   * cache, so a block that holds earlier bytes is never written from user memory. The
   * durability contract is write's: durable after `sync`.
   */
  writeSequential?(parts: readonly Buffer[], position: number): Promise<void>;
  /** fdatasync: every completed write becomes durable. */
  sync(): Promise<void>;
  size(): Promise<number>;
  truncate(lengthBytes: number): Promise<void>;
  close(): Promise<void>;
}

export type OpenMode = 'read' | 'write' | 'create';

export interface Storage {
  /** 'read': existing, read only; 'write': existing, read-write; 'create': read-write, created if missing. */
  open(name: string, mode: OpenMode): Promise<StorageFile>;
  /** Names of the files in this storage, unordered. */
  list(): Promise<string[]>;
  exists(name: string): Promise<boolean>;
  /** Removes a file durably. Removing a missing file is not an error. */
  remove(name: string): Promise<void>;
  /** Makes creations and removals durable (fsync of the directory). */
  syncDir(): Promise<void>;
  /** Replaces a small file atomically and durably: temp file, fsync, rename, fsync dir. */
  writeAtomic(name: string, data: Buffer): Promise<void>;
  /** The whole content of a small file, or undefined if it does not exist. */
  readAll(name: string): Promise<Buffer | undefined>;
}

/** Writes `parts` back to back from `position`: gathered where the file can, else joined. */
export function writeParts(file: StorageFile, parts: readonly Buffer[], position: number): Promise<void> {
  if (parts.length === 1) return file.write(parts[0]!, position);
  if (file.writev !== undefined) return file.writev(parts, position);
  return file.write(Buffer.concat(parts), position);
}

/** Appends `parts` from `position` the cheapest way the file offers (see StorageFile.writeSequential). */
export function writeAppend(file: StorageFile, parts: readonly Buffer[], position: number): Promise<void> {
  if (file.writeSequential !== undefined) return file.writeSequential(parts, position);
  return writeParts(file, parts, position);
}

/** The size of a file of the storage (opened for reading and closed again). */
export async function fileSize(storage: Storage, name: string): Promise<number> {
  const file = await storage.open(name, 'read');
  try {
    return await file.size();
  } finally {
    await file.close();
  }
}

/** Reads exactly `length` bytes at `position`, or fewer only at end of file. */
export function readAt(file: StorageFile, position: number, length: number): Promise<Buffer> {
  return readInto(file, Buffer.allocUnsafe(length), position);
}

/** Reads `target.length` bytes at `position` into `target`; a shorter view of it at the file's end. */
export async function readInto(file: StorageFile, target: Buffer, position: number): Promise<Buffer> {
  let done = 0;
  while (done < target.length) {
    const n = await file.read(target.subarray(done), position + done);
    if (n === 0) break;
    done += n;
  }
  return done === target.length ? target : target.subarray(0, done);
}
