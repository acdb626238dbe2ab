/**
 * Every limit of the NBD server in one place. A limit is finite and what happens when it
 * is reached is decided here, in the comment beside it (see docs/nbd.md, "Limits").
 */
export interface NbdLimits {
  /** Open connections; one more is closed at once after accept. */
  readonly connectionsMax: number;
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
  return limits;
}
