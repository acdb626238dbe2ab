/**
 * A simulated disk: the in-memory crashable disk (MemStorage) behind a latency drawn from
 * the run's seed. One disk per directory of a host (its resource directory, its device).
 *
 * - Every operation of a process waits a random latency on that process's timers first;
 *   when the process dies (crash) its timers are cancelled, so its I/O never completes.
 * - `crash()` is power loss: only synced data survives, plus a seeded random, possibly
 *   torn, subset of the unsynced writes (MemStorage.crash); handles opened before fail.
 * - `bitRot()` flips one bit of a file, in the durable image too.
 */
import type { Random } from '../core/random.js';
import { MemStorage } from '../storage/mem-storage.js';
import type { Storage, StorageFile } from '../storage/storage.js';
import type { SimTimers } from './scheduler.js';

export interface DiskLatency {
  /** Reads, writes, sizes: uniform in [0, this]. */
  readonly ioMsMax: number;
  /** fdatasync and atomic replaces: uniform in [0, this]. */
  readonly syncMsMax: number;
}

export class SimDisk {
  readonly mem = new MemStorage();
  /** Operations completed, and crashes: the image cannot have changed while both stay the same. */
  ops = 0;
  crashes = 0;

  constructor(
    readonly name: string,
    private readonly random: Random,
    private readonly latency: DiskLatency,
  ) {}

  /** The disk as one process lifetime sees it: every operation delayed on `timers`. */
  incarnation(timers: SimTimers): Storage {
    const inner = this.mem.incarnation();
    const delay = async (sync: boolean): Promise<void> => {
      const max = sync ? this.latency.syncMsMax : this.latency.ioMsMax;
      await timers.sleep(max === 0 ? 0 : this.random.int(max + 1));
      this.ops++;
    };
    const slow = <T>(sync: boolean, fn: () => Promise<T>): Promise<T> => delay(sync).then(fn);
    return {
      open: (name, mode) => slow(false, () => inner.open(name, mode)).then((file) => this.slowFile(file, delay)),
      list: () => slow(false, () => inner.list()),
      exists: (name) => slow(false, () => inner.exists(name)),
      remove: (name) => slow(true, () => inner.remove(name)),
      syncDir: () => slow(true, () => inner.syncDir()),
      writeAtomic: (name, data) => slow(true, () => inner.writeAtomic(name, data)),
      readAll: (name) => slow(false, () => inner.readAll(name)),
    };
  }

  /**
   * A file whose operations wait their latency first. Like Node's FileHandle, close waits
   * for the operations already started on the handle, so an fdatasync begun before a close
   * still completes.
   */
  private slowFile(file: StorageFile, delay: (sync: boolean) => Promise<void>): StorageFile {
    let pending = 0;
    let idle: (() => void)[] = [];
    const slow = <T>(sync: boolean, fn: () => Promise<T>): Promise<T> => {
      pending++;
      return delay(sync)
        .then(fn)
        .finally(() => {
          if (--pending === 0) for (const wake of idle.splice(0)) wake();
        });
    };
    return {
      name: file.name,
      read: (target, position) => slow(false, () => file.read(target, position)),
      write: (data, position) => slow(false, () => file.write(data, position)),
      writeBatch: (jobs) => slow(false, () => file.writeBatch(jobs)),
      sync: () => slow(true, () => file.sync()),
      size: () => slow(false, () => file.size()),
      truncate: (lengthBytes) => slow(false, () => file.truncate(lengthBytes)),
      close: async () => {
        while (pending > 0) await new Promise<void>((resolve) => idle.push(resolve));
        idle = [];
        await file.close();
      },
    };
  }

  /** Full (another program filled the filesystem): every write that grows a file fails with ENOSPC until `unfill`. */
  fill(): void {
    this.mem.capacityBytes = this.mem.usedBytes();
  }

  unfill(): void {
    this.mem.capacityBytes = Number.MAX_SAFE_INTEGER;
  }

  get full(): boolean {
    return this.mem.capacityBytes !== Number.MAX_SAFE_INTEGER;
  }

  /** Power loss. */
  crash(): void {
    this.crashes++;
    this.mem.crash(this.random);
  }

  /** One flipped bit somewhere in `name` (false if the file is empty or missing). */
  bitRot(name: string): boolean {
    const image = this.mem.image(name);
    if (image === undefined || image.length === 0) return false;
    this.mem.flipBit(name, this.random.int(image.length * 8));
    return true;
  }
}
