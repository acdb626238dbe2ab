/**
 * A secondary's lag in seconds, the one derivation behind `view`, `status` and the
 * metrics: the age of the oldest write its disk does not hold yet. The age comes from the
 * Lamport stamp of the oldest unreplayed record, read from the secondary's own copy of the
 * log (64 bytes of one header): the stamp is the primary's hybrid clock in microseconds
 * when it logged the write, so a primary that writes nothing does not make its replicas
 * look behind. When no such record is here to read (fetch is behind, replay caught up),
 * the lag counts from when this host first saw itself behind. When the disk holds every
 * record here and this host has not yet heard how far the primary has gone (fetch-rest
 * unknown: just restarted, the primary unreachable), the lag is unknown (null), not 0.
 */
import { decodeHeader, recordHeaderBytes } from '../log/record.js';
import { formatLogName, parseLogName } from '../log/names.js';
import { readAt, type Storage } from '../storage/storage.js';

export interface LagPosition {
  readonly logNumber: number;
  readonly logHost: string;
  readonly offsetBytes: number;
}

/** What a secondary reports of itself: its rests and where its replay stands. */
export interface LagFacts {
  /** null: unknown (fetch has not heard from its source). */
  readonly fetchRestBytes: number | null;
  readonly replayRestBytes: number;
  readonly replayPosition: LagPosition | null;
}

export interface LagMeasure {
  /** The Lamport stamp (µs) of the oldest record this host's disk does not hold yet, if one was read. */
  readonly oldestUnappliedStampUs?: bigint;
  /** Since when (ms) the disk has been behind with no stamp to read. */
  readonly behindSinceMs?: number;
  /** No unapplied record is here to read and how far the primary has gone is unknown: so is the lag. */
  readonly unknown?: true;
}

/** The stamp of the record at (logNumber, offset) of the log file named by the position, or of the first record of the next log; undefined if none is there. */
export async function stampAt(storage: Storage, position: LagPosition): Promise<bigint | undefined> {
  const here = await headerStamp(storage, formatLogName(position.logNumber, position.logHost), position.offsetBytes);
  if (here !== undefined) return here;
  const names = await storage.list().catch(() => [] as string[]);
  const next = names
    .map((n) => ({ n, parsed: parseLogName(n) }))
    .filter((x) => x.parsed !== undefined && x.parsed.logNumber > position.logNumber)
    .sort((a, b) => a.parsed!.logNumber - b.parsed!.logNumber)[0];
  return next === undefined ? undefined : headerStamp(storage, next.n, 0);
}

async function headerStamp(storage: Storage, name: string, offsetBytes: number): Promise<bigint | undefined> {
  const file = await storage.open(name, 'read').catch(() => undefined);
  if (file === undefined) return undefined;
  try {
    const buffer = await readAt(file, offsetBytes, recordHeaderBytes);
    if (buffer.length < recordHeaderBytes) return undefined;
    const decoded = decodeHeader(buffer);
    return decoded.ok ? decoded.header.lamport : undefined;
  } catch {
    return undefined;
  } finally {
    await file.close().catch(() => undefined);
  }
}

/** Seconds since the oldest unapplied write was logged (by the primary's hybrid clock), never negative; 0 when nothing is measured. */
export function lagSecondsOf(nowMs: number, m: LagMeasure): number {
  if (m.oldestUnappliedStampUs !== undefined) return Math.max(0, nowMs / 1000 - Number(m.oldestUnappliedStampUs) / 1e6);
  if (m.behindSinceMs !== undefined) return Math.max(0, (nowMs - m.behindSinceMs) / 1000);
  return 0;
}

/** Measures the lag of the secondaries of one host, remembering per resource since when each has been behind without a stamp to read. */
export class LagTracker {
  private readonly behindSinceMs = new Map<string, number>();

  async measure(name: string, storage: Storage, facts: LagFacts, nowMs: number): Promise<LagMeasure> {
    const from = facts.replayRestBytes > 0 && facts.replayPosition !== null ? facts.replayPosition : undefined;
    const stamp = from === undefined ? undefined : await stampAt(storage, from);
    if (stamp !== undefined) {
      this.behindSinceMs.delete(name);
      return { oldestUnappliedStampUs: stamp };
    }
    if (facts.fetchRestBytes === 0 && from === undefined) {
      this.behindSinceMs.delete(name);
      return {};
    }
    if (facts.fetchRestBytes === null) return { unknown: true };
    const since = this.behindSinceMs.get(name) ?? nowMs;
    this.behindSinceMs.set(name, since);
    return { behindSinceMs: since };
  }

  /** The lag in whole seconds (0: the disk holds everything this host knows of; null: unknown). */
  async seconds(name: string, storage: Storage, facts: LagFacts, nowMs: number): Promise<number | null> {
    if (facts.fetchRestBytes === 0 && facts.replayRestBytes === 0) {
      this.behindSinceMs.delete(name);
      return 0;
    }
    const measured = await this.measure(name, storage, facts, nowMs);
    return measured.unknown === true ? null : Math.floor(lagSecondsOf(nowMs, measured));
  }

  forget(name: string): void {
    this.behindSinceMs.delete(name);
  }
}
