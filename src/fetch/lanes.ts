/**
 * Parallel connections for log fetch ("lanes", the original's parallel_connections): one
 * TCP stream's window caps what a long fat pipe carries (window / round trip), so a
 * client may open more fetch links to the same source and have the DATA of its stream
 * spread over all of them.
 *
 * Wire (docs/replication.md, "Parallel connections"), after the common 8-byte header of
 * fetch messages (requestId 0):
 *   0x25 SESSION (client → server, on the main link, before HELLO): token, 16 bytes
 *   0x26 LANE    (client → server, first on each further link):       token, 16 bytes
 * Each further link is dialled and authenticated like the main one. The server sends a
 * stream's DATA and DATA_Z round-robin over the main link and its lanes, everything else
 * on the main link only. The client puts DATA back in log order (LaneMerger) before its
 * usual checks, and holds CAUGHT_UP and COMPLETE until the data before them has arrived,
 * so records are verified and appended in log order whatever link brought them. A lane
 * that closes closes the main link too: the stream starts again from the verified end.
 */
import { FetchError } from './errors.js';
import { fetchMessageHeaderBytes, fetchProtocolVersion } from './protocol.js';

export const fetchSessionFrameType = 0x25;
export const fetchLaneFrameType = 0x26;
export const laneTokenBytes = 16;
/** The most fetch connections per source and resource (marsd --parallel-connections). */
export const parallelConnectionsMax = 8;
/** DATA messages a client holds out of order; more means the source broke the order: they are passed on and refused. */
export const laneHeldMessagesMax = 1024;

export function encodeLaneToken(type: typeof fetchSessionFrameType | typeof fetchLaneFrameType, token: Buffer): { type: number; payload: Buffer } {
  const payload = Buffer.alloc(fetchMessageHeaderBytes + laneTokenBytes);
  payload.writeUInt8(fetchProtocolVersion, 0);
  token.copy(payload, fetchMessageHeaderBytes, 0, laneTokenBytes);
  return { type, payload };
}

export function decodeLaneToken(payload: Buffer): Buffer {
  if (payload.length !== fetchMessageHeaderBytes + laneTokenBytes) throw new FetchError('FETCH_PROTOCOL', `bad SESSION/LANE message: ${payload.length} bytes`);
  if (payload.readUInt8(0) !== fetchProtocolVersion || payload.readUInt8(1) !== 0 || payload.readUInt16LE(2) !== 0 || payload.readUInt32LE(4) !== 0) {
    throw new FetchError('FETCH_PROTOCOL', 'bad SESSION/LANE message header');
  }
  return Buffer.from(payload.subarray(fetchMessageHeaderBytes));
}

interface HeldData {
  readonly offsetBytes: number;
  readonly rawBytes: number;
  readonly release: () => void;
}

/**
 * Puts the DATA of the current stream back in offset order across lanes, and holds a
 * stream's CAUGHT_UP or COMPLETE until the data up to its byte count has been released.
 * Messages of other streams, and every other message, pass at once.
 */
export class LaneMerger {
  private requestId: number | undefined;
  private nextOffsetBytes = 0;
  private held: HeldData[] = [];
  private heldControl: { atBytes: number; release: () => void }[] = [];

  /** A new FETCH: its stream starts at `fromOffsetBytes`; what was held of the previous one is dropped. */
  expect(requestId: number, fromOffsetBytes: number): void {
    this.requestId = requestId;
    this.nextOffsetBytes = fromOffsetBytes;
    this.held = [];
    this.heldControl = [];
  }

  /** Drops everything held (the link closed). */
  reset(): void {
    this.requestId = undefined;
    this.held = [];
    this.heldControl = [];
  }

  get heldCount(): number {
    return this.held.length + this.heldControl.length;
  }

  data(requestId: number, offsetBytes: number, rawBytes: number, release: () => void): void {
    if (requestId !== this.requestId || offsetBytes === this.nextOffsetBytes || offsetBytes < this.nextOffsetBytes) {
      // Another stream's (dropped later), the next one, or one the client refuses as out of place.
      if (requestId === this.requestId && offsetBytes === this.nextOffsetBytes) this.nextOffsetBytes += rawBytes;
      release();
      this.drain();
      return;
    }
    this.held.push({ offsetBytes, rawBytes, release });
    if (this.held.length > laneHeldMessagesMax) {
      // The source broke the order beyond any window: pass everything on, the client refuses it.
      const all = [...this.held, ...this.heldControl];
      this.reset();
      for (const h of all) h.release();
    }
  }

  /** CAUGHT_UP (durableBytes) or COMPLETE (finalBytes) of a stream. */
  control(requestId: number, atBytes: number, release: () => void): void {
    if (requestId !== this.requestId || this.nextOffsetBytes >= atBytes) {
      release();
      return;
    }
    this.heldControl.push({ atBytes, release });
  }

  private drain(): void {
    for (;;) {
      const at = this.held.findIndex((h) => h.offsetBytes === this.nextOffsetBytes);
      if (at < 0) break;
      const [h] = this.held.splice(at, 1);
      this.nextOffsetBytes += h!.rawBytes;
      h!.release();
    }
    while (this.heldControl.length > 0 && this.heldControl[0]!.atBytes <= this.nextOffsetBytes) this.heldControl.shift()!.release();
  }
}
