/**
 * A secondary's copies of the fetched log files, `log-NNNNNNNNN-HOST` under the same names
 * as at their origin, in a Storage (the resource directory).
 *
 * Invariants, which make the copies a LogSource like the primary's own directory:
 * - a copy holds only whole records that were verified on receipt; its length is its
 *   verified end (bytes that fail verification never reach the file);
 * - every copy but the last is whole: the copy of log N+1 is created only after the copy of
 *   N has the source's final length and is fdatasync'd. So "a later copy exists" means
 *   complete, exactly as in the primary's directory;
 * - damage found in copy N (bit rot found by replay) cuts N at the damage and removes
 *   every later copy, which keeps the previous invariant; they are fetched again;
 * - on open, the last copy is verified from its start and cut after its last valid record
 *   (a crash of this host may have torn its unsynced end). Earlier copies were synced
 *   before their successor existed, and replay verifies every record before applying it;
 * - the first copy of a member that joined by sync may begin at a byte offset (the sync's
 *   start): its bytes before it are a hole, never read. Its verification then starts at a
 *   point known good (`verifyFrom`: the persisted replay position, or the sync's start —
 *   a record boundary whose bytes before it were fdatasync'd), never at byte 0.
 *
 * - with a state reserve (`room`, src/daemon/state-reserve.ts), an append or a new copy
 *   that would write into the last free bytes of the filesystem, kept for replay's state
 *   files, throws ENOSPC before it writes (fetch pauses as for a full filesystem).
 *
 * `source` serves the copies (to the Replayer, and to other members fetching from this
 * host): the copy being fetched counts as durable only up to its last fdatasync.
 */
import { fromSystemError, MarsError } from '../core/errors.js';
import { listLogFiles, parseLogName } from '../log/index.js';
import { readAt, writeParts, type Storage, type StorageFile } from '../storage/storage.js';
import { verifyReadChunkBytes } from './limits.js';
import { RecordStreamVerifier } from './record-verifier.js';
import { StorageLogSource } from './storage-log-source.js';

/** The copy being appended. */
interface CurrentCopy {
  readonly name: string;
  readonly file: StorageFile;
  verifiedBytes: number;
  syncedBytes: number;
  /** The seq of the next record, when the copy has records. */
  nextSeq: bigint | undefined;
}

export interface LocalCopyEnd {
  readonly name: string;
  readonly logNumber: number;
  readonly verifiedBytes: number;
  readonly syncedBytes: number;
  readonly nextSeq: bigint | undefined;
}

/** What verifying one copy found. */
export interface CopyCheck {
  readonly verifiedBytes: number;
  readonly nextSeq: bigint | undefined;
  /** Bytes cut off after the verified end (torn tail or damage), with why. */
  readonly cutBytes: number;
  readonly reason: string | undefined;
}

/** Where a copy's verification may start: a record boundary in copy `name`, everything before it durable. */
export interface VerifyStart {
  readonly name: string;
  readonly offsetBytes: number;
  /** The seq of the record there, when known. */
  readonly nextSeq: bigint | undefined;
}

/** Verifies a copy with the receipt checks from `from` (default: its start); returns where its valid records end. */
export async function verifyCopy(file: StorageFile, from?: VerifyStart): Promise<Omit<CopyCheck, 'cutBytes'> & { sizeBytes: number }> {
  const sizeBytes = await file.size();
  const start = from !== undefined && from.offsetBytes <= sizeBytes ? from : undefined;
  const verifier = new RecordStreamVerifier(start?.offsetBytes ?? 0, start?.nextSeq);
  for (let at = start?.offsetBytes ?? 0; at < sizeBytes && verifier.fault === undefined; ) {
    const chunk = await readAt(file, at, Math.min(verifyReadChunkBytes, sizeBytes - at));
    if (chunk.length === 0) break;
    verifier.push(chunk);
    at += chunk.length;
  }
  const reason = verifier.fault?.reason ?? (verifier.partialBytes > 0 ? 'incomplete record at the end' : undefined);
  return { verifiedBytes: verifier.verifiedEndBytes, nextSeq: verifier.nextSeq, reason, sizeBytes };
}

