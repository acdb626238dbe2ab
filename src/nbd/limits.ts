/**
 * Every limit of the NBD server in one place. A limit is finite and what happens when it
 * is reached is decided here, in the comment beside it (see docs/nbd.md, "Limits").
 */
export interface NbdLimits {
  /** Open connections; one more is closed at once after accept. */
  readonly connectionsMax: number;
  /** Open connections from one source IP address (handshakes included); one more is closed at once after accept. */
  readonly connectionsPerAddressMax: number;
  /** Connections in transmission on one export; one more gets NBD_REP_ERR_POLICY (GO) or is closed (EXPORT_NAME). */
  readonly exportConnectionsMax: number;
  /**
   * After the handshake, time without a request from the client and without the client
   * taking any reply bytes, while no request of it is in the backend; then the connection
   * is closed (it no longer counts as "device open"). marsd: --nbd-idle-timeout.
   */
  readonly idleMsMax: number;
  /**
   * When a connection limit (in all, per address, per export) is reached, a connection
   * still in its handshake for at least evictHandshakeMsMin, else the one idle longest
   * (after the handshake, for at least evictIdleMsMin), is closed to make room for the
   * newcomer; only without such a connection is the newcomer refused. Real clients
   * handshake in milliseconds, so held-open handshakes and idle connections cannot keep
   * one out.
   */
  readonly evictHandshakeMsMin: number;
  readonly evictIdleMsMin: number;
  /**
   * Time the client may leave a reply unread (queued reply bytes, none taken), and time
   * from a WRITE header to the end of its payload; then the connection is destroyed.
   */
  readonly replyStallMsMax: number;
  /**
   * Process-wide budget (one per server) for WRITE payloads being received or in the
   * backend and READ replies not yet handed to the kernel. A request whose bytes do not
   * fit waits unread: its connection stops reading (TCP backpressure) until bytes are
   * released; nothing fails. At least requestBytesMax.
   */
  readonly bufferedBytesMax: number;
  /** The part of bufferedBytesMax that the connections of one source IP address may hold together; the same backpressure. */
  readonly bufferedBytesPerAddressMax: number;
  /** Refusals (limits, handshake failures) of one source IP address and reason: one log line per this period, with a count of the suppressed. */
  readonly refusalLogQuietMs: number;
  /** Requests dispatched and not yet answered, per connection; when full, the server stops reading the socket. */
  readonly inflightRequestsMax: number;
  /** Bytes of read and write data held by dispatched requests, per connection; when reached, the server stops reading. */
  readonly inflightBytesMax: number;
  /** Largest READ or WRITE length; advertised as the maximum block size. Larger requests get NBD_EINVAL. */
  readonly requestBytesMax: number;
  /** Largest option payload during the handshake; a larger one drops the connection. */
  readonly optionBytesMax: number;
  /** Options per handshake; one more drops the connection. */
  readonly optionsMax: number;
  /** Time from accept to the end of the handshake; then the connection is dropped. */
  readonly handshakeMsMax: number;
  /** Time a closing connection may take to flush its last replies before it is destroyed. */
  readonly closeLingerMsMax: number;
  /** Advertised minimum block size; requests not aligned to it get NBD_EINVAL. Power of two, <= 65536. */
  readonly blockBytesMin: number;
  /** Advertised preferred block size. Power of two, >= max(512, blockBytesMin). */
  readonly blockBytesPreferred: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const NBD_LIMITS_DEFAULT: NbdLimits = Object.freeze({
  connectionsMax: 256,
  connectionsPerAddressMax: 32,
  exportConnectionsMax: 64,
  idleMsMax: 600_000,
  replyStallMsMax: 120_000,
  evictHandshakeMsMin: 1_000,
  evictIdleMsMin: 30_000,
  bufferedBytesMax: 256 * MiB,
  bufferedBytesPerAddressMax: 128 * MiB,
  refusalLogQuietMs: 10_000,
  inflightRequestsMax: 64,
  inflightBytesMax: 32 * MiB,
  requestBytesMax: 32 * MiB,
  optionBytesMax: 64 * KiB,
  optionsMax: 64,
  handshakeMsMax: 30_000,
  closeLingerMsMax: 5_000,
  blockBytesMin: 1,
  blockBytesPreferred: 4096,
});

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Fills in defaults and rejects inconsistent values (a configuration error, thrown at once). */
export function resolveLimits(overrides: Partial<NbdLimits> = {}): NbdLimits {
  const limits: NbdLimits = { ...NBD_LIMITS_DEFAULT, ...overrides };
  for (const [key, value] of Object.entries(limits)) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`NBD limit ${key} must be a positive integer, got ${String(value)}`);
    }
  }
  if (!isPowerOfTwo(limits.blockBytesMin) || limits.blockBytesMin > 64 * KiB) {
    throw new RangeError('NBD limit blockBytesMin must be a power of two <= 65536');
  }
  if (!isPowerOfTwo(limits.blockBytesPreferred) || limits.blockBytesPreferred < Math.max(512, limits.blockBytesMin)) {
    throw new RangeError('NBD limit blockBytesPreferred must be a power of two >= max(512, blockBytesMin)');
  }
  const { requestBytesMax } = limits;
  if (requestBytesMax % limits.blockBytesMin !== 0 || requestBytesMax > 0xffffffff || requestBytesMax < limits.blockBytesPreferred) {
    throw new RangeError('NBD limit requestBytesMax must be a multiple of blockBytesMin, >= blockBytesPreferred, < 2^32');
  }
  if (limits.bufferedBytesPerAddressMax > limits.bufferedBytesMax || limits.bufferedBytesPerAddressMax < requestBytesMax) {
    throw new RangeError('NBD limits must satisfy requestBytesMax <= bufferedBytesPerAddressMax <= bufferedBytesMax');
  }
  return limits;
}

/** Distinct source addresses and reasons remembered by the refusal log; the oldest is forgotten first. */
export const refusalLogEntriesMax = 1024;

/**
 * The one read buffer of a server, shared by all its connections (socket-read.ts): every
 * read of a client's socket delivers at most this much, and what a connection cannot use
 * at once is copied out of it.
 */
export const socketReadBufferBytes = 256 * 1024;
