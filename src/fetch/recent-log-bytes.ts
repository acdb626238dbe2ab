/**
 * The last bytes the primary appended to its live log, kept in memory for the fetch server.
 *
 * Why: the log writer appends large batches with O_DIRECT (src/storage/fs-storage.ts), so
 * the page cache does not hold what it just wrote, and a fetch that follows the log end
 * closely read every byte back from the disk: the primary's disk carried the log write,
 * the device writeback and this read, and the reads waited behind the writes. With this
 * ring a secondary that keeps up is served from memory: one copy per byte when the writer
 * issues an append (the caller's buffers may be reused once the write completes), one
 * when the fetch server reads. A secondary further behind than the ring holds is read from
 * the file, as before.
 *
 * Views instead of copies (`lend`): a read close to the ring's end (within
 * `fetchRecentViewWithinBytes`) is handed out as a view of the ring itself, held until the
 * fetch server has given its frame to the kernel; no copy out. An append that would
 * overwrite bytes still lent does not wait: the ring is retired (the views keep its memory
 * alive until they are released) and a fresh one starts with that append; while a retired
 * ring's views are out no new views are lent (reads are copied as before), so at most one
 * retired ring exists at a time.
 *
 * Bounded: one ring of `fetchRecentBytesMax` bytes per resource, allocated only while a
 * fetch stream has a file of the source open (`arm`/`disarm`; dropped at the first append
 * after the last one closed), so a primary with no secondary attached pays neither the
 * memory nor the copy.
 *
 * It holds the bytes of one file, the one last appended to, as the contiguous range
 * [startBytes, endBytes). An append that does not continue that range (another file after
 * logrotate, a rewrite after a failed batch) starts the range anew; a truncate or a failed
 * write empties it. The fetch server reads only below the durable end, so bytes written
 * but not yet durable are never served from here either.
 */
import { parseLogName } from '../log/index.js';
import type { OpenMode, Storage, StorageFile, WriteJob } from '../storage/storage.js';
import { fetchRecentBytesMax, fetchRecentViewWithinBytes } from './limits.js';

/** Bytes of the ring lent out: they do not change until `release` (call it once the frame holding them is with the kernel). */
export interface RingView {
  readonly bytes: Buffer;
  release(): void;
}

export class RecentLogBytes {
  private ring: Buffer | undefined;
  private name: string | undefined;
  private startBytes = 0;
  private endBytes = 0;
  private readers = 0;
  /** Views of the current ring lent out: lease id → the file position the view starts at. */
  private readonly leases = new Map<number, number>();
  private nextLeaseId = 0;
  /** Bumped when the ring is retired: releases of older views then count down `retiredViews`. */
  private generation = 0;
  /** Views of a retired ring not yet released (while > 0, no new view is lent). */
  private retiredViews = 0;
  /** Reads answered from memory (copied), views lent, reads left to the file, rings retired for a lent view (status and tests). */
  hits = 0;
  viewsLent = 0;
  misses = 0;
  retired = 0;

  constructor(
    private readonly capacityBytes: number = fetchRecentBytesMax,
    private readonly viewWithinBytes: number = Math.min(fetchRecentViewWithinBytes, capacityBytes),
  ) {}

  /** A fetch stream opened a file of the source: keep appends from now on. */
  arm(): void {
    if (this.readers++ === 0 && this.ring === undefined) {
      this.ring = Buffer.allocUnsafeSlow(this.capacityBytes);
      this.forget();
    }
  }

  /**
   * That stream closed its file. With none left the ring is dropped at the next append,
   * not at once: a client that moves on to the next log file (logrotate) or reconnects
   * opens a file again right away, and finds the ring as it was, unless the log grew
   * meanwhile.
   */
  disarm(): void {
    if (this.readers > 0) this.readers--;
  }

  get armed(): boolean {
    return this.readers > 0 && this.ring !== undefined;
  }

  /** Bytes of memory the ring takes now. */
  get allocatedBytes(): number {
    return this.ring?.length ?? 0;
  }

  /** Bytes of [startBytes, endBytes) held now. */
  get heldBytes(): number {
    return this.endBytes - this.startBytes;
  }

  /** Empties the range (a truncate, a failed write). */
  forget(): void {
    this.name = undefined;
    this.startBytes = 0;
    this.endBytes = 0;
  }

