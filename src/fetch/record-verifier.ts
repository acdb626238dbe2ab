/**
 * Verifies a byte stream of log records as it arrives, in pieces of any size: the pure
 * core of "verify every record on receipt". Bytes in; out come the bytes of whole records
 * that passed every check, and the first fault. It does no I/O.
 *
 * Why verify before appending (and not append, then scan the local copy): the local copy
 * then only ever holds whole verified records, so its length is its verified end, a
 * bad record from the wire never reaches the disk, and a fault is known at the exact
 * offset at once. (A scanner over a growing file cannot tell a bad record in the middle
 * from one still being written until later records prove it.) The price is holding one
 * partial record in memory, at most recordBytesMax.
 *
 * Checks, as the log scanner does them (docs/log-format.md): magic, header crc32c, format
 * version, field plausibility, syncedBytes ≤ the record's own offset, payload xxh64, and
 * seq +1 from record to record (from `expectSeq` when given). The server runs the same
 * checks over what it reads from its own disk before it ships it.
 *
 * Nothing is copied: a record that spans pieces is checked piece by piece (streaming
 * xxh64) and handed out as views of the pieces it arrived in, so the caller can write
 * them with one writev. Only a header split across pieces is joined (64 bytes).
 */
import { assert } from '../core/errors.js';
import { decodeHeader, recordHeaderBytes, verifyPayloadParts, type RecordHeader } from '../log/index.js';
import { fetchPartialBytesMax } from './limits.js';

export type RecordFaultKind = 'bad-record' | 'bad-version' | 'seq-gap';

export interface RecordFault {
  readonly kind: RecordFaultKind;
  /** Where the faulty record starts in the file. */
  readonly offsetBytes: number;
  readonly reason: string;
}

export interface VerifyResult {
  /** Bytes of whole verified records, in order, starting at the previous verified end (views of the pushed pieces). */
  readonly verified: readonly Buffer[];
  /** Their total length. */
  readonly verifiedBytes: number;
  /** The first fault; the verifier accepts nothing after it. */
  readonly fault: RecordFault | undefined;
}

export class RecordStreamVerifier {
  private held: Buffer[] = [];
  /** Per held piece: whether its bytes come from memory this host wrote itself (see push). */
  private heldTrusted: boolean[] = [];
  private heldBytes = 0;
  private verifiedEnd: number;
  private expectSeq: bigint | undefined;
  private header: RecordHeader | undefined;
  private faultValue: RecordFault | undefined;
  recordsVerified = 0;

  /** `startOffsetBytes` must be a record boundary; `expectSeq` the seq of the record there, if known. */
  constructor(startOffsetBytes: number, expectSeq?: bigint) {
    assert(Number.isSafeInteger(startOffsetBytes) && startOffsetBytes >= 0, `bad start offset ${startOffsetBytes}`);
    this.verifiedEnd = startOffsetBytes;
    this.expectSeq = expectSeq;
  }

  /** The end of the last whole verified record (a record boundary). */
  get verifiedEndBytes(): number {
    return this.verifiedEnd;
  }

  /** The end of everything pushed: verified records plus the partial record held. */
  get receivedEndBytes(): number {
    return this.verifiedEnd + this.heldBytes;
  }

  /** Bytes of the partial record held in memory. */
  get partialBytes(): number {
    return this.heldBytes;
  }

  /** The seq the next record must have (undefined before the first record when not given). */
  get nextSeq(): bigint | undefined {
    return this.expectSeq;
  }

  get fault(): RecordFault | undefined {
    return this.faultValue;
  }

