/**
 * Shared helpers of the log tests: a fixed fast-check seed, arbitraries for entries, a
 * Storage wrapper that counts and delays I/O, and a scan of a whole log stream.
 */
import fc from 'fast-check';
import type { OpenMode, Storage, StorageFile } from '../../src/storage/storage.js';
import type { Random } from '../../src/core/random.js';
import { listLogFiles } from '../../src/log/names.js';
import { LogScanner, type ScanEntry, type ScanOutcome } from '../../src/log/scanner.js';
import type { LogEntry, LogRecord } from '../../src/log/record.js';

export const fcSeed = Number(process.env['FC_SEED'] ?? 1);

export const u64Arbitrary = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

/** Entries with small payloads (the codec does not care about size beyond the limits). */
export function entryArbitrary(payloadBytesMax = 256): fc.Arbitrary<LogEntry> {
  const offsetBytes = fc.integer({ min: 0, max: 2 ** 40 });
  const write = fc.record({
    kind: fc.constant('write' as const),
    lamport: u64Arbitrary,
    offsetBytes,
    payload: fc.uint8Array({ minLength: 0, maxLength: payloadBytesMax }).map((bytes) => Buffer.from(bytes)),
  });
  const range = fc.record({
    kind: fc.constantFrom('trim' as const, 'zeroes' as const),
    lamport: u64Arbitrary,
    offsetBytes,
    lengthBytes: fc.integer({ min: 1, max: 32 * 1024 * 1024 }),
  });
  return fc.oneof(write, range);
}

export function withSeq(entry: LogEntry, seq: bigint): LogRecord {
  return { ...entry, seq };
}

/** A comparable form of a record or entry (the seq is left out). */
export function entryKey(entry: LogEntry | LogRecord): string {
  const range = entry.kind === 'write' ? `w:${entry.payload.toString('hex')}` : `${entry.kind}:${entry.lengthBytes}`;
  return `${entry.lamport}/${entry.offsetBytes}/${range}`;
}

export interface ScannedFile {
  name: string;
  entries: ScanEntry[];
  outcome: ScanOutcome;
}

/** Scans one file to its end. */
export async function scanFile(
  storage: Storage,
  name: string,
  options: { expectSeq?: bigint; readChunkBytes?: number; fromOffsetBytes?: number } = {},
): Promise<ScannedFile> {
  const file = await storage.open(name, 'read');
  try {
    const scanner = new LogScanner(file, name, { readChunkBytes: options.readChunkBytes ?? 4096, ...options });
    const entries: ScanEntry[] = [];
    for await (const entry of scanner) entries.push(entry);
    return { name, entries, outcome: scanner.outcome() };
  } finally {
    await file.close();
  }
}

/** Scans every log file of a storage in order, the seq continuing from file to file. */
export async function scanStream(storage: Storage, firstSeq = 1n, readChunkBytes = 4096): Promise<ScannedFile[]> {
  const files: ScannedFile[] = [];
  let expectSeq: bigint = firstSeq;
  for (const log of await listLogFiles(storage)) {
    const scanned = await scanFile(storage, log.name, { expectSeq, readChunkBytes });
    files.push(scanned);
    expectSeq = scanned.outcome.nextSeq ?? expectSeq;
  }
  return files;
}

/** A gate that holds operations until opened (or one at a time). */
export class Gate {
  private waiters: (() => void)[] = [];
  open = true;
  wait(): Promise<void> {
    if (this.open) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  release(): void {
    this.open = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
  get waiting(): number {
    return this.waiters.length;
  }
}

/** Wraps a Storage: counts writes and fdatasyncs, delays their completion by a macrotask, can hold them at gates. */
export class CountingStorage implements Storage {
  syncs = 0;
  writes = 0;
  writeSizesBytes: number[] = [];
  readonly writeGate = new Gate();
  /** Holds the completion of fdatasyncs (they take effect when called). */
  readonly syncGate = new Gate();
  /** Make a failed write's partial data durable before reporting the error, as kernel writeback may. */
  syncOnWriteError = false;
  constructor(
    readonly inner: Storage,
    readonly delayIo = true,
  ) {}

  async open(name: string, mode: OpenMode): Promise<StorageFile> {
    const file = await this.inner.open(name, mode);
    const delay = (): Promise<void> => (this.delayIo ? new Promise((resolve) => setImmediate(resolve)) : Promise.resolve());
    return {
      name: file.name,
      read: (target, position) => file.read(target, position),
      writeBatch: (jobs) => file.writeBatch(jobs),
      write: async (data, position) => {
        this.writes++;
        this.writeSizesBytes.push(data.length);
        await this.writeGate.wait();
        await delay();
        try {
          await file.write(data, position);
        } catch (err) {
          if (this.syncOnWriteError) await file.sync();
          throw err;
        }
      },
      sync: async () => {
        this.syncs++;
        const done = file.sync();
        await this.syncGate.wait();
        await delay();
        await done;
      },
      size: () => file.size(),
      truncate: (lengthBytes) => file.truncate(lengthBytes),
      close: () => file.close(),
    };
  }
  list(): Promise<string[]> {
    return this.inner.list();
  }
  exists(name: string): Promise<boolean> {
    return this.inner.exists(name);
  }
  remove(name: string): Promise<void> {
    return this.inner.remove(name);
  }
  syncDir(): Promise<void> {
    return this.inner.syncDir();
  }
  writeAtomic(name: string, data: Buffer): Promise<void> {
    return this.inner.writeAtomic(name, data);
  }
  readAll(name: string): Promise<Buffer | undefined> {
    return this.inner.readAll(name);
  }
}

/** Lets pending I/O callbacks run (a few macrotask turns). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Runs `start` at once (its effect happens now), but reports completion a few macrotasks later. */
async function late<T>(start: () => Promise<T>, turns: number): Promise<T> {
  let result: Promise<T>;
  try {
    result = start();
  } catch (err) {
    result = Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
  result.catch(() => undefined); // observed below, after the delay
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
  return result;
}

/**
 * Wraps a Storage so that writes, fdatasyncs and truncations take effect when called but
 * complete 0..2 macrotasks later, chosen by a seeded random: writes then complete while
 * an fdatasync is still running, as on a real disk.
 */
export class LatencyStorage implements Storage {
  constructor(
    readonly inner: Storage,
    private readonly random: Random,
  ) {}
  async open(name: string, mode: OpenMode): Promise<StorageFile> {
    const file = await this.inner.open(name, mode);
    const turns = (): number => this.random.int(3);
    return {
      name: file.name,
      read: (target, position) => file.read(target, position),
      write: (data, position) => late(() => file.write(data, position), turns()),
      writeBatch: (jobs) => late(() => file.writeBatch(jobs), turns()),
      sync: () => late(() => file.sync(), turns()),
      size: () => file.size(),
      truncate: (lengthBytes) => late(() => file.truncate(lengthBytes), turns()),
      close: () => file.close(),
    };
  }
  list(): Promise<string[]> {
    return this.inner.list();
  }
  exists(name: string): Promise<boolean> {
    return this.inner.exists(name);
  }
  remove(name: string): Promise<void> {
    return this.inner.remove(name);
  }
  syncDir(): Promise<void> {
    return this.inner.syncDir();
  }
  writeAtomic(name: string, data: Buffer): Promise<void> {
    return this.inner.writeAtomic(name, data);
  }
  readAll(name: string): Promise<Buffer | undefined> {
    return this.inner.readAll(name);
  }
}
