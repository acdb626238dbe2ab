/**
 * A torn tail is not corruption: after flushed writes and one last unflushed write,
 * marsd gets kill -9 and the end of the last log file is damaged the way a crash can
 * damage it (cut in the middle of the last record's payload, cut inside its header, or
 * followed by garbage). The writeback position is moved back to the start of the log so
 * recovery reads the whole file. r0 must be served, the torn tail reported and cut off
 * for good (a second crash after more writes recovers cleanly), and every flushed write
 * must be intact.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { removeDir, sparseFile, startMarsd, type Marsd } from '../support/processes.js';
import {
  KiB,
  MiB,
  connectExport,
  fileSize,
  hostName,
  logFilesOf,
  logName,
  mustMarsadm,
  newHostDir,
  rawStatus,
  resourceDir,
  settleWithin,
  writePositionFile,
} from '../support/daemon-helpers.js';
import { appendBytes, recordHeaderBytes, recordLayout, truncateFile } from '../support/log-files.js';

const deviceBytes = 16 * MiB;
const writeBytes = 64 * KiB;
const testMsMax = 60_000;

type Damage = 'cut-payload' | 'cut-header' | 'garbage';

function freshOffset(random: Random, used: Map<number, Buffer>): number {
  let offset: number;
  do offset = random.int(deviceBytes / writeBytes) * writeBytes;
  while (used.has(offset));
  return offset;
}

async function writeFlushed(client: NbdClient, random: Random, written: Map<number, Buffer>, count: number): Promise<void> {
  const batch: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const offset = freshOffset(random, written);
    const data = random.bytes(writeBytes);
    written.set(offset, data);
    batch.push(client.write(offset, data));
  }
  await Promise.all(batch);
  await client.flush();
}

async function verify(client: NbdClient, written: Map<number, Buffer>, when: string): Promise<void> {
  for (const [offset, data] of written) assert.ok((await client.read(offset, writeBytes)).equals(data), `${when}: flushed data at ${offset} differs`);
}

async function tornTail(t: TestContext, damage: Damage): Promise<void> {
  const random = new Random(damage.length * 7919);
  const dir = await newHostDir(`mars-torn-${damage}`);
  let daemon: Marsd | undefined;
  try {
    const disk = await sparseFile(join(dir, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir);
    await mustMarsadm(dir, 'create-resource', 'r0', disk);
    let client = await connectExport(daemon, 'r0');
    const flushed = new Map<number, Buffer>();
    for (let r = 0; r < 4; r++) await writeFlushed(client, random, flushed, 4);
    const lastOffset = freshOffset(random, flushed);
    const lastData = random.bytes(writeBytes);
    await client.write(lastOffset, lastData); // answered, never flushed by the client
    client.destroy();
    assert.equal(await daemon.kill9(), 137);
    daemon = undefined;

    const log = join(resourceDir(dir, 'r0'), logName(1));
    const records = await recordLayout(log);
    assert.equal(records.length, 17, 'one record per write');
    const last = records.at(-1)!;
    const logBytes = await readFile(log);
    assert.ok(logBytes.subarray(last.offsetBytes + recordHeaderBytes, last.endOffsetBytes).equals(lastData), 'the last record is the unflushed write');
    assert.equal(logBytes.length, last.endOffsetBytes);
    let tornAt: number;
    if (damage === 'cut-payload') {
      tornAt = last.offsetBytes;
      await truncateFile(log, last.offsetBytes + recordHeaderBytes + writeBytes / 2);
    } else if (damage === 'cut-header') {
      tornAt = last.offsetBytes;
      await truncateFile(log, last.offsetBytes + 30);
    } else {
      tornAt = last.endOffsetBytes;
      await appendBytes(log, random.bytes(3000));
    }
    await writePositionFile(dir, 'r0', { formatVersion: 1, logNumber: 1, logHost: hostName, offsetBytes: 0, nextSeq: '1' });

    daemon = await startMarsd(dir);
    const status = await rawStatus(dir, 'r0');
    assert.equal(status.state, 'serving', `r0 must be served after a torn tail: ${status.failure ?? ''}`);
    const torn = status.recovery?.tornTail;
    assert.ok(torn !== undefined && torn !== null, `recovery reports the torn tail: ${JSON.stringify(status.recovery)}`);
    assert.equal(torn.logName, logName(1));
    assert.equal(torn.offsetBytes, tornAt);
    assert.equal(await fileSize(log), tornAt, 'the torn tail is cut off');
    t.diagnostic(`torn tail at ${torn.logName}@${torn.offsetBytes}: ${torn.reason}; replayed ${status.recovery?.replayedRecords ?? '?'} records`);

    client = await connectExport(daemon, 'r0');
    await verify(client, flushed, 'after the torn tail');
    const got = await client.read(lastOffset, writeBytes);
    if (damage === 'garbage') assert.ok(got.equals(lastData), 'garbage after the last record keeps the record');
    else assert.ok(got.equals(lastData) || got.equals(Buffer.alloc(writeBytes)), 'the cut write reads as old or new data');
    flushed.set(lastOffset, got);

    // The cut is durable: more writes, another kill -9, and recovery is clean (no damage
    // in log 1 followed by later logs).
    await writeFlushed(client, random, flushed, 4);
    client.destroy();
    assert.equal(await daemon.kill9(), 137);
    daemon = await startMarsd(dir);
    const again = await rawStatus(dir, 'r0');
    assert.equal(again.state, 'serving', `r0 after a second crash: ${again.failure ?? ''}`);
    assert.equal(again.recovery?.tornTail ?? null, null, `no torn tail the second time: ${JSON.stringify(again.recovery)}`);
    assert.ok((await logFilesOf(dir, 'r0')).length >= 2, 'recovery continued in a new log file');
    client = await connectExport(daemon, 'r0');
    await verify(client, flushed, 'after a second kill -9');
    await client.close();
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
  } finally {
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    await removeDir(dir);
  }
}

void test('torn tail: the last record cut in its payload is cut off, r0 served, flushed data intact', { timeout: testMsMax }, async (t) => {
  await tornTail(t, 'cut-payload');
});

void test('torn tail: the last record cut in its header is cut off, r0 served, flushed data intact', { timeout: testMsMax }, async (t) => {
  await tornTail(t, 'cut-header');
});

void test('torn tail: garbage after the last record is cut off, r0 served, every record kept', { timeout: testMsMax }, async (t) => {
  await tornTail(t, 'garbage');
});
