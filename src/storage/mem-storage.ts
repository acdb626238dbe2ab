import type { OpenMode, Storage, StorageFile, WriteJob } from './storage.js';
import { MarsError } from '../core/errors.js';
import type { Random } from '../core/random.js';

/**
 * An in-memory disk for tests and the simulator. It keeps, per file, the durable image
 * and the writes since the last sync. `crash(random)` throws away what was not synced,
 * except a random subset of the unsynced writes, each possibly torn at a 512-byte
 * sector boundary: the same freedom a real disk and page cache have at power loss.
 */
const sectorBytes = 512;

interface PendingWrite {
  position: number;
  data: Buffer;
}

class MemFileState {
  durable: Buffer = Buffer.alloc(0);
  current: Buffer = Buffer.alloc(0);
  pending: PendingWrite[] = [];
  /** Truncations since the last sync are applied to the durable image only at sync. */
  pendingTruncate: number | undefined;

  writeInto(image: Buffer, position: number, data: Buffer): Buffer {
    const end = position + data.length;
    let target = image;
    if (end > image.length) {
      target = Buffer.alloc(end);
      image.copy(target);
    }
    data.copy(target, position);
    return target;
  }

  sync(): void {
    if (this.pendingTruncate === undefined && this.durable.length === this.current.length) {
      // Same length: the pending writes, in order, turn the durable image into the current one.
      for (const w of this.pending) w.data.copy(this.durable, w.position);
    } else {
      this.durable = Buffer.from(this.current);
    }
    this.pending = [];
    this.pendingTruncate = undefined;
  }

  crash(random: Random): void {
    let image: Buffer = Buffer.from(this.durable);
    if (this.pendingTruncate !== undefined && random.chance(0.5)) image = image.subarray(0, Math.min(image.length, this.pendingTruncate));
    for (const w of this.pending) {
      if (random.chance(0.5)) continue; // this write was lost
      let data = w.data;
      if (data.length > sectorBytes && random.chance(0.3)) {
        const sectors = Math.ceil(data.length / sectorBytes);
        data = data.subarray(0, random.int(sectors) * sectorBytes); // torn write
      }
      image = this.writeInto(image, w.position, data);
    }
    this.durable = Buffer.from(image);
    this.current = Buffer.from(image);
    this.pending = [];
    this.pendingTruncate = undefined;
  }
}

export interface MemStorageOptions {
  /** Total bytes all files may hold; a write beyond it fails with ENOSPC after writing what fits. */
  capacityBytes?: number;
}

export class MemStorage implements Storage {
  private readonly files = new Map<string, MemFileState>();
  /** Names created or removed since the last syncDir, with what the durable directory holds. */
  private durableNames = new Set<string>();
  capacityBytes: number;
  /** Bumped by crash(): handles opened before a crash belong to a dead process and fail. */
  epoch = 0;
  /** Set to make every write and sync fail with EIO, as a dying disk would. */
  failAll = false;

  constructor(options: MemStorageOptions = {}) {
    this.capacityBytes = options.capacityBytes ?? Number.MAX_SAFE_INTEGER;
  }

  usedBytes(): number {
    let total = 0;
    for (const f of this.files.values()) total += f.current.length;
    return total;
  }

  open(name: string, mode: OpenMode): Promise<StorageFile> {
    let state = this.files.get(name);
    if (state === undefined) {
      if (mode !== 'create') return Promise.reject(new MarsError('NOT_FOUND', `open ${name}: no such file`));
      state = new MemFileState();
      this.files.set(name, state);
    }
    return Promise.resolve(new MemFile(name, state, this, mode === 'read', this.epoch));
  }

  list(): Promise<string[]> {
    return Promise.resolve([...this.files.keys()]);
  }

  exists(name: string): Promise<boolean> {
    return Promise.resolve(this.files.has(name));
  }

  remove(name: string): Promise<void> {
    this.files.delete(name);
    this.durableNames.delete(name);
    return Promise.resolve();
  }

  syncDir(): Promise<void> {
    this.durableNames = new Set(this.files.keys());
    return Promise.resolve();
  }

  writeAtomic(name: string, data: Buffer): Promise<void> {
    if (this.failAll) return Promise.reject(new MarsError('EIO', `write ${name}: I/O error`));
    // Written aside, then renamed: the new file must fit beside the old one, else nothing changes.
    if (data.length > this.capacityBytes - this.usedBytes()) return Promise.reject(new MarsError('ENOSPC', `write ${name}: no space left`));
    const state = new MemFileState();
    state.current = Buffer.from(data);
    state.sync();
    this.files.set(name, state);
    this.durableNames.add(name);
    return Promise.resolve();
  }

  readAll(name: string): Promise<Buffer | undefined> {
    const state = this.files.get(name);
    return Promise.resolve(state === undefined ? undefined : Buffer.from(state.current));
  }

  /** Power loss: unsynced data and unsynced directory changes are (partly) lost. */
  crash(random: Random): void {
    this.epoch++;
    for (const [name, state] of [...this.files]) {
      if (!this.durableNames.has(name) && random.chance(0.5)) {
        this.files.delete(name);
        continue;
      }
      state.crash(random);
    }
    this.durableNames = new Set(this.files.keys());
  }