  /**
   * `trusted`: the bytes come from this host's own memory (the primary's ring of what its
   * logger just encoded, src/fetch/recent-log-bytes.ts), not from a disk or a wire. A
   * record whose payload lies wholly in trusted pieces skips the payload xxh64 (its
   * header is checked all the same); the payload check is there against damage on the way
   * through a disk or a link, and the receiver checks every record again.
   */
  push(chunk: Buffer, trusted = false): VerifyResult {
    assert(this.faultValue === undefined, 'push after a fault');
    if (chunk.length > 0) {
      this.held.push(chunk);
      this.heldTrusted.push(trusted);
      this.heldBytes += chunk.length;
    }
    const out: Buffer[] = [];
    let outBytes = 0;
    for (;;) {
      const step = this.step();
      if (step === undefined) break;
      if ('fault' in step) {
        this.faultValue = step.fault;
        break;
      }
      for (const part of this.consume(step.recordBytes)) out.push(part);
      outBytes += step.recordBytes;
    }
    assert(this.faultValue !== undefined || this.heldBytes < fetchPartialBytesMax, 'a partial record larger than any record');
    return { verified: out, verifiedBytes: outBytes, fault: this.faultValue };
  }

  /** One whole record verified (still held), a fault, or undefined when more bytes are needed. */
  private step(): { recordBytes: number } | { fault: RecordFault } | undefined {
    const offsetBytes = this.verifiedEnd;
    const fault = (kind: RecordFaultKind, reason: string): { fault: RecordFault } => ({ fault: { kind, offsetBytes, reason } });
    if (this.header === undefined) {
      if (this.heldBytes < recordHeaderBytes) return undefined;
      const decoded = decodeHeader(this.peekHeader());
      if (!decoded.ok) return fault(decoded.fault === 'bad-version' ? 'bad-version' : 'bad-record', decoded.detail);
      if (decoded.header.syncedBytes > offsetBytes) return fault('bad-record', `record claims ${decoded.header.syncedBytes} bytes were durable before it started`);
      if (this.expectSeq !== undefined && decoded.header.seq !== this.expectSeq) {
        return fault('seq-gap', `expected record seq ${this.expectSeq}, found ${decoded.header.seq}`);
      }
      this.header = decoded.header;
    }
    const recordBytes = recordHeaderBytes + this.header.payloadBytes;
    if (this.heldBytes < recordBytes) return undefined;
    if (!this.trustedUpTo(recordBytes) && !verifyPayloadParts(this.header, this.slice(recordHeaderBytes, recordBytes))) return fault('bad-record', 'payload checksum mismatch');
    this.expectSeq = this.header.seq + 1n;
    this.header = undefined;
    this.verifiedEnd += recordBytes;
    this.recordsVerified++;
    return { recordBytes };
  }

  /** The first header's bytes as one buffer (a view when they lie in one piece). */
  private peekHeader(): Buffer {
    const first = this.held[0]!;
    if (first.length >= recordHeaderBytes) return first.subarray(0, recordHeaderBytes);
    return Buffer.concat(this.slice(0, recordHeaderBytes), recordHeaderBytes);
  }

  /** Whether every held piece that holds bytes below `to` is trusted. */
  private trustedUpTo(to: number): boolean {
    let at = 0;
    for (let i = 0; i < this.held.length && at < to; i++) {
      if (!this.heldTrusted[i]) return false;
      at += this.held[i]!.length;
    }
    return true;
  }

  /** Views of the held bytes [from, to), without copying. */
  private slice(from: number, to: number): Buffer[] {
    const parts: Buffer[] = [];
    let at = 0;
    for (const piece of this.held) {
      const end = at + piece.length;
      if (end > from && at < to) parts.push(piece.subarray(Math.max(from - at, 0), Math.min(to - at, piece.length)));
      if (end >= to) break;
      at = end;
    }
    return parts;
  }

  /** Removes the first `n` held bytes and returns them as views. */
  private consume(n: number): Buffer[] {
    const taken: Buffer[] = [];
    let rest = n;
    while (rest > 0) {
      const first = this.held[0]!;
      if (first.length <= rest) {
        this.held.shift();
        this.heldTrusted.shift();
        taken.push(first);
        rest -= first.length;
      } else {
        taken.push(first.subarray(0, rest));
        this.held[0] = first.subarray(rest);
        rest = 0;
      }
    }
    this.heldBytes -= n;
    return taken;
  }
}
