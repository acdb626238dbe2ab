/**
 * The reference of a simulation run: the primary's history as a list of records in log
 * order (the current lineage: records a crash took away are cut off), the "dumb" disk
 * they describe, and a hash of that disk after every prefix. A secondary's disk is
 * consistent when its hash is the hash of some prefix (anytime consistency); the same idea
 * as test/support/prefix-checker.ts, made cheap enough to check after every step.
 */
import { xxh3 } from '@node-rs/xxhash';

export interface HistoryRecord {
  readonly seq: number;
  readonly offsetBytes: number;
  readonly data: Buffer;
}

export function imageHash(image: Buffer): bigint {
  return xxh3.xxh64(image);
}

export class History {
  readonly records: HistoryRecord[] = [];
  image: Buffer;
  /** hashes[k]: the disk after the first k records. */
  private hashes: bigint[];
  private firstPrefix = new Map<bigint, number>();
  /** Every answered FLUSH covers the records up to this seq. */
  flushedSeq = 0;
  /** How often the lineage was cut (a crash of the primary lost records). */
  truncations = 0;

  constructor(readonly sizeBytes: number) {
    this.image = Buffer.alloc(sizeBytes);
    this.hashes = [imageHash(this.image)];
    this.firstPrefix.set(this.hashes[0]!, 0);
  }

  get lastSeq(): number {
    return this.records.length;
  }

  append(record: HistoryRecord): void {
    if (record.seq !== this.lastSeq + 1) throw new Error(`history: record ${record.seq} follows ${this.lastSeq}`);
    this.records.push(record);
    record.data.copy(this.image, record.offsetBytes);
    const h = imageHash(this.image);
    this.hashes.push(h);
    if (!this.firstPrefix.has(h)) this.firstPrefix.set(h, this.lastSeq);
  }

  /** The smallest k whose prefix image has this hash, or -1. */
  prefixOf(image: Buffer): number {
    return this.firstPrefix.get(imageHash(image)) ?? -1;
  }

  /** Whether `image` is the disk after the whole history. */
  isLatest(image: Buffer): boolean {
    return imageHash(image) === this.hashes[this.lastSeq];
  }

  imageAt(k: number): Buffer {
    const image = Buffer.alloc(this.sizeBytes);
    for (const r of this.records.slice(0, k)) r.data.copy(image, r.offsetBytes);
    return image;
  }

  /** A crash or a forced failover left only the first k records in the lineage. */
  truncate(k: number): void {
    if (k >= this.lastSeq) return;
    this.truncations++;
    this.records.length = k;
    this.hashes.length = k + 1;
    this.image = this.imageAt(k);
    this.firstPrefix = new Map();
    this.hashes.forEach((h, i) => {
      if (!this.firstPrefix.has(h)) this.firstPrefix.set(h, i);
    });
    this.flushedSeq = Math.min(this.flushedSeq, k);
  }
}
