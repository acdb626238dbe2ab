/**
 * The rates a secondary shows in `view` (fetch, replay, sync on the wire), fed from where
 * its copies, its replay and its sync stand each time they are sampled. One small record
 * instead of six loose fields of the Replica; pure arithmetic over RateMeter.
 */
import type { Clock } from '../core/clock.js';
import type { ReplayPosition } from '../replay/position.js';
import { RateMeter, rateWindowS } from './rate-meter.js';

export class ReplicaRates {
  readonly fetch: RateMeter;
  readonly replay: RateMeter;
  /** The sync's bytes on the wire (both directions: what its limit counts), over the whole window from the start on. */
  readonly syncWire: RateMeter;
  private syncWireBytes = 0;
  private lastFetched: { name: string; bytes: number } | undefined;
  private lastReplayed: ReplayPosition | undefined;

  constructor(clock: Clock) {
    this.fetch = new RateMeter(clock);
    this.replay = new RateMeter(clock);
    this.syncWire = new RateMeter(clock, rateWindowS);
  }

  /** The sync's bytes received and sent so far. */
  noteSyncWire(wireBytes: number): void {
    this.syncWire.add(Math.max(0, wireBytes - this.syncWireBytes));
    this.syncWireBytes = wireBytes;
  }

  /** The last local copy's name and verified bytes. */
  noteFetched(name: string | undefined, bytes: number): void {
    if (name === undefined) return;
    const prev = this.lastFetched;
    const delta = prev === undefined ? 0 : prev.name === name ? bytes - prev.bytes : bytes;
    this.lastFetched = { name, bytes };
    this.fetch.add(Math.max(0, delta));
  }

  /** Where replay has applied to. */
  noteReplayed(p: ReplayPosition): void {
    const prev = this.lastReplayed;
    const delta = prev === undefined ? 0 : prev.logNumber === p.logNumber ? p.offsetBytes - prev.offsetBytes : p.offsetBytes;
    this.lastReplayed = p;
    this.replay.add(Math.max(0, delta));
  }
}