  /** Copies an append of `parts` at `position` of `name`; called before the write is issued. */
  appended(name: string, parts: readonly Buffer[], position: number): void {
    if (this.readers === 0) {
      // Nobody fetches: the ring would miss this append, so it goes.
      this.retire();
      this.ring = undefined;
      this.forget();
      return;
    }
    if (this.ring === undefined) return;
    const restart = name !== this.name || position !== this.endBytes;
    const appendedBytes = parts.reduce((sum, p) => sum + p.length, 0);
    if (this.overwritesLent(restart, position + appendedBytes)) {
      this.retire();
      this.ring = Buffer.allocUnsafeSlow(this.capacityBytes);
      this.retired++;
      this.forget();
    }
    const ring = this.ring;
    if (restart || this.name === undefined) {
      this.name = name;
      this.startBytes = position;
      this.endBytes = position;
    }
    for (const part of parts) {
      // Only the last `capacity` bytes of a part can stay.
      const keep = part.length > ring.length ? part.subarray(part.length - ring.length) : part;
      const at = this.endBytes + (part.length - keep.length);
      const offset = at % ring.length;
      const first = Math.min(keep.length, ring.length - offset);
      keep.copy(ring, offset, 0, first);
      if (first < keep.length) keep.copy(ring, 0, first);
      this.endBytes = at + keep.length;
    }
    this.startBytes = Math.max(this.startBytes, this.endBytes - ring.length);
  }

  /**
   * Whether an append ending at `newEndBytes` would overwrite bytes of a view still lent:
   * it writes over the positions [endBytes - capacity, newEndBytes - capacity) of the
   * range, or anywhere when it starts the range anew.
   */
  private overwritesLent(restart: boolean, newEndBytes: number): boolean {
    if (this.leases.size === 0) return false;
    if (restart) return true;
    let lowest = Number.POSITIVE_INFINITY;
    for (const start of this.leases.values()) lowest = Math.min(lowest, start);
    return lowest < newEndBytes - this.capacityBytes;
  }

  /** The views lent so far now belong to a retired ring (their memory stays theirs). */
  private retire(): void {
    this.retiredViews += this.leases.size;
    this.leases.clear();
    this.generation++;
  }

  /**
   * A view of bytes [position, position + lengthBytes) of `name`, if the ring holds all of
   * them in one piece, within `viewWithinBytes` of its end, and no retired ring's views are
   * out; otherwise undefined (copy with `read`, or read the file).
   */
  lend(name: string, position: number, lengthBytes: number): RingView | undefined {
    const ring = this.ring;
    if (ring === undefined || name !== this.name || this.retiredViews > 0) return undefined;
    if (position < this.startBytes || position < this.endBytes - this.viewWithinBytes || position + lengthBytes > this.endBytes) return undefined;
    const offset = position % ring.length;
    if (offset + lengthBytes > ring.length) return undefined;
    const id = this.nextLeaseId++;
    const generation = this.generation;
    this.leases.set(id, position);
    this.viewsLent++;
    let released = false;
    return {
      bytes: ring.subarray(offset, offset + lengthBytes),
      release: () => {
        if (released) return;
        released = true;
        if (generation === this.generation) this.leases.delete(id);
        else this.retiredViews--;
      },
    };
  }

  /** Views lent and not yet released, of the ring and of a retired one (tests). */
  get viewsOut(): number {
    return this.leases.size + this.retiredViews;
  }

  /** Fills `target` with bytes [position, position + target.length) of `name` if all of them are held; false otherwise. */
  read(name: string, target: Buffer, position: number): boolean {
    const ring = this.ring;
    if (ring === undefined || name !== this.name || position < this.startBytes || position + target.length > this.endBytes) {
      this.misses++;
      return false;
    }
    const offset = position % ring.length;
    const first = Math.min(target.length, ring.length - offset);
    ring.copy(target, 0, offset, offset + first);
    if (first < target.length) ring.copy(target, first, 0, target.length - first);
    this.hits++;
    return true;
  }
}

/** A log file being appended: every append is copied into `recent` before it is issued. */
class TeeFile implements StorageFile {
  readonly writev?: (parts: readonly Buffer[], position: number) => Promise<void>;
  readonly writeSequential?: (parts: readonly Buffer[], position: number) => Promise<void>;

