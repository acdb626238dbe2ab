import { randomBytes } from 'node:crypto';
import { lstat, open, readdir, realpath, rename, rm, mkdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { constants, read as fsRead, write as fsWrite, writev as fsWritev, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { OpenMode, Storage, StorageFile, WriteJob } from './storage.js';
import { fromSystemError, MarsError } from '../core/errors.js';
import { writeBatchFd } from './batch-writer.js';
import { acquireAlignedSlot, alignedSlotBytes, directAlignBytes, releaseAlignedSlot } from './aligned-pool.js';

/** Below this many small pieces a batch is written with ordinary async writes. */
export const batchWorkerJobsMin = 4;
/** Pieces this large are written directly: one thread-pool call each is cheap next to their size. */
export const batchWorkerPieceBytesMax = 128 * 1024;
/** Direct writes of one batch in flight at once. */
export const directWritesInFlightMax = 4;
/** A sequential append writes its whole blocks with O_DIRECT only when they are at least this many bytes. */
export const directWriteBytesMin = 256 * 1024;
/** Direct writes (one aligned slot each) of one sequential append in flight at once. */
export const directChunksInFlightMax = 4;
/** Reads up to this size may be done synchronously (see FsFile.read). */
export const syncReadBytesMax = 128 * 1024;
/** A synchronous read slower than this means the page cache missed. */
export const syncReadSlowMs = 0.5;
/** After a slow synchronous read, reads use the thread pool for this long. */
export const syncReadBackoffMs = 1000;
const zeroRunChunk = Buffer.alloc(1024 * 1024);

async function writeZeroRun(file: StorageFile, positionBytes: number, lengthBytes: number): Promise<void> {
  for (let done = 0; done < lengthBytes; done += zeroRunChunk.length) {
    await file.write(zeroRunChunk.subarray(0, Math.min(zeroRunChunk.length, lengthBytes - done)), positionBytes + done);
  }
}

/*
 * The data path uses the callback forms of fs.read/fs.write on the raw descriptor: they
 * cost about half of what FileHandle's promise methods cost per call, which shows at
 * tens of thousands of 4 KiB requests per second. The FileHandle still owns the
 * descriptor's lifetime.
 */
function readFd(fd: number, target: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, target, 0, target.length, position, (err, bytesRead) => (err === null ? resolve(bytesRead) : reject(err)));
  });
}

function writeFd(fd: number, data: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsWrite(fd, data, 0, data.length, position, (err, bytesWritten) => (err === null ? resolve(bytesWritten) : reject(err)));
  });
}

function writevFd(fd: number, parts: readonly Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsWritev(fd, parts as Buffer[], position, (err, bytesWritten) => (err === null ? resolve(bytesWritten) : reject(err)));
  });
}

/** Writes all of an aligned chunk through an O_DIRECT descriptor (a short write continues, still aligned). */
async function writeAllDirect(fd: number, chunk: Buffer, position: number): Promise<void> {
  for (let done = 0; done < chunk.length; ) {
    const n = await writeFd(fd, chunk.subarray(done), position + done);
    if (n === 0 || n % 512 !== 0) throw new MarsError('EIO', `direct write at ${position + done}: ${n} bytes written`);
    done += n;
  }
}

/** Buffers of one pwritev (the kernel's IOV_MAX is 1024). */
export const writevPartsMax = 1024;

/** `parts` without their first `n` bytes (views). */
function dropBytes(parts: Buffer[], n: number): Buffer[] {
  let rest = n;
  let i = 0;
  while (i < parts.length && rest >= parts[i]!.length) rest -= parts[i++]!.length;
  const left = parts.slice(i);
  if (rest > 0 && left.length > 0) left[0] = left[0]!.subarray(rest);
  return left;
}

/** Views of bytes [from, to) of `parts` taken back to back (no copy). */
function viewsOf(parts: readonly Buffer[], from: number, to: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const part of parts) {
    const end = at + part.length;
    if (end > from && at < to) out.push(part.subarray(Math.max(from - at, 0), Math.min(to - at, part.length)));
    if (end >= to) break;
    at = end;
  }
  return out;
}

/** Copies bytes [from, from + target.length) of `parts` taken back to back into target. */
function copyOf(parts: readonly Buffer[], from: number, target: Buffer): void {
  let at = 0;
  for (const view of viewsOf(parts, from, from + target.length)) at += view.copy(target, at);
}

function alignDown(n: number): number {
  return n - (n % directAlignBytes);
}

function alignUp(n: number): number {
  return alignDown(n + directAlignBytes - 1);
}

