/**
 * The last hour of each resource's lag and rates, for the status page's plots: a ring of
 * `historySamplesMax` samples per resource, for at most `historyResourcesMax` resources.
 * Memory is fixed: a full ring overwrites its oldest sample.
 */
import { historyResourcesMax, historySamplesMax } from './limits.js';
import type { Observation } from './observation.js';

export interface HistorySample {
  tMs: number;
  lagBytes: number;
  /** null: unknown (the status page leaves a gap). */
  lagS: number | null;
  writeBytesPerS: number;
  fetchBytesPerS: number;
  replayBytesPerS: number;
  syncBytesPerS: number;
}

export class Ring<T> {
  private readonly items: (T | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new Error(`ring capacity must be positive, not ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  get size(): number {
    return this.count;
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    const start = (this.next - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) out.push(this.items[(start + i) % this.capacity]!);
    return out;
  }
}

export class History {
  private readonly rings = new Map<string, Ring<HistorySample>>();

  constructor(private readonly samplesMax = historySamplesMax, private readonly resourcesMax = historyResourcesMax) {}

  add(o: Observation): void {
    const present = new Set(o.resources.map((r) => r.name));
    for (const name of this.rings.keys()) if (!present.has(name)) this.rings.delete(name);
    for (const r of o.resources) {
      let ring = this.rings.get(r.name);
      if (ring === undefined) {
        if (this.rings.size >= this.resourcesMax) continue;
        ring = new Ring<HistorySample>(this.samplesMax);
        this.rings.set(r.name, ring);
      }
      const rate = r.ratesBytesPerS;
      ring.push({
        tMs: o.timeMs,
        lagBytes: Object.values(r.lagBytes).reduce((a, b) => a + b, 0),
        lagS: r.lagS,
        writeBytesPerS: rate.write ?? 0,
        fetchBytesPerS: rate.fetch ?? 0,
        replayBytesPerS: rate.replay ?? 0,
        syncBytesPerS: rate.sync ?? 0,
      });
    }
  }

  samples(name: string): HistorySample[] {
    return this.rings.get(name)?.toArray() ?? [];
  }

  toJson(): Record<string, HistorySample[]> {
    return Object.fromEntries([...this.rings.keys()].map((name) => [name, this.samples(name)]));
  }
}
