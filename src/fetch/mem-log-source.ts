/**
 * A LogSource scripted by hand, for tests and the simulator: files in memory whose durable
 * end and completeness are set explicitly, independently of what has been written. It
 * lets a test hold bytes "written but not yet fdatasync'd" for as long as it likes and
 * check that a server never ships them.
 */
import { assert } from '../core/errors.js';
import { compareLogNames, parseLogName } from '../log/index.js';
import { MemStorage } from '../storage/mem-storage.js';
import { readAt, type StorageFile } from '../storage/storage.js';
import { ChangeSignal } from './change-signal.js';
import type { LogInfo, LogSource } from './log-source.js';

interface FileState {
  durableBytes: number;
  complete: boolean;
}

export class MemLogSource implements LogSource {
  readonly storage = new MemStorage();
  private readonly files = new Map<string, FileState>();
  private readonly signal = new ChangeSignal();

  /** Appends bytes to a file (created if missing); they are not durable until `makeDurable`. */
  async append(name: string, data: Buffer): Promise<void> {
    assert(parseLogName(name) !== undefined, `bad log name ${name}`);
    const state = this.files.get(name) ?? { durableBytes: 0, complete: false };
    assert(!state.complete, `append to complete log ${name}`);
    this.files.set(name, state);
    const file = await this.storage.open(name, 'create');
    try {
      await file.write(data, await file.size());
    } finally {
      await file.close();
    }
    this.signal.notify();
  }

  /** Declares the first `durableBytes` of a file durable (default: all of it). */
  makeDurable(name: string, durableBytes?: number): Promise<void> {
    const state = this.files.get(name);
    assert(state !== undefined, `no log ${name}`);
    const sizeBytes = (this.storage.image(name) ?? Buffer.alloc(0)).length;
    const target = durableBytes ?? sizeBytes;
    assert(target >= state.durableBytes && target <= sizeBytes, `durable end ${target} outside ${state.durableBytes}..${sizeBytes}`);
    state.durableBytes = target;
    this.signal.notify();
    return Promise.resolve();
  }

  /** Rotation: the file is durable as it is and will never change again. */
  async complete(name: string): Promise<void> {
    await this.makeDurable(name);
    this.files.get(name)!.complete = true;
    this.signal.notify();
  }

  /** The bytes of a file as written (durable or not). */
  async read(name: string): Promise<Buffer> {
    const file = await this.storage.open(name, 'read');
    try {
      return await readAt(file, 0, await file.size());
    } finally {
      await file.close();
    }
  }

  list(): Promise<LogInfo[]> {
    const names = [...this.files.keys()].map((n) => parseLogName(n)!).sort(compareLogNames);
    return Promise.resolve(names.map((n) => this.describe(n.name)));
  }

  info(name: string): Promise<LogInfo | undefined> {
    return Promise.resolve(this.files.has(name) ? this.describe(name) : undefined);
  }

  open(name: string): Promise<StorageFile> {
    return this.storage.open(name, 'read');
  }

  nextChange(): Promise<void> {
    return this.signal.next();
  }

  private describe(name: string): LogInfo {
    const state = this.files.get(name)!;
    return { name, durableBytes: state.durableBytes, complete: state.complete };
  }
}
