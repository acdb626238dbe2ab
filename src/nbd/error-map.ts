/**
 * Backend failures become NBD error values here, at the edge. Only values the spec
 * allows are ever sent; anything unexpected is an I/O error.
 */
import { MarsError } from '../core/errors.js';
import { NbdErrno, type NbdErrnoValue } from './protocol.js';

export function nbdErrorFor(err: unknown): NbdErrnoValue {
  if (!(err instanceof MarsError)) return NbdErrno.EIO;
  switch (err.code) {
    case 'ENOSPC':
      return NbdErrno.ENOSPC;
    case 'EINVAL':
      return NbdErrno.EINVAL;
    case 'EOVERFLOW':
      return NbdErrno.EOVERFLOW;
    case 'SHUTTING_DOWN':
      return NbdErrno.ESHUTDOWN;
    default:
      return NbdErrno.EIO;
  }
}