  /**
   * A view of this disk for one process lifetime: every operation through it fails with
   * EIO once the disk has crashed, as a killed process can no longer touch its files.
   */
  incarnation(): Storage {
    const epoch = this.epoch;
    const guard = <T>(fn: () => Promise<T>): Promise<T> => {
      if (this.epoch !== epoch) return Promise.reject(new MarsError('EIO', 'the storage crashed since this process started'));
      return fn();
    };
    return {
      open: (name, mode) => guard(() => this.open(name, mode)),
      list: () => guard(() => this.list()),
      exists: (name) => guard(() => this.exists(name)),
      remove: (name) => guard(() => this.remove(name)),
      syncDir: () => guard(() => this.syncDir()),
      writeAtomic: (name, data) => guard(() => this.writeAtomic(name, data)),
      readAll: (name) => guard(() => this.readAll(name)),
    };
  }

  /** A byte image of a file as it is now (for assertions). */
  image(name: string): Buffer | undefined {
    const state = this.files.get(name);
    return state === undefined ? undefined : Buffer.from(state.current);
  }

  /** The names of the files, at once (for checks outside the simulated time). */
  listNow(): string[] {
    return [...this.files.keys()];
  }

  /** The current bytes of a file without a copy, for checks that only read them (the simulator's). */
  view(name: string): Buffer | undefined {
    return this.files.get(name)?.current;
  }

  /** The bytes of a file a power loss would keep for sure (its fdatasync'd image), without a copy. */
  durableView(name: string): Buffer | undefined {
    return this.durableNames.has(name) ? this.files.get(name)?.durable : undefined;
  }

  /** Flips one bit of a file, in the durable image and the current one (bit rot). */
  flipBit(name: string, bitIndex: number): void {
    const state = this.files.get(name);
    if (state === undefined) throw new Error(`flipBit: no file ${name}`);
    const byte = Math.floor(bitIndex / 8);
    const mask = 1 << (bitIndex % 8);
    for (const image of [state.current, state.durable]) {
      if (byte < image.length) image[byte] = (image[byte] ?? 0) ^ mask;
    }
  }

  /** @internal space accounting for MemFile. */
  spaceFor(state: MemFileState, end: number): number {
    const growth = Math.max(0, end - state.current.length);
    const free = this.capacityBytes - this.usedBytes();
    return growth <= free ? end : state.current.length + Math.max(0, free);
  }
}

class MemFile implements StorageFile {
  private closed = false;
  constructor(
    readonly name: string,
    private readonly state: MemFileState,
    private readonly storage: MemStorage,
    private readonly readOnly: boolean,
    private readonly epoch: number,
  ) {}

  private check(write: boolean): void {
    if (this.closed) throw new MarsError('EIO', `${this.name}: file is closed`);
    if (this.epoch !== this.storage.epoch) throw new MarsError('EIO', `${this.name}: the storage crashed since this file was opened`);
    if (write && this.readOnly) throw new MarsError('EIO', `${this.name}: opened read-only`);
    if (write && this.storage.failAll) throw new MarsError('EIO', `${this.name}: I/O error`);
  }

  async read(target: Buffer, position: number): Promise<number> {
    await Promise.resolve();
    this.check(false);
    const image = this.state.current;
    if (position >= image.length) return 0;
    return image.copy(target, 0, position, Math.min(image.length, position + target.length));
  }

  async write(data: Buffer, position: number): Promise<void> {
    await Promise.resolve();
    this.check(true);
    const end = position + data.length;
    const allowedEnd = this.storage.spaceFor(this.state, end);
    const fits = Math.max(0, Math.min(data.length, allowedEnd - position));
    if (fits > 0) {
      const part = Buffer.from(data.subarray(0, fits));
      this.state.current = this.state.writeInto(this.state.current, position, part);
      this.state.pending.push({ position, data: part });
    }
    if (fits < data.length) throw new MarsError('ENOSPC', `write ${this.name}: no space left`);
  }

  async writeBatch(jobs: readonly WriteJob[]): Promise<void> {
    for (const job of jobs) await this.write('data' in job ? job.data : Buffer.alloc(job.zeroBytes), job.positionBytes);
  }

  async sync(): Promise<void> {
    await Promise.resolve();
    this.check(true);
    this.state.sync();
  }

  async size(): Promise<number> {
    await Promise.resolve();
    this.check(false);
    return this.state.current.length;
  }

  async truncate(lengthBytes: number): Promise<void> {
    await Promise.resolve();
    this.check(true);
    const next = Buffer.alloc(lengthBytes);
    this.state.current.copy(next, 0, 0, Math.min(lengthBytes, this.state.current.length));
    this.state.current = next;
    this.state.pending = this.state.pending.filter((w) => w.position < lengthBytes).map((w) => ({ position: w.position, data: w.data.subarray(0, Math.max(0, lengthBytes - w.position)) }));
    this.state.pendingTruncate = Math.min(this.state.pendingTruncate ?? lengthBytes, lengthBytes);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
