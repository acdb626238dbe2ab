/**
 * SYNCED (frame type 0x24, client to server): a fetching host tells the source how far its
 * copy of a log is durable (fdatasync'd). Near-sync mode (src/logger/near-sync.ts) answers
 * a primary's FLUSH and FUA only once enough members acknowledged the records this way.
 *
 * Layout (docs/network.md, "Log fetch acknowledgements"), after the common 8-byte header
 * of fetch messages (version 1, three zero bytes, request id u32 LE, here 0):
 *   8  syncedEndBytes u64 LE
 *   16 resource: length u8, ASCII
 *   .. log name: length u8, ASCII
 * Anything else (a newer version, non-zero reserved bytes, bad names, trailing bytes) is
 * FETCH_PROTOCOL, like every fetch message.
 */
import { parseLogName } from '../log/index.js';
import { FetchError } from './errors.js';
import { fetchMessageHeaderBytes, fetchProtocolVersion, isValidResourceName } from './protocol.js';

export const fetchSyncedFrameType = 0x24;

export interface SyncedMessage {
  readonly resource: string;
  readonly logName: string;
  /** The copy of `logName` is durable on the sender up to this byte. */
  readonly syncedEndBytes: number;
}

const u32Span = 0x1_0000_0000;

function protocolError(why: string): FetchError {
  return new FetchError('FETCH_PROTOCOL', `bad SYNCED message: ${why}`);
}

export function encodeSynced(m: SyncedMessage): Buffer {
  const resource = Buffer.from(m.resource, 'ascii');
  const logName = Buffer.from(m.logName, 'ascii');
  const out = Buffer.alloc(fetchMessageHeaderBytes + 8 + 1 + resource.length + 1 + logName.length);
  out.writeUInt8(fetchProtocolVersion, 0);
  let at = fetchMessageHeaderBytes;
  out.writeUInt32LE(m.syncedEndBytes % u32Span, at);
  out.writeUInt32LE(Math.floor(m.syncedEndBytes / u32Span), at + 4);
  at += 8;
  out.writeUInt8(resource.length, at++);
  resource.copy(out, at);
  at += resource.length;
  out.writeUInt8(logName.length, at++);
  logName.copy(out, at);
  return out;
}

export function decodeSynced(payload: Buffer): SyncedMessage {
  if (payload.length < fetchMessageHeaderBytes + 8 + 2) throw protocolError(`${payload.length} bytes are too short`);
  if (payload.readUInt8(0) !== fetchProtocolVersion) throw protocolError(`version ${payload.readUInt8(0)}`);
  if (payload.readUInt8(1) !== 0 || payload.readUInt16LE(2) !== 0) throw protocolError('reserved bytes are not zero');
  let at = fetchMessageHeaderBytes;
  const low = payload.readUInt32LE(at);
  const high = payload.readUInt32LE(at + 4);
  if (high >= 0x20_0000) throw protocolError('a byte count beyond 2^53');
  at += 8;
  const name = (): string => {
    if (at >= payload.length) throw protocolError('ends before a name');
    const length = payload.readUInt8(at++);
    if (at + length > payload.length) throw protocolError('a name runs past the end');
    const bytes = payload.subarray(at, at + length);
    at += length;
    for (const byte of bytes) if (byte < 0x20 || byte > 0x7e) throw protocolError('a name with a non-printable byte');
    return bytes.toString('ascii');
  };
  const resource = name();
  const logName = name();
  if (at !== payload.length) throw protocolError(`${payload.length - at} trailing bytes`);
  if (!isValidResourceName(resource)) throw protocolError(`bad resource name ${JSON.stringify(resource)}`);
  if (parseLogName(logName) === undefined) throw protocolError(`bad log name ${JSON.stringify(logName)}`);
  return { resource, logName, syncedEndBytes: high * u32Span + low };
}
