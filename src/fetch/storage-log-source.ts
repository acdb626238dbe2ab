/**
 * The LogSource of a resource directory: the log files in a Storage, with the durable
 * end of the file being appended right now given by a hook. The daemon gives the primary's
 * LogWriter (`liveWriterEnd`), and a secondary gives its fetch client's synced, verified end
 * of the copy it is fetching, so that it can serve its copies to other members in turn.
 *
 * The durable-prefix rule lives here: for the live file, `durableBytes` is the hook's
 * answer (min the file size), never the file size, which includes bytes the writer has
 * written but not yet fdatasync'd. Every other file is taken as durable as it is: a rotated
 * file was fdatasync'd before its successor was created, and after a crash recovery cuts
 * and fdatasyncs the last file before the host writes again.
 *
 * A file is complete when a later log file exists and it is not the live one: the writer
 * creates log N+1 only after N is durable and leaves N for good (logrotate), and a fetch
 * client creates its copy of N+1 only after its copy of N is whole and synced.
 *
 * Changes are not polled: whoever changes the directory or a durable end calls
 * `notifyChange()` (after each fdatasync of the live writer, after a rotation, after
 * logdelete); waiters in `nextChange()` wake up then.
 */
import { fromSystemError } from '../core/errors.js';
import { formatLogName, listLogFiles, parseLogName, type LogEnd } from '../log/index.js';
import type { Storage, StorageFile } from '../storage/storage.js';
import { ChangeSignal } from './change-signal.js';
import type { LogInfo, LogSource } from './log-source.js';
import { RecentFirstFile, type RecentLogBytes } from './recent-log-bytes.js';

/** The file being appended and how much of it is durable. */
export interface LiveLogEnd {
  readonly name: string;
  readonly durableBytes: number;
  /**
   * The writer appends no more to it (emergency mode), and the file may be deleted under
   * the source: its existence is checked again instead of taken from the writer.
   */
  readonly frozen?: boolean;
}

export interface StorageLogSourceOptions {
  readonly storage: Storage;
  /** The live file and its durable end, or undefined when nothing is being appended. */
  readonly live?: () => LiveLogEnd | undefined;
  /** The live log's last appends in memory (the primary): reads are answered from there when it holds them. */
  readonly recent?: RecentLogBytes;
}

/**
 * The hook for the primary: the LogWriter's durable end (`durablePosition()`), never its
 * written end; `frozen` says when the writer has stopped appending (emergency mode).
 */
export function liveWriterEnd(writer: { durablePosition(): LogEnd; frozen?(): boolean }, host: string): () => LiveLogEnd {
  return () => {
    const end = writer.durablePosition();
    return { name: formatLogName(end.logNumber, host), durableBytes: end.endOffsetBytes, frozen: writer.frozen?.() ?? false };
  };
}

export class StorageLogSource implements LogSource {
  private readonly signal = new ChangeSignal();

  constructor(private readonly options: StorageLogSourceOptions) {}

  /** Wakes every waiter of nextChange(): call after a durable end, the completeness or the list changed. */
  notifyChange(): void {
    this.signal.notify();
  }

  nextChange(): Promise<void> {
    return this.signal.next();
  }

  async list(): Promise<LogInfo[]> {
    const files = await listLogFiles(this.options.storage);
    const live = this.options.live?.();
    const infos: LogInfo[] = [];
    const lastNumber = files.at(-1)?.logNumber ?? 0;
    for (const f of files) {
      const sizeBytes = await this.sizeOf(f.name);
      if (sizeBytes === undefined) continue; // removed meanwhile (logdelete)
      infos.push(this.describe(f.name, sizeBytes, live, f.logNumber < lastNumber));
    }
    return infos;
  }

  async info(name: string): Promise<LogInfo | undefined> {
    const parsed = parseLogName(name);
    if (parsed === undefined) return undefined;
    const live = this.options.live?.();
    // The live file exists while it is live, and its durable end never passes its size:
    // no file I/O for it (a fetch at the live end asks after every fdatasync). A frozen one
    // (emergency mode) is deleted to make room, and a stream that still held it open would
    // keep its blocks allocated: it is looked up like any other file.
    if (live?.name === name && live.frozen !== true) return { name, durableBytes: live.durableBytes, complete: false };
    const sizeBytes = await this.sizeOf(name);
    if (sizeBytes === undefined) return undefined;
    const later = (await listLogFiles(this.options.storage)).some((f) => f.logNumber > parsed.logNumber);
    return this.describe(name, sizeBytes, live, later);
  }

  async open(name: string): Promise<StorageFile> {
    const file = await this.options.storage.open(name, 'read');
    return this.options.recent === undefined ? file : new RecentFirstFile(file, this.options.recent);
  }

  private describe(name: string, sizeBytes: number, live: LiveLogEnd | undefined, laterExists: boolean): LogInfo {
    if (live?.name === name) return { name, durableBytes: Math.min(sizeBytes, live.durableBytes), complete: false };
    return { name, durableBytes: sizeBytes, complete: laterExists };
  }

  private async sizeOf(name: string): Promise<number | undefined> {
    let file: StorageFile;
    try {
      file = await this.options.storage.open(name, 'read');
    } catch (err) {
      const error = fromSystemError(err, `open ${name}`);
      if (error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
    try {
      return await file.size();
    } finally {
      await file.close();
    }
  }
}
