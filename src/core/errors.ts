/**
 * Typed errors with stable codes. Untrusted input is turned into one of these at the
 * edge; callers switch on `code`, never on message text.
 */
export type MarsErrorCode =
  | 'LOG_CORRUPT'
  | 'LOG_BAD_VERSION'
  | 'LOG_SEQ_GAP'
  | 'ENOSPC'
  | 'EIO'
  | 'EINVAL'
  | 'EOVERFLOW'
  | 'EBUSY'
  | 'TIMEOUT'
  | 'NOT_FOUND'
  | 'EXISTS'
  | 'BAD_DEVICE'
  | 'RESOURCE_FAILED'
  | 'SHUTTING_DOWN'
  | 'BAD_STATE_DIR'
  | 'BAD_REQUEST'
  | 'FRAME_CORRUPT'
  | 'FRAME_TOO_LARGE'
  | 'FRAME_BAD_VERSION'
  | 'AUTH_FAILED'
  | 'CLUSTER_MISMATCH'
  | 'HOST_MISMATCH'
  | 'PEER_NOT_MEMBER'
  | 'PEER_CLOSED'
  | 'PEER_BUSY'
  | 'META_CORRUPT'
  | 'META_BAD_MESSAGE'
  | 'META_NOT_OWNER'
  | 'META_BAD_SIGNATURE'
  | 'META_CLOCK_SKEW'
  | 'META_STALE';

export class MarsError extends Error {
  readonly code: MarsErrorCode;
  constructor(code: MarsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'MarsError';
  }
}

/** Wraps a Node system error (errno code such as ENOSPC) into the matching MarsError. */
export function fromSystemError(err: unknown, context: string): MarsError {
  if (err instanceof MarsError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') return new MarsError('ENOSPC', `${context}: no space left`, { cause: err });
  if (code === 'ENOENT') return new MarsError('NOT_FOUND', `${context}: ${message}`, { cause: err });
  return new MarsError('EIO', `${context}: ${message}`, { cause: err });
}

/** A broken internal invariant: a bug, never bad input. Throws at once. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
