/**
 * SYNCED (frame type 0x24, client to server): a fetching host tells the source how far its
 * copy of a log is durable (fdatasync'd). Near-sync mode (src/logger/near-sync.ts) answers
 * a primary's FLUSH and FUA only once enough members acknowledged the records this way.
 *
 * Layout (docs/replication.md, "SYNCED"), after the common 8-byte header of fetch
 * messages (version 1, three zero bytes, request id u32 LE, here 0):
 *   8  syncedEndBytes u64 LE
 *   16 resource: length u8, ASCII
 *   .. log name: length u8, ASCII
 * Anything else (a newer version, non-zero reserved bytes, bad names, trailing bytes) is
 * FETCH_PROTOCOL, like every fetch message.
 */
import { FetchError } from './errors.js';
import { fetchMessageHeaderBytes, fetchProtocolVersion, readLogName, Reader, readResource, Writer } from './protocol.js';

export const fetchSyncedFrameType = 0x24;

export interface SyncedMessage {
  readonly resource: string;
  readonly logName: string;
  /** The copy of `logName` is durable on the sender up to this byte. */
  readonly syncedEndBytes: number;
}

export function encodeSynced(m: SyncedMessage): Buffer {
  return new Writer(0).u64(m.syncedEndBytes).name(m.resource).name(m.logName).done();
}

export function decodeSynced(payload: Buffer): SyncedMessage {
  if (payload.length < fetchMessageHeaderBytes) throw new FetchError('FETCH_PROTOCOL', `bad fetch message: ${payload.length} bytes are shorter than the header`);
  if (payload.readUInt8(0) !== fetchProtocolVersion) throw new FetchError('FETCH_PROTOCOL', `bad fetch message: fetch protocol version ${payload.readUInt8(0)}`);
  if (payload.readUInt8(1) !== 0 || payload.readUInt16LE(2) !== 0) throw new FetchError('FETCH_PROTOCOL', 'bad fetch message: reserved bytes are not zero');
  const r = new Reader(payload);
  const syncedEndBytes = r.u64();
  const resource = readResource(r);
  const logName = readLogName(r);
  r.end();
  return { resource, logName, syncedEndBytes };
}
