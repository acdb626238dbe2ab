/**
 * Reading accepted sockets into one reusable buffer.
 *
 * Why: by default Node allocates a new 64 KiB buffer for every read of a socket. At
 * hundreds of MiB/s of WRITE payloads that is a new ArrayBuffer per 64 KiB received, and
 * V8 counts every one as external memory: once some 16 MiB of it were allocated since the
 * last full collection (the old generation's slack in a heap as small as marsd's), V8
 * started the next one, about 50 full collections per GiB written (`--trace-gc`,
 * docs/benchmarks.md). Node reads into a caller's buffer only for sockets constructed
 * with the `onread` option, which a server's accepted sockets are not; so the accepted
 * socket's handle, before anything was read from it (the server pauses on connect), is
 * moved into a socket constructed with `onread`.
 *
 * Rules (what keeps the reused buffer from being read after it is rewritten):
 * - a view handed to the reader is valid only during that call: the next read of any
 *   socket sharing the buffer rewrites it; the reader copies whatever it keeps
 *   (ByteQueue.pushBorrowed / keepBorrowed);
 * - reads run one at a time on the main thread, each delivered before the next begins, so
 *   one buffer may serve every connection of a server;
 * - `target`, if given, is asked after every read where the next read should go: a view of
 *   the caller's own memory (say, the rest of a large WRITE payload, so that its bytes go
 *   from the kernel straight into their buffer, with no copy), or undefined for the shared
 *   buffer. The reader is told which it got (`intoTarget`). The caller must keep that
 *   memory unread by others until the read into it is delivered: Node may read into it
 *   at any time after `target` returned it.
 *
 * This uses two undocumented parts of Node's net module (a socket's `_handle`, and the
 * `handle` option of the Socket constructor). Where they are missing, the socket is left
 * as it is and delivers fresh chunks through 'data' as before.
 */
import net from 'node:net';

interface StreamHandle {
  readStart?: unknown;
  useUserBuffer?: unknown;
}

/**
 * A socket on the same connection as `socket` that delivers its input to `reader` as
 * views of `buffer`, starting paused (resume() to read); or undefined, and `socket`
 * untouched, when this Node does not allow it or `socket` was read from already.
 */
export function withReusableReadBuffer(
  socket: net.Socket,
  buffer: Buffer,
  reader: (view: Buffer, intoTarget: boolean) => void,
  target?: () => Buffer | undefined,
): net.Socket | undefined {
  const holder = socket as unknown as { _handle: StreamHandle | null | undefined };
  const handle = holder._handle;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function' || typeof handle.readStart !== 'function') return undefined;
  if (socket.bytesRead > 0 || socket.destroyed) return undefined;
  holder._handle = null; // the old socket lets go of the handle: destroying it no longer closes the connection
  socket.destroy();
  const options = {
    handle,
    allowHalfOpen: socket.allowHalfOpen,
    pauseOnCreate: true,
    onread:
      target === undefined
        ? { buffer, callback: (bytes: number) => {
            reader(buffer.subarray(0, bytes), false);
          } }
        : { buffer: () => target() ?? buffer, callback: (bytes: number, used: Buffer) => {
            reader(used.subarray(0, bytes), used !== buffer);
          } },
  };
  return new net.Socket(options);
}
