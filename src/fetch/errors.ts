/**
 * Typed errors of log fetch with stable codes. These codes are not (yet) in core's
 * MarsErrorCode; they are proposed there (see docs/replication.md). Callers switch on
 * `code`, never on message text.
 *
 * - FETCH_PROTOCOL: a peer sent a fetch message that does not parse, or breaks the
 *   protocol (data beyond the credit, at the wrong offset, for a stale request). The link
 *   is closed and the client reconnects.
 * - FETCH_BAD_RECORD: received bytes that are not a valid record (checksum, magic, seq).
 *   The bytes are dropped, the link is reset and the data fetched again.
 * - FETCH_SOURCE_DAMAGED: the serving host found a damaged record in its own durable
 *   prefix; fetch this log from another member.
 * - FETCH_DIVERGED: the local copy is longer than the source's durable or final length,
 *   or differs from it: the histories differ (split brain); fetch stops.
 * - FETCH_REMOTE: the server refused a request (no such resource or log, bad offset).
 */
export type FetchErrorCode = 'FETCH_PROTOCOL' | 'FETCH_BAD_RECORD' | 'FETCH_SOURCE_DAMAGED' | 'FETCH_DIVERGED' | 'FETCH_REMOTE';

export class FetchError extends Error {
  readonly code: FetchErrorCode;
  constructor(code: FetchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'FetchError';
  }
}
