/**
 * Crash property: random append / sync / rotate / ENOSPC sequences on a MemStorage (with
 * or without I/O that completes late, so that writes overtake a running fdatasync), then
 * power loss (unsynced writes lost or torn at random), then recovery by scanning, then the
 * next incarnation continues the log from where the scan ended. After every crash:
 * - the scan never throws (crash damage is only ever a torn tail, and only in the last file);
 * - every record resolved before a completed sync() is found;
 * - every record found was appended, in append order, with the seq its append resolved
 *   with; no append rejected before the crash is found;
 * - what an earlier recovery found is still there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Random } from '../../src/core/random.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { listLogFiles } from '../../src/log/names.js';
import type { LogEntry } from '../../src/log/record.js';
import { LogWriter } from '../../src/log/writer.js';
import { entryKey, fcSeed, LatencyStorage, scanStream, settle } from './helpers.js';

type Op =
  | { type: 'append'; payloadBytes: number; wait: boolean }
  | { type: 'trim'; wait: boolean }
  | { type: 'sync'; wait: boolean }
  | { type: 'rotate' }
  | { type: 'tick' }
  | { type: 'squeeze'; extraBytes: number }
  | { type: 'unsqueeze' };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ type: fc.constant('append' as const), payloadBytes: fc.integer({ min: 0, max: 1500 }), wait: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('trim' as const), wait: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant('sync' as const), wait: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ type: 'rotate' as const }) },
  { weight: 2, arbitrary: fc.constant({ type: 'tick' as const }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('squeeze' as const), extraBytes: fc.integer({ min: 0, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.constant({ type: 'unsqueeze' as const }) },
);

const incarnationArbitrary = fc.record({
  ops: fc.array(opArbitrary, { minLength: 1, maxLength: 50 }),
  crashSeed: fc.integer({ min: 0, max: 0x7fffffff }),
  rotateBytes: fc.integer({ min: 500, max: 8000 }),
  batchBytesMax: fc.integer({ min: 64, max: 6000 }),
  pendingBytesMax: fc.integer({ min: 64, max: 20_000 }),
  /** Whether I/O completes a few macrotasks after it took effect (writes overtake fdatasyncs). */
  latency: fc.boolean(),
});
type Incarnation = typeof incarnationArbitrary extends fc.Arbitrary<infer T> ? T : never;

interface Track {
  readonly key: string;
  readonly index: number;
  seq: bigint | undefined;
  rejectedBeforeCrash: boolean;
}

interface Start {
  logNumber: number;
  offsetBytes: number;
  nextSeq: bigint;
}

const host = 'crashy';
const unlimitedBytes = Number.MAX_SAFE_INTEGER;
const ignore = (): void => undefined;

/** Unique entries: the lamport stamp is a counter, the payload repeats it. */
class EntrySource {
  private counter = 0;
  next(op: Op): LogEntry {
    const n = ++this.counter;
    if (op.type === 'trim') return { kind: 'trim', lamport: BigInt(n), offsetBytes: n * 512, lengthBytes: 512 };
    const payloadBytes = op.type === 'append' ? op.payloadBytes : 0;
    return { kind: 'write', lamport: BigInt(n), offsetBytes: n * 4096, payload: Buffer.alloc(payloadBytes, n & 0xff) };
  }
}