function asMarsError(err: unknown, context: string): MarsError {
  return err instanceof MarsError ? err : fromSystemError(err, context);
}

export class LocalCopies {
  readonly source: StorageLogSource;
  private current: CurrentCopy | undefined;
  /** What open() found and cut, for the log. */
  lastCheck: (CopyCheck & { name: string }) | undefined;
  /** Where a copy that begins at an offset may be verified from (see the header); undefined: from byte 0. */
  private verifyFrom: (() => VerifyStart | undefined) | undefined;
  /** Throws ENOSPC when `bytes` more may not be written (the host's state reserve); undefined: no reserve. */
  private room: ((bytes: number) => Promise<void>) | undefined;

  private constructor(private readonly storage: Storage) {
    this.source = new StorageLogSource({
      storage,
      // The copy being fetched counts up to its verified end: its bytes are the source's
      // durable bytes, which never change, so a crash here only means fetching them again.
      // Whoever persists a position inside the copy syncs it first (sync()).
      live: () => (this.current === undefined ? undefined : { name: this.current.name, durableBytes: this.current.verifiedBytes }),
    });
  }

  /** Opens the copies in `storage`: verifies the last one and cuts it after its last valid record. */
  static async open(storage: Storage, verifyFrom?: () => VerifyStart | undefined, room?: (bytes: number) => Promise<void>): Promise<LocalCopies> {
    const copies = new LocalCopies(storage);
    copies.verifyFrom = verifyFrom;
    copies.room = room;
    const last = (await listLogFiles(storage)).at(-1);
    if (last !== undefined) copies.lastCheck = { name: last.name, ...(await copies.adopt(last.name)) };
    return copies;
  }

  /** The names of every local copy, in log order. */
  async names(): Promise<string[]> {
    return (await listLogFiles(this.storage)).map((f) => f.name);
  }

  /** The copy being fetched (the last one), or undefined when there is none. */
  get last(): LocalCopyEnd | undefined {
    const c = this.current;
    if (c === undefined) return undefined;
    return { name: c.name, logNumber: parseLogName(c.name)!.logNumber, verifiedBytes: c.verifiedBytes, syncedBytes: c.syncedBytes, nextSeq: c.nextSeq };
  }

  /** Appends verified records at the verified end. On failure the file is cut back to it (best effort) and the error thrown (ENOSPC stays ENOSPC). */
  async append(parts: readonly Buffer[], nextSeq: bigint | undefined): Promise<void> {
    const c = this.currentCopy();
    const lengthBytes = parts.reduce((sum, p) => sum + p.length, 0);
    await this.room?.(lengthBytes);
    try {
      await writeParts(c.file, parts, c.verifiedBytes);
    } catch (err) {
      await c.file.truncate(c.verifiedBytes).catch(() => undefined);
      throw asMarsError(err, `write ${c.name} at ${c.verifiedBytes}`);
    }
    c.verifiedBytes += lengthBytes;
    c.nextSeq = nextSeq;
    this.source.notifyChange();
  }

  /** fdatasync of the copy being fetched; the new durable end is announced to the source's waiters. */
  async sync(): Promise<void> {
    const c = this.current;
    if (c === undefined || c.syncedBytes === c.verifiedBytes) return;
    const target = c.verifiedBytes;
    try {
      await c.file.sync();
    } catch (err) {
      throw asMarsError(err, `fdatasync ${c.name}`);
    }
    c.syncedBytes = Math.max(c.syncedBytes, target);
  }

  get unsyncedBytes(): number {
    return this.current === undefined ? 0 : this.current.verifiedBytes - this.current.syncedBytes;
  }

