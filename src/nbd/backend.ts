/**
 * What the NBD server needs from whatever stores the data. The protocol layer knows
 * nothing of logs: the logger implements this for a resource, tests implement it in
 * memory.
 *
 * Errors: a backend rejects with a MarsError; the server maps its code to the NBD error
 * value (ENOSPC -> NBD_ENOSPC, EINVAL -> NBD_EINVAL, EOVERFLOW -> NBD_EOVERFLOW,
 * SHUTTING_DOWN -> NBD_ESHUTDOWN, anything else -> NBD_EIO).
 * The server checks ranges against `sizeBytes` before calling; a backend may assume
 * offset + length <= sizeBytes.
 */
export interface BlockBackend {
  readonly sizeBytes: number;
  /** True only if a flush on one connection covers writes answered on every connection. */
  readonly canMultiConn: boolean;
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** Resolves once the write is answered (logged); with `fua`, once it is durable. */
  write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void>;
  /** Resolves once every write answered before the call is durable. */
  flush(): Promise<void>;
  trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void>;
  writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void>;
}

/** The exports a server offers, looked up by name at handshake time. */
export interface ExportRegistry {
  get(name: string): BlockBackend | undefined;
  /** Names listed by NBD_OPT_LIST. */
  names(): string[];
}
