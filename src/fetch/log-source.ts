/**
 * What a fetch server serves: the log files one host holds for one resource. The daemon
 * implements it over its resource directory (StorageLogSource); tests script one by hand
 * (MemLogSource). The interface exists so that the server never decides by itself how
 * much of a file may leave the host: `durableBytes` is the source's word for it, and for
 * the primary's current file it is the log writer's durable end (fdatasync'd), never more.
 */
import type { StorageFile } from '../storage/storage.js';

/** One log file as a source sees it. */
export interface LogInfo {
  /** `log-NNNNNNNNN-HOST`, the same name on every host. */
  readonly name: string;
  /** Bytes that may be shipped: the durable prefix, always at a record boundary. */
  readonly durableBytes: number;
  /** The file will never change again (it was rotated); `durableBytes` is its final length. */
  readonly complete: boolean;
}

export interface LogSource {
  /** The log files, in log order (number, then host). */
  list(): Promise<LogInfo[]>;
  /** One file, or undefined when the source does not hold it. */
  info(name: string): Promise<LogInfo | undefined>;
  /** Opens a file for reading (only its durable prefix is read). */
  open(name: string): Promise<StorageFile>;
  /**
   * Resolves at the next change of any file's durable end or completeness, or of the
   * list. Take the promise BEFORE looking at the state, then await it: a change between
   * the look and the wait is not lost.
   */
  nextChange(): Promise<void>;
}
