/**
 * Numbers of the NBD protocol (fixed newstyle handshake, simple replies), named once so
 * that the server, the client and the tests say the same thing. Values follow the NBD
 * specification (NetworkBlockDevice/nbd, doc/proto.md); docs/nbd.md lays out every byte
 * we send and expect. All fields on the wire are big-endian.
 */

/** Magic numbers. The 64-bit ones are bigint because they do not fit a double. */
export const NbdMagic = {
  /** 'NBDMAGIC', first 8 bytes the server sends. */
  INIT_PASSWD: 0x4e42444d41474943n,
  /** 'IHAVEOPT', second 8 bytes of the greeting and the start of every option. */
  IHAVEOPT: 0x49484156454f5054n,
  /** Start of every fixed-newstyle option reply. */
  OPTION_REPLY: 0x3e889045565a9n,
  /** Start of every transmission request. */
  REQUEST: 0x25609513,
  /** Start of every simple reply. */
  SIMPLE_REPLY: 0x67446698,
  /** Start of every structured reply chunk (we never send these). */
  STRUCTURED_REPLY: 0x668e33ef,
} as const;

/** Handshake flags (16 bits, server to client). */
export const NbdHandshakeFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags (32 bits, client to server). */
export const NbdClientFlag = {
  C_FIXED_NEWSTYLE: 1 << 0,
  C_NO_ZEROES: 1 << 1,
} as const;

/** Transmission flags (16 bits, per export). */
export const NbdTransmissionFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Option numbers (NBD_OPT_*). */
export const NbdOption = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const REP_ERROR_BIT = 0x80000000;

/** Option reply types (NBD_REP_*); errors have bit 31 set. */
export const NbdReply = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERROR_BIT + 1,
  ERR_POLICY: REP_ERROR_BIT + 2,
  ERR_INVALID: REP_ERROR_BIT + 3,
  ERR_PLATFORM: REP_ERROR_BIT + 4,
  ERR_TLS_REQD: REP_ERROR_BIT + 5,
  ERR_UNKNOWN: REP_ERROR_BIT + 6,
  ERR_SHUTDOWN: REP_ERROR_BIT + 7,
  ERR_BLOCK_SIZE_REQD: REP_ERROR_BIT + 8,
  ERR_TOO_BIG: REP_ERROR_BIT + 9,
} as const;

export function isReplyError(replyType: number): boolean {
  return (replyType & REP_ERROR_BIT) !== 0;
}

/** Information types inside NBD_REP_INFO (answers to NBD_OPT_INFO / NBD_OPT_GO). */
export const NbdInfo = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission commands (NBD_CMD_*). */
export const NbdCommand = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;
export type NbdCommandType = (typeof NbdCommand)[keyof typeof NbdCommand];

/** Command flags (16 bits in every request). */
export const NbdCommandFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Error values in the reply's error field (NBD_E*). Only these may be sent. */
export const NbdErrno = {
  OK: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrnoValue = (typeof NbdErrno)[keyof typeof NbdErrno];

/** Fixed sizes of wire records, in bytes. */
export const NbdWire = {
  /** NBDMAGIC + IHAVEOPT + 16-bit handshake flags. */
  GREETING_BYTES: 18,
  CLIENT_FLAGS_BYTES: 4,
  /** IHAVEOPT + option + length. */
  OPTION_HEADER_BYTES: 16,
  /** reply magic + option + reply type + length. */
  OPTION_REPLY_HEADER_BYTES: 20,
  /** size + transmission flags, answer to NBD_OPT_EXPORT_NAME... */
  EXPORT_NAME_REPLY_BYTES: 10,
  /** ...followed by these zeroes unless NO_ZEROES was agreed. */
  EXPORT_NAME_ZEROES_BYTES: 124,
  REQUEST_HEADER_BYTES: 28,
  SIMPLE_REPLY_HEADER_BYTES: 16,
  /** Upper bound of any string (export names, messages) set by the spec. */
  STRING_BYTES_MAX: 4096,
} as const;
