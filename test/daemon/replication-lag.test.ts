/**
 * The lag in seconds of a secondary, the one derivation behind view, status and the
 * metrics: the age of the stamp of the oldest unreplayed record in its own copy of the
 * log; when that record is not here yet (fetch behind), the time since this host first
 * saw itself behind; 0 when it holds everything, however long ago the primary last wrote.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeRecord } from '../../src/log/record.js';
import { formatLogName } from '../../src/log/names.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { LagTracker, lagSecondsOf, stampAt } from '../../src/daemon/replication-lag.js';

async function logWith(storage: MemStorage, logNumber: number, stampsUs: readonly bigint[]): Promise<number[]> {
  const offsets: number[] = [];
  const parts: Buffer[] = [];
  let at = 0;
  stampsUs.forEach((lamport, i) => {
    const record = encodeRecord({ kind: 'zeroes', seq: BigInt(i + 1), lamport, offsetBytes: 0, lengthBytes: 4096 }, 0);
    offsets.push(at);
    parts.push(record);
    at += record.length;
  });
  const file = await storage.open(formatLogName(logNumber, 'alpha'), 'create');
  await file.write(Buffer.concat(parts), 0);
  await file.close();
  return offsets;
}

void test('the lag is the age of the oldest unreplayed record of the local copy, also when it starts the next log', async () => {
  const storage = new MemStorage();
  const offsets = await logWith(storage, 3, [1_000_000_000n, 1_002_000_000n]);
  await logWith(storage, 4, [1_005_000_000n]);
  const lag = new LagTracker();
  const nowMs = 1_010_000;
  const at = (offsetBytes: number, logNumber = 3): { logNumber: number; logHost: string; offsetBytes: number } => ({ logNumber, logHost: 'alpha', offsetBytes });
  assert.equal(await lag.seconds('r0', storage, { fetchRestBytes: 0, replayRestBytes: 100, replayPosition: at(offsets[0]!) }, nowMs), 10);
  assert.equal(await lag.seconds('r0', storage, { fetchRestBytes: 0, replayRestBytes: 100, replayPosition: at(offsets[1]!) }, nowMs), 8);
  // At the end of log 3: the oldest unreplayed record is the first of log 4.
  const endOf3 = offsets[1]! + encodeRecord({ kind: 'zeroes', seq: 2n, lamport: 0n, offsetBytes: 0, lengthBytes: 4096 }, 0).length;
  assert.equal(await stampAt(storage, at(endOf3)), 1_005_000_000n);
  assert.equal(await lag.seconds('r0', storage, { fetchRestBytes: 0, replayRestBytes: 100, replayPosition: at(endOf3) }, nowMs), 5);
});

void test('a secondary that holds everything has no lag, however old the last write; fetch behind counts from when it was first seen behind', async () => {
  const storage = new MemStorage();
  await logWith(storage, 3, [1_000_000_000n]);
  const lag = new LagTracker();
  const caughtUp = { fetchRestBytes: 0, replayRestBytes: 0, replayPosition: { logNumber: 3, logHost: 'alpha', offsetBytes: 0 } };
  assert.equal(await lag.seconds('r0', storage, caughtUp, 9_999_000), 0, 'a quiet primary does not make its replica look behind');
  const fetchBehind = { ...caughtUp, fetchRestBytes: 4096 };
  assert.equal(await lag.seconds('r0', storage, fetchBehind, 2_000_000), 0);
  assert.equal(await lag.seconds('r0', storage, fetchBehind, 2_004_000), 4);
  assert.equal(await lag.seconds('r0', storage, caughtUp, 2_005_000), 0);
  assert.equal(await lag.seconds('r0', storage, fetchBehind, 2_006_000), 0, 'caught up in between: counting starts again');
  assert.equal(lagSecondsOf(1_000, { oldestUnappliedStampUs: 2_000_000n }), 0, 'a stamp from a clock ahead is no negative lag');
});

void test('with fetch-rest unknown the lag is unknown, unless an unreplayed record here tells its age', async () => {
  const storage = new MemStorage();
  const offsets = await logWith(storage, 3, [1_000_000_000n]);
  const lag = new LagTracker();
  const position = { logNumber: 3, logHost: 'alpha', offsetBytes: offsets[0]! };
  const unheard = { fetchRestBytes: null, replayRestBytes: 0, replayPosition: position };
  assert.equal(await lag.seconds('r0', storage, unheard, 1_010_000), null, 'everything here is replayed, but how far the primary has gone is not known: not 0');
  assert.equal(await lag.seconds('r0', storage, { ...unheard, replayRestBytes: 100 }, 1_010_000), 10, 'the oldest unapplied write is here: its age is the lag');
});