/** A StorageFile over a real file descriptor (pread/pwrite/fdatasync). */
export class FsFile implements StorageFile {
  private closed = false;
  /** The second descriptor, opened with O_DIRECT, for writeSequential; 'unsupported' once the filesystem refused it. */
  private direct: FileHandle | 'unsupported' | undefined;
  private directOpening: Promise<void> | undefined;
  /** Until when reads go through the thread pool (see read()). */
  private asyncReadsUntilMs = 0;
  /** Batches the worker thread is writing: close() waits for them, so it never writes to a reused descriptor. */
  private readonly batchesInFlight = new Set<Promise<void>>();

  constructor(
    readonly name: string,
    private readonly handle: FileHandle,
    /** The file's path, to open it a second time with O_DIRECT (without it, writeSequential is writev). */
    private readonly path?: string,
  ) {}

  /**
   * Reads that the page cache can answer cost about 4 us as a plain pread on the main
   * thread, against 20-40 us for a thread-pool round trip, which decides read IOPS. So
   * small reads are done synchronously while they stay fast; the first one that takes
   * longer than syncReadSlowMs (the page cache missed: the disk answered) sends this
   * file's reads to the thread pool for syncReadBackoffMs, so a disk-bound workload
   * blocks the event loop at most once per backoff period.
   */
  async read(target: Buffer, position: number): Promise<number> {
    try {
      const startMs = performance.now();
      if (target.length <= syncReadBytesMax && startMs >= this.asyncReadsUntilMs) {
        const n = readSync(this.handle.fd, target, 0, target.length, position);
        const endMs = performance.now();
        if (endMs - startMs > syncReadSlowMs) this.asyncReadsUntilMs = endMs + syncReadBackoffMs;
        return n;
      }
      return await readFd(this.handle.fd, target, position);
    } catch (err) {
      throw fromSystemError(err, `read ${this.name}@${position}`);
    }
  }

