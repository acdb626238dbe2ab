/**
 * Typed errors of sync with stable codes. These codes are not (yet) in core's
 * MarsErrorCode; they are proposed there (see docs/sync.md). Callers switch on `code`,
 * never on message text.
 *
 * - SYNC_BAD_MESSAGE: the peer sent a sync message that does not parse or breaks the
 *   protocol (wrong digest length, a range past the end, data outside the range being
 *   answered, an unknown type). The link is closed; nothing of the bad range is written.
 * - SYNC_REFUSED: the source refused the sync (no such resource, not serving it, busy,
 *   an I/O error on its device). The target reconnects later.
 * - SYNC_SIZE_MISMATCH: the two devices differ in size; sync cannot start.
 * - SYNC_STATE_CORRUPT: the target's persisted sync state does not parse.
 * - SYNC_CLOSED: the target was closed (daemon stopping) before sync finished.
 */
import { MarsError } from '../core/errors.js';

export type SyncErrorCode = 'SYNC_BAD_MESSAGE' | 'SYNC_REFUSED' | 'SYNC_SIZE_MISMATCH' | 'SYNC_STATE_CORRUPT' | 'SYNC_CLOSED';

export class SyncError extends Error {
  readonly code: SyncErrorCode;
  constructor(code: SyncErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'SyncError';
  }
}

/** Any failure of sync: its own errors, or the storage's and network's MarsErrors. */
export type SyncFailure = SyncError | MarsError;

export function asSyncFailure(err: unknown, context: string): SyncFailure {
  if (err instanceof SyncError || err instanceof MarsError) return err;
  return new MarsError('EIO', `${context}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** The MarsError a link is closed with (PeerLink speaks MarsError): the sync error is its cause. */
export function linkCloseError(error: SyncFailure): MarsError {
  return error instanceof MarsError ? error : new MarsError('PEER_CLOSED', `${error.code}: ${error.message}`, { cause: error });
}