  /**
   * Starts the copy of the next log (the current one must be whole and is synced first).
   * `baseBytes` > 0: only the first copy, of the log where replay starts: the copy begins
   * there (a hole before it, never read), its next record has seq `nextSeq`.
   */
  async startCopy(name: string, baseBytes = 0, nextSeq?: bigint): Promise<void> {
    if (baseBytes > 0 && this.current !== undefined) throw new MarsError('EINVAL', `${name}: only the first copy may begin at an offset`);
    await this.room?.(0);
    await this.sync();
    const existed = await this.storage.exists(name);
    const file = await this.storage.open(name, 'create');
    try {
      if ((await file.size()) !== 0) await file.truncate(0);
      if (baseBytes > 0) {
        await file.truncate(baseBytes);
        await file.sync();
      }
      if (!existed) await this.storage.syncDir();
    } catch (err) {
      await file.close().catch(() => undefined);
      throw asMarsError(err, `create ${name}`);
    }
    await this.current?.file.close().catch(() => undefined);
    this.current = { name, file, verifiedBytes: baseBytes, syncedBytes: baseBytes, nextSeq: baseBytes > 0 ? nextSeq : this.current?.nextSeq };
    this.source.notifyChange();
  }

  /**
   * Damage at `offsetBytes` of copy `name` (found by replay): cuts that copy there, removes
   * every later copy, re-verifies the cut copy and continues fetching into it.
   */
  async cutAt(name: string, offsetBytes: number): Promise<CopyCheck | undefined> {
    const parsed = parseLogName(name);
    if (parsed === undefined) throw new MarsError('EINVAL', `cut: ${name} is not a log name`);
    if (!(await this.storage.exists(name))) return undefined; // a stale report: already cut and removed
    await this.current?.file.close().catch(() => undefined);
    this.current = undefined;
    for (const later of (await listLogFiles(this.storage)).filter((f) => f.logNumber > parsed.logNumber)) await this.storage.remove(later.name);
    await this.storage.syncDir();
    const check = await this.adopt(name, offsetBytes);
    this.source.notifyChange();
    return check;
  }

  /**
   * Removes the copies named (a syncing member's copies from an earlier start of its sync,
   * see staleSyncCopies): the copy being fetched is closed first if it is one of them; the
   * directory is synced, so a crash after this finds them gone.
   */
  async drop(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    if (this.current !== undefined && names.includes(this.current.name)) await this.close();
    for (const name of names) if (await this.storage.exists(name)) await this.storage.remove(name);
    await this.storage.syncDir();
    this.lastCheck = undefined;
    this.source.notifyChange();
  }

  /** After close(): makes the last copy current again (verified, cut after its last valid record), for a new fetch client. */
  async reopen(): Promise<void> {
    if (this.current !== undefined) return;
    const last = (await listLogFiles(this.storage)).at(-1);
    if (last !== undefined) this.lastCheck = { name: last.name, ...(await this.adopt(last.name)) };
    this.source.notifyChange();
  }

  async close(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (c === undefined) return;
    try {
      if (c.syncedBytes < c.verifiedBytes) await c.file.sync();
    } finally {
      await c.file.close();
    }
  }

  private currentCopy(): CurrentCopy {
    if (this.current === undefined) throw new MarsError('EINVAL', 'no local copy is being fetched');
    return this.current;
  }

  /** Makes `name` the current copy: verified from its start, cut after its valid records (and at `cutAtBytes`). */
  private async adopt(name: string, cutAtBytes?: number): Promise<CopyCheck> {
    const file = await this.storage.open(name, 'write');
    try {
      if (cutAtBytes !== undefined && (await file.size()) > cutAtBytes) await file.truncate(cutAtBytes);
      const from = this.verifyFrom?.();
      const check = await verifyCopy(file, from?.name === name ? from : undefined);
      const cutBytes = check.sizeBytes - check.verifiedBytes;
      if (cutBytes > 0) await file.truncate(check.verifiedBytes);
      await file.sync();
      this.current = { name, file, verifiedBytes: check.verifiedBytes, syncedBytes: check.verifiedBytes, nextSeq: check.nextSeq };
      return { verifiedBytes: check.verifiedBytes, nextSeq: check.nextSeq, cutBytes, reason: check.reason };
    } catch (err) {
      await file.close().catch(() => undefined);
      throw asMarsError(err, `verify ${name}`);
    }
  }
}
