/**
 * A torn tail is not corruption: after flushed writes and one last unflushed write,
 * marsd gets kill -9 and the end of the last log file is damaged the way a crash can
 * damage it (cut in the middle of the last record's payload, cut inside its header, or
 * followed by garbage), each kind on its own resource of one marsd. The writeback position
 * is moved back to the start of the log so recovery reads the whole file. Each resource
 * must be served, the torn tail reported and cut off
 * for good (a second crash after more writes recovers cleanly), and every flushed write
 * must be intact.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
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
const testMsMax = 120_000;

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

/** One resource per kind of damage, all served by one marsd (one daemon start per phase instead of one per kind). */
const damages: readonly Damage[] = ['cut-payload', 'cut-header', 'garbage'];

interface Case {
  readonly damage: Damage;
  readonly name: string;
  readonly random: Random;
  readonly flushed: Map<number, Buffer>;
  readonly lastOffset: number;
  readonly lastData: Buffer;
  /** Where the torn tail starts (the offset recovery must cut the log to). */
  tornAt: number;
}

/** Damages the end of the last log of `c` as a crash can, and moves its writeback position back to the start of the log. */
async function damage(dir: string, c: Case): Promise<void> {
  const log = join(resourceDir(dir, c.name), logName(1));
  const records = await recordLayout(log);
  assert.equal(records.length, 17, `${c.name}: one record per write`);
  const last = records.at(-1)!;
  const logBytes = await readFile(log);
  assert.ok(logBytes.subarray(last.offsetBytes + recordHeaderBytes, last.endOffsetBytes).equals(c.lastData), `${c.name}: the last record is the unflushed write`);
  assert.equal(logBytes.length, last.endOffsetBytes);
  if (c.damage === 'cut-payload') {
    c.tornAt = last.offsetBytes;
    await truncateFile(log, last.offsetBytes + recordHeaderBytes + writeBytes / 2);
  } else if (c.damage === 'cut-header') {
    c.tornAt = last.offsetBytes;
    await truncateFile(log, last.offsetBytes + 30);
  } else {
    c.tornAt = last.endOffsetBytes;
    await appendBytes(log, c.random.bytes(3000));
  }
  await writePositionFile(dir, c.name, { formatVersion: 1, logNumber: 1, logHost: hostName, offsetBytes: 0, nextSeq: '1' });
}

void describe('torn tail', { timeout: testMsMax }, () => {
  let dir = '';
  let daemon: Marsd | undefined;
  const cases = new Map<Damage, Case>();

  // Flushed writes and one last unflushed write on each resource, kill -9, each log's end
  // damaged its own way, marsd started again.
  before(async () => {
    dir = await newHostDir('mars-torn');
    daemon = await startMarsd(dir);
    for (const [i, kind] of damages.entries()) {
      const name = `r${i}`;
      await mustMarsadm(dir, 'create-resource', name, await sparseFile(join(dir, `disk${i}.img`), deviceBytes));
      const random = new Random(kind.length * 7919);
      const client = await connectExport(daemon, name);
      const flushed = new Map<number, Buffer>();
      for (let r = 0; r < 4; r++) await writeFlushed(client, random, flushed, 4);
      const lastOffset = freshOffset(random, flushed);
      const lastData = random.bytes(writeBytes);
      await client.write(lastOffset, lastData); // answered, never flushed by the client
      client.destroy();
      cases.set(kind, { damage: kind, name, random, flushed, lastOffset, lastData, tornAt: -1 });
    }
    assert.equal(await daemon.kill9(), 137);
    daemon = undefined;
    for (const c of cases.values()) await damage(dir, c);
    daemon = await startMarsd(dir);
  });

  after(async () => {
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    await removeDir(dir);
  });

  async function tornTail(t: TestContext, kind: Damage): Promise<void> {
    const c = cases.get(kind)!;
    const status = await rawStatus(dir, c.name);
    assert.equal(status.state, 'serving', `${c.name} must be served after a torn tail: ${status.failure ?? ''}`);
    const torn = status.recovery?.tornTail;
    assert.ok(torn !== undefined && torn !== null, `recovery reports the torn tail: ${JSON.stringify(status.recovery)}`);
    assert.equal(torn.logName, logName(1));
    assert.equal(torn.offsetBytes, c.tornAt);
    assert.equal(await fileSize(join(resourceDir(dir, c.name), logName(1))), c.tornAt, 'the torn tail is cut off');
    t.diagnostic(`torn tail at ${torn.logName}@${torn.offsetBytes}: ${torn.reason}; replayed ${status.recovery?.replayedRecords ?? '?'} records`);

    const client = await connectExport(daemon!, c.name);
    await verify(client, c.flushed, 'after the torn tail');
    const got = await client.read(c.lastOffset, writeBytes);
    if (kind === 'garbage') assert.ok(got.equals(c.lastData), 'garbage after the last record keeps the record');
    else assert.ok(got.equals(c.lastData) || got.equals(Buffer.alloc(writeBytes)), 'the cut write reads as old or new data');
    c.flushed.set(c.lastOffset, got);
    await client.close();
  }

  void test('torn tail: the last record cut in its payload is cut off, r0 served, flushed data intact', async (t) => {
    await tornTail(t, 'cut-payload');
  });

  void test('torn tail: the last record cut in its header is cut off, r1 served, flushed data intact', async (t) => {
    await tornTail(t, 'cut-header');
  });

  void test('torn tail: garbage after the last record is cut off, r2 served, every record kept', async (t) => {
    await tornTail(t, 'garbage');
  });

  // The cuts are durable: more writes, another kill -9, and recovery is clean (no damage
  // in log 1 followed by later logs).
  void test('the cuts are durable: after more writes and a second kill -9 every resource recovers without a torn tail', async () => {
    assert.equal(cases.size, damages.length);
    for (const c of cases.values()) {
      const client = await connectExport(daemon!, c.name);
      await writeFlushed(client, c.random, c.flushed, 4);
      client.destroy();
    }
    assert.equal(await daemon!.kill9(), 137);
    daemon = await startMarsd(dir);
    for (const c of cases.values()) {
      const again = await rawStatus(dir, c.name);
      assert.equal(again.state, 'serving', `${c.name} after a second crash: ${again.failure ?? ''}`);
      assert.equal(again.recovery?.tornTail ?? null, null, `${c.name}: no torn tail the second time: ${JSON.stringify(again.recovery)}`);
      assert.ok((await logFilesOf(dir, c.name)).length >= 2, `${c.name}: recovery continued in a new log file`);
      const client = await connectExport(daemon, c.name);
      await verify(client, c.flushed, `${c.name} after a second kill -9`);
      await client.close();
    }
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
  });
});