  constructor(
    private readonly file: StorageFile,
    private readonly recent: RecentLogBytes,
  ) {
    const writev = file.writev?.bind(file);
    const writeSequential = file.writeSequential?.bind(file);
    if (writev !== undefined) this.writev = (parts, position) => this.tee(parts, position, () => writev(parts, position));
    if (writeSequential !== undefined) this.writeSequential = (parts, position) => this.tee(parts, position, () => writeSequential(parts, position));
  }

  get name(): string {
    return this.file.name;
  }

  private async tee(parts: readonly Buffer[], position: number, write: () => Promise<void>): Promise<void> {
    this.recent.appended(this.file.name, parts, position);
    try {
      await write();
    } catch (err) {
      this.recent.forget();
      throw err;
    }
  }

  read(target: Buffer, position: number): Promise<number> {
    return this.file.read(target, position);
  }

  write(data: Buffer, position: number): Promise<void> {
    return this.tee([data], position, () => this.file.write(data, position));
  }

  writeBatch(jobs: readonly WriteJob[]): Promise<void> {
    // Not an append: whatever it rewrites must not be served from an older copy.
    this.recent.forget();
    return this.file.writeBatch(jobs);
  }

  sync(): Promise<void> {
    return this.file.sync();
  }

  size(): Promise<number> {
    return this.file.size();
  }

  truncate(lengthBytes: number): Promise<void> {
    this.recent.forget();
    return this.file.truncate(lengthBytes);
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

/** The storage the primary's logger writes through: its own log files are opened as TeeFiles. */
export class TeeLogStorage implements Storage {
  constructor(
    private readonly storage: Storage,
    private readonly host: string,
    private readonly recent: RecentLogBytes,
  ) {}

  async open(name: string, mode: OpenMode): Promise<StorageFile> {
    const file = await this.storage.open(name, mode);
    return mode !== 'read' && parseLogName(name)?.host === this.host ? new TeeFile(file, this.recent) : file;
  }

  list(): Promise<string[]> {
    return this.storage.list();
  }

  exists(name: string): Promise<boolean> {
    return this.storage.exists(name);
  }

  remove(name: string): Promise<void> {
    return this.storage.remove(name);
  }

  syncDir(): Promise<void> {
    return this.storage.syncDir();
  }

  writeAtomic(name: string, data: Buffer): Promise<void> {
    return this.storage.writeAtomic(name, data);
  }

  readAll(name: string): Promise<Buffer | undefined> {
    return this.storage.readAll(name);
  }
}

/** A file the fetch server reads: from `recent` where it holds the bytes, else from the file. Arms `recent` while open. */
export class RecentFirstFile implements StorageFile {
  private closed = false;
  /** Views lent through this file and not yet released: closing the file releases them (a stream that ends mid-send). */
  private readonly views = new Set<RingView>();

  constructor(
    private readonly file: StorageFile,
    private readonly recent: RecentLogBytes,
  ) {
    recent.arm();
  }

  get name(): string {
    return this.file.name;
  }

  read(target: Buffer, position: number): Promise<number> {
    if (this.recent.read(this.file.name, target, position)) return Promise.resolve(target.length);
    return this.file.read(target, position);
  }

  /** Fills `target` from the ring if it holds the whole range (true); false leaves it to `read`. */
  readRecent(target: Buffer, position: number): boolean {
    return this.recent.read(this.file.name, target, position);
  }

  /** A view of the ring for [position, position + lengthBytes), if it can lend one (RecentLogBytes.lend). */
  lendRecent(position: number, lengthBytes: number): RingView | undefined {
    if (this.closed) return undefined;
    const view = this.recent.lend(this.file.name, position, lengthBytes);
    if (view === undefined) return undefined;
    const tracked: RingView = {
      bytes: view.bytes,
      release: () => {
        if (this.views.delete(tracked)) view.release();
      },
    };
    this.views.add(tracked);
    return tracked;
  }

  write(data: Buffer, position: number): Promise<void> {
    return this.file.write(data, position);
  }

  writeBatch(jobs: readonly WriteJob[]): Promise<void> {
    return this.file.writeBatch(jobs);
  }

  sync(): Promise<void> {
    return this.file.sync();
  }

  size(): Promise<number> {
    return this.file.size();
  }

  truncate(lengthBytes: number): Promise<void> {
    return this.file.truncate(lengthBytes);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      for (const view of [...this.views]) view.release();
      this.recent.disarm();
    }
    return this.file.close();
  }
}