/** Runs one incarnation until its crash; returns what the test knows about its appends. */
async function runUntilCrash(mem: MemStorage, start: Start, plan: Incarnation, source: EntrySource): Promise<{ tracks: Track[]; durableSeq: bigint }> {
  const storage = plan.latency ? new LatencyStorage(mem, new Random(plan.crashSeed ^ 0x5eed)) : mem;
  const writer = await LogWriter.open(storage, {
    host,
    logNumber: start.logNumber,
    startOffsetBytes: start.offsetBytes,
    nextSeq: start.nextSeq,
    rotateBytes: plan.rotateBytes,
    batchBytesMax: plan.batchBytesMax,
    pendingBytesMax: plan.pendingBytesMax,
  });
  let crashed = false;
  let resolvedMaxSeq = start.nextSeq - 1n;
  let durableSeq = start.nextSeq - 1n; // open makes the prefix durable
  const tracks: Track[] = [];
  const append = (entry: LogEntry): Promise<void> => {
    const track: Track = { key: entryKey(entry), index: tracks.length, seq: undefined, rejectedBeforeCrash: false };
    tracks.push(track);
    return writer.append(entry).then(
      (p) => {
        track.seq = p.seq;
        if (!crashed && p.seq > resolvedMaxSeq) resolvedMaxSeq = p.seq;
      },
      () => {
        track.rejectedBeforeCrash = !crashed;
      },
    );
  };
  const sync = (): Promise<void> => {
    const coveredSeq = resolvedMaxSeq;
    return writer.sync().then(() => {
      if (!crashed && coveredSeq > durableSeq) durableSeq = coveredSeq;
    }, ignore);
  };
  for (const op of plan.ops) {
    if (op.type === 'append' || op.type === 'trim') {
      const done = append(source.next(op));
      if (op.wait) await done;
    } else if (op.type === 'sync') {
      const done = sync();
      if (op.wait) await done;
    } else if (op.type === 'rotate') {
      writer.rotate().catch(ignore);
    } else if (op.type === 'tick') {
      await settle(1);
    } else if (op.type === 'squeeze') {
      mem.capacityBytes = mem.usedBytes() + op.extraBytes;
    } else {
      mem.capacityBytes = unlimitedBytes;
    }
  }
  crashed = true;
  mem.crash(new Random(plan.crashSeed));
  mem.failAll = true; // the old process is dead: nothing it still does may reach the disk
  await writer.close().catch(ignore);
  mem.failAll = false;
  mem.capacityBytes = unlimitedBytes;
  return { tracks, durableSeq };
}

/** Scans the log after a crash, checks it against what the test knows; returns the recovered history and where to continue. */
async function recoverAndCheck(mem: MemStorage, history: string[], tracks: readonly Track[], durableSeq: bigint): Promise<Start> {
  const files = await scanStream(mem);
  files.slice(0, -1).forEach((f) => assert.equal(f.outcome.tail, 'clean', `${f.name} is not the last file but ends ${f.outcome.tail}`));
  const found = files.flatMap((f) => f.entries.map((e) => e.record));
  found.forEach((record, i) => assert.equal(record.seq, BigInt(i + 1)));
  assert.ok(BigInt(found.length) >= durableSeq, `only ${found.length} records found, ${durableSeq} were synced`);
  assert.ok(found.length >= history.length, 'records recovered earlier are gone');
  found.slice(0, history.length).forEach((record, i) => assert.equal(entryKey(record), history[i], `earlier record ${i + 1} changed`));
  const byKey = new Map(tracks.map((t) => [t.key, t]));
  let lastIndex = -1;
  for (const record of found.slice(history.length)) {
    const track = byKey.get(entryKey(record));
    assert.ok(track !== undefined, `record ${record.seq} was never appended`);
    assert.ok(!track.rejectedBeforeCrash, `record ${record.seq} was rejected, yet it is in the log`);
    if (track.seq !== undefined) assert.equal(record.seq, track.seq);
    assert.ok(track.index > lastIndex, `record ${record.seq} is out of append order`);
    lastIndex = track.index;
  }
  history.splice(0, history.length, ...found.map((r) => entryKey(r)));
  const logs = await listLogFiles(mem);
  const last = files[files.length - 1];
  assert.ok(last !== undefined && logs.length === files.length);
  return { logNumber: logs[logs.length - 1]!.logNumber, offsetBytes: last.outcome.endOffsetBytes, nextSeq: BigInt(found.length + 1) };
}

void test('after crashes the log holds every synced record, never a foreign or rejected one, and is never called corrupt', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(incarnationArbitrary, { minLength: 1, maxLength: 3 }), async (incarnations) => {
      const mem = new MemStorage();
      const source = new EntrySource();
      const history: string[] = [];
      let start: Start = { logNumber: 1, offsetBytes: 0, nextSeq: 1n };
      for (const plan of incarnations) {
        const { tracks, durableSeq } = await runUntilCrash(mem, start, plan, source);
        start = await recoverAndCheck(mem, history, tracks, durableSeq);
      }
    }),
    { seed: fcSeed, numRuns: 400 },
  );
});