  async write(data: Buffer, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const bytesWritten = await writeFd(this.handle.fd, data.subarray(done), position + done);
        if (bytesWritten === 0) throw new MarsError('EIO', `write ${this.name}: no progress`);
        done += bytesWritten;
      }
    } catch (err) {
      throw fromSystemError(err, `write ${this.name}@${position + done}`);
    }
  }

  /** One pwritev per writevPartsMax parts; a short write continues where it stopped. */
  async writev(parts: readonly Buffer[], position: number): Promise<void> {
    let at = position;
    try {
      for (let first = 0; first < parts.length; first += writevPartsMax) {
        let group = parts.slice(first, first + writevPartsMax);
        let groupBytes = group.reduce((sum, p) => sum + p.length, 0);
        while (groupBytes > 0) {
          const bytesWritten = await writevFd(this.handle.fd, group, at);
          if (bytesWritten === 0) throw new MarsError('EIO', `write ${this.name}: no progress`);
          at += bytesWritten;
          groupBytes -= bytesWritten;
          group = dropBytes(group, bytesWritten);
        }
      }
    } catch (err) {
      throw fromSystemError(err, `write ${this.name}@${at}`);
    }
  }

  /**
   * A large append: the whole blocks in the middle go through an O_DIRECT descriptor from
   * page-aligned slots (aligned-pool.ts; a few in flight at once), the unaligned head and
   * tail through the page cache with pwritev. The three ranges are disjoint, so the
   * block that holds the bytes before `position` is only ever written through the page
   * cache, as by writev. Where the filesystem refuses O_DIRECT (EINVAL: tmpfs on older
   * kernels, some FUSE filesystems) this file falls back to writev for good.
   */
  async writeSequential(parts: readonly Buffer[], position: number): Promise<void> {
    let totalBytes = 0;
    for (const part of parts) totalBytes += part.length;
    const directStart = alignUp(position);
    const directEnd = alignDown(position + totalBytes);
    if (directEnd - directStart < directWriteBytesMin || this.direct === 'unsupported' || this.path === undefined) return this.writev(parts, position);
    const direct = await this.openDirect();
    if (direct === undefined) return this.writev(parts, position);
    try {
      await this.writeAroundDirect(direct, parts, position, directStart, directEnd);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'EINVAL') throw fromSystemError(err, `write ${this.name}@${directStart}`);
      // The filesystem takes no direct writes after all: write the same bytes again, buffered.
      this.direct = 'unsupported';
      await direct.close().catch(() => undefined);
      await this.writev(parts, position);
    }
  }

  private async writeAroundDirect(direct: FileHandle, parts: readonly Buffer[], position: number, directStart: number, directEnd: number): Promise<void> {
    const totalBytes = parts.reduce((sum, p) => sum + p.length, 0);
    const work: Promise<void>[] = [];
    if (directStart > position) work.push(this.writev(viewsOf(parts, 0, directStart - position), position));
    if (position + totalBytes > directEnd) work.push(this.writev(viewsOf(parts, directEnd - position, totalBytes), directEnd));
    let next = directStart;
    const chunkWriter = async (): Promise<void> => {
      while (next < directEnd) {
        const at = next;
        const lengthBytes = Math.min(alignedSlotBytes, directEnd - at);
        next += lengthBytes;
        const slot = await acquireAlignedSlot();
        try {
          const chunk = slot.subarray(0, lengthBytes);
          copyOf(parts, at - position, chunk);
          await writeAllDirect(direct.fd, chunk, at);
        } finally {
          releaseAlignedSlot(slot);
        }
      }
    };
    for (let i = 0; i < directChunksInFlightMax; i++) work.push(chunkWriter());
    const results = await Promise.allSettled(work);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  private async openDirect(): Promise<FileHandle | undefined> {
    if (this.direct === undefined && this.directOpening === undefined) {
      this.directOpening = open(this.path!, constants.O_WRONLY | constants.O_DIRECT | constants.O_NOFOLLOW).then(
        (handle) => {
          if (this.closed) void handle.close();
          else this.direct = handle;
        },
        () => {
          this.direct = 'unsupported';
        },
      );
    }
    await this.directOpening;
    return this.closed || this.direct === 'unsupported' ? undefined : this.direct;
  }

  /**
   * Small pieces go to a worker thread in one hand-off (random writeback of 4 KiB pieces
   * would otherwise cost a thread-pool round trip each); large pieces, and batches of a
   * few pieces, are written directly, which spares the worker's copy of their bytes.
   */
  async writeBatch(jobs: readonly WriteJob[]): Promise<void> {
    if (this.closed) throw new MarsError('EIO', `write ${this.name}: file is closed`);
    const small: WriteJob[] = [];
    const direct: WriteJob[] = [];
    for (const job of jobs) ('data' in job && job.data.length < batchWorkerPieceBytesMax ? small : direct).push(job);
    if (small.length < batchWorkerJobsMin) direct.push(...small.splice(0));
    const work: Promise<void>[] = [];
    if (small.length > 0) work.push(this.writeViaWorker(small));
    let next = 0;
    const writer = async (): Promise<void> => {
      while (next < direct.length) {
        const job = direct[next++]!;
        if ('data' in job) await this.write(job.data, job.positionBytes);
        else await writeZeroRun(this, job.positionBytes, job.zeroBytes);
      }
    };
    for (let i = 0; i < Math.min(directWritesInFlightMax, direct.length); i++) work.push(writer());
    const results = await Promise.allSettled(work);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  private async writeViaWorker(jobs: readonly WriteJob[]): Promise<void> {
    const batch = writeBatchFd(this.handle.fd, jobs, `write ${this.name}`);
    this.batchesInFlight.add(batch);
    try {
      await batch;
    } finally {
      this.batchesInFlight.delete(batch);
    }
  }

  async sync(): Promise<void> {
    try {
      await this.handle.datasync();
    } catch (err) {
      throw fromSystemError(err, `fdatasync ${this.name}`);
    }
  }

  async size(): Promise<number> {
    const st = await this.handle.stat();
    if (st.isBlockDevice()) return blockDeviceSize(this.handle);
    return st.size;
  }

  async truncate(lengthBytes: number): Promise<void> {
    try {
      await this.handle.truncate(lengthBytes);
    } catch (err) {
      throw fromSystemError(err, `truncate ${this.name}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.batchesInFlight]);
    await this.directOpening;
    if (this.direct !== undefined && this.direct !== 'unsupported') await this.direct.close().catch(() => undefined);
    await this.handle.close();
  }
}

/** The size of a block device: seek to its end through a second read of its length. */
async function blockDeviceSize(handle: FileHandle): Promise<number> {
  // Node has no BLKGETSIZE64; a block device's size is where reads return 0 bytes.
  // Binary search over 512-byte sectors keeps this to ~50 reads.
  const probe = Buffer.alloc(512);
  let low = 0; // known readable sectors
  let high = 1;
  while ((await handle.read(probe, 0, 512, high * 512)).bytesRead > 0) {
    low = high;
    high *= 2;
  }
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if ((await handle.read(probe, 0, 512, mid * 512)).bytesRead > 0) low = mid;
    else high = mid;
  }
  return high * 512;
}

/** Opens a device (regular file or block device) for read-write I/O. */
export async function openDevice(path: string): Promise<StorageFile> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new MarsError('BAD_DEVICE', `device ${path} does not exist`, { cause: err });
  }
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new MarsError('BAD_DEVICE', `device ${path} is neither a regular file nor a block device`);
  }
  try {
    return new FsFile(path, await open(path, constants.O_RDWR));
  } catch (err) {
    throw new MarsError('BAD_DEVICE', `cannot open device ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * What a device path names, for "is this disk used already": the resolved path, and the
 * block device number (block devices: two nodes or symlinks of one disk agree) or the
 * filesystem and inode (regular files: hard links and symlinks agree). Undefined when
 * the path names nothing (a device gone since).
 */
export interface DeviceIdentity {
  readonly realPath: string;
  readonly key: string;
}

export async function deviceIdentity(path: string): Promise<DeviceIdentity | undefined> {
  try {
    const realPath = await realpath(path);
    const st = await stat(realPath, { bigint: true });
    const key = st.isBlockDevice() ? `block:${st.rdev}` : `inode:${st.dev}:${st.ino}`;
    return { realPath, key };
  } catch {
    return undefined;
  }
}

/** Whether two device paths name the same disk (identity; the same path string if either names nothing now). */
export async function sameDevice(a: string, b: string): Promise<boolean> {
  if (a === b) return true;
  const [x, y] = await Promise.all([deviceIdentity(a), deviceIdentity(b)]);
  return x !== undefined && y !== undefined && x.key === y.key;
}

/** Tries for a fresh temporary name (O_EXCL) before writeAtomic gives up. */
export const tempNameAttemptsMax = 8;

/** An error of opening `path` with O_NOFOLLOW: a symbolic link is named as such. */
function openError(err: unknown, context: string, path: string): MarsError {
  if ((err as { code?: unknown } | null)?.code === 'ELOOP') {
    return new MarsError('BAD_STATE_DIR', `${path} is a symbolic link: marsd follows no links inside its state directory`, { cause: err });
  }
  return fromSystemError(err, context);
}

/**
 * A Storage over one real directory, which holds state only marsd writes: every file is
 * opened with O_NOFOLLOW (a symbolic link planted in its place is refused, never
 * followed), and atomic writes go through a temporary file of a random name created
 * with O_EXCL, so nobody can prepare it beforehand.
 */
export class FsStorage implements Storage {
  constructor(readonly dir: string) {}

  /** Creates the directory (mode 0700) if missing; refuses a symbolic link or a non-directory in its place. */
  static async create(dir: string): Promise<FsStorage> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await lstat(dir);
    if (st.isSymbolicLink()) throw new MarsError('BAD_STATE_DIR', `${dir} is a symbolic link: marsd follows no links inside its state directory`);
    if (!st.isDirectory()) throw new MarsError('BAD_STATE_DIR', `${dir} is not a directory`);
    return new FsStorage(dir);
  }

  async open(name: string, mode: OpenMode): Promise<StorageFile> {
    const flags = (mode === 'read' ? constants.O_RDONLY : mode === 'write' ? constants.O_RDWR : constants.O_RDWR | constants.O_CREAT) | constants.O_NOFOLLOW;
    const path = join(this.dir, name);
    try {
      return new FsFile(name, await open(path, flags, 0o600), path);
    } catch (err) {
      throw openError(err, `open ${path}`, path);
    }
  }

  async list(): Promise<string[]> {
    return readdir(this.dir);
  }

  async exists(name: string): Promise<boolean> {
    try {
      await stat(join(this.dir, name));
      return true;
    } catch {
      return false;
    }
  }

  async remove(name: string): Promise<void> {
    await rm(join(this.dir, name), { force: true });
    await this.syncDir();
  }

  async syncDir(): Promise<void> {
    const handle = await open(this.dir, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /**
   * Replaces `name` atomically: a new temporary file (random name, O_CREAT | O_EXCL |
   * O_NOFOLLOW, mode 0600), fdatasync, rename over `name` (a link there is replaced, not
   * followed), fsync of the directory. A temporary name that exists already, whoever put
   * it there, is left alone and another is drawn.
   */
  async writeAtomic(name: string, data: Buffer): Promise<void> {
    const target = join(this.dir, name);
    let handle: FileHandle | undefined;
    let tempPath = '';
    for (let attempt = 1; handle === undefined; attempt++) {
      tempPath = join(this.dir, `.${name}.${randomBytes(8).toString('hex')}.tmp`);
      try {
        handle = await open(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      } catch (err) {
        const code = (err as { code?: unknown } | null)?.code;
        if ((code === 'EEXIST' || code === 'ELOOP') && attempt < tempNameAttemptsMax) continue;
        throw openError(err, `write ${target}`, tempPath);
      }
    }
    try {
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tempPath, target);
      await this.syncDir();
    } catch (err) {
      await rm(tempPath, { force: true });
      throw fromSystemError(err, `write ${target}`);
    }
  }

  async readAll(name: string): Promise<Buffer | undefined> {
    const path = join(this.dir, name);
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
      throw openError(err, `read ${path}`, path);
    }
    try {
      return await handle.readFile();
    } catch (err) {
      throw fromSystemError(err, `read ${path}`);
    } finally {
      await handle.close();
    }
  }
}
