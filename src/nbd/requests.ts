/**
 * Validation of transmission requests, without I/O: a request header and the export's
 * size in, the NBD error to answer with (or OK) out. Bad client requests become NBD
 * errors here, so the backend may assume every range it sees is valid.
 *
 * Choices, from the spec's "Error values" and "Block size constraints":
 * - unknown command, or a flag not valid for the command: NBD_EINVAL;
 * - READ and WRITE longer than requestBytesMax: NBD_EINVAL. WRITE_ZEROES and TRIM carry
 *   no payload and are not limited: the spec asks clients to keep WRITE_ZEROES under the
 *   maximum block size, but nbdcopy (libnbd 1.14) zeroes 128 MiB at once, and a long
 *   zero range costs the server no memory (marsd's logger splits it into records of at
 *   most the record limit);
 * - not aligned to blockBytesMin: NBD_EINVAL;
 * - past the end: NBD_ENOSPC for WRITE and WRITE_ZEROES, NBD_EINVAL for READ and TRIM;
 * - FLUSH with a nonzero offset or length: NBD_EINVAL.
 */
import type { RequestHeader } from './codec.js';
import type { NbdLimits } from './limits.js';
import { NbdCommand, NbdCommandFlag, NbdErrno, type NbdErrnoValue } from './protocol.js';

/** Command flags accepted per command. FUA is accepted on every command (the spec says so when SEND_FUA is set). */
function allowedFlags(type: number): number | undefined {
  switch (type) {
    case NbdCommand.READ:
    case NbdCommand.WRITE:
    case NbdCommand.FLUSH:
    case NbdCommand.TRIM:
    case NbdCommand.DISC:
      return NbdCommandFlag.FUA;
    case NbdCommand.WRITE_ZEROES:
      return NbdCommandFlag.FUA | NbdCommandFlag.NO_HOLE;
    default:
      return undefined;
  }
}

/** Commands with a length limit and whether a range past the end is "no space". */
function rangeRules(type: number): { limited: boolean; pastEnd: NbdErrnoValue } {
  switch (type) {
    case NbdCommand.WRITE:
      return { limited: true, pastEnd: NbdErrno.ENOSPC };
    case NbdCommand.WRITE_ZEROES:
      return { limited: false, pastEnd: NbdErrno.ENOSPC };
    case NbdCommand.READ:
      return { limited: true, pastEnd: NbdErrno.EINVAL };
    default:
      return { limited: false, pastEnd: NbdErrno.EINVAL };
  }
}

export function checkRequest(request: RequestHeader, sizeBytes: number, limits: NbdLimits): NbdErrnoValue {
  const allowed = allowedFlags(request.type);
  if (allowed === undefined || (request.flags & ~allowed) !== 0) return NbdErrno.EINVAL;
  if (request.type === NbdCommand.FLUSH) {
    return request.offsetBytes === 0 && request.lengthBytes === 0 ? NbdErrno.OK : NbdErrno.EINVAL;
  }
  if (request.type === NbdCommand.DISC) return NbdErrno.OK;
  const rules = rangeRules(request.type);
  if (rules.limited && request.lengthBytes > limits.requestBytesMax) return NbdErrno.EINVAL;
  const align = limits.blockBytesMin;
  if (align > 1 && (request.offsetBytes % align !== 0 || request.lengthBytes % align !== 0)) return NbdErrno.EINVAL;
  // offsetBytes beyond 2^53 has lost precision but still compares greater than any size.
  if (request.offsetBytes > sizeBytes || request.lengthBytes > sizeBytes - request.offsetBytes) return rules.pastEnd;
  return NbdErrno.OK;
}
