/**
 * A corrupt record in the middle of a log: after several write+flush rounds and kill -9,
 * one byte of a record that later records prove durable (their syncedBytes lie beyond
 * it) is flipped, and the writeback position is moved back to the start of the log, so
 * recovery must read the damage. marsd must keep running, refuse to export r0, name the
 * log file and the byte offset in `marsadm view r0` and on its stderr, and keep serving
 * r1. Two variants: a flipped payload byte and a flipped header byte.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Random } from '../../src/core/random.js';
import { NbdClient, NbdHandshakeError } from '../../src/nbd/client.js';
import { NbdReply } from '../../src/nbd/protocol.js';
import { adm } from '../support/adm.js';
import { removeDir, run, sparseFile, startMarsd, type Marsd } from '../support/processes.js';
import {
  KiB,
  MiB,
  connectExport,
  findTool,
  hostName,
  logName,
  mustMarsadm,
  newHostDir,
  rawStatus,
  resourceDir,
  settleWithin,
  writePositionFile,
} from '../support/daemon-helpers.js';
import { flipByte, recordHeaderBytes, recordLayout } from '../support/log-files.js';

const deviceBytes = 16 * MiB;
const writeBytes = 64 * KiB;
const rounds = 6;
const writesPerRound = 4;
const testMsMax = 60_000;

type Written = Map<number, Buffer>;

/** Rounds of concurrent writes at distinct offsets, each round flushed; returns what was written. */
async function writeRounds(client: NbdClient, random: Random, roundsCount: number): Promise<Written> {
  const written: Written = new Map();
  for (let r = 0; r < roundsCount; r++) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < writesPerRound; i++) {
      let offset: number;
      do offset = random.int(deviceBytes / writeBytes) * writeBytes;
      while (written.has(offset));
      const data = random.bytes(writeBytes);
      written.set(offset, data);
      batch.push(client.write(offset, data));
    }
    await Promise.all(batch);
    await client.flush();
  }
  return written;
}

async function verifyWritten(client: NbdClient, written: Written, when: string): Promise<void> {
  for (const [offset, data] of written) assert.ok((await client.read(offset, data.length)).equals(data), `${when}: data at ${offset} differs`);
}

async function corruptMiddleRecord(t: TestContext, variant: 'payload' | 'header'): Promise<void> {
  const random = new Random(variant === 'payload' ? 4242 : 4343);
  const dir = await newHostDir(`mars-corrupt-${variant}`);
  let daemon: Marsd | undefined;
  try {
    const disk0 = await sparseFile(join(dir, 'disk0.img'), deviceBytes);
    const disk1 = await sparseFile(join(dir, 'disk1.img'), deviceBytes);
    daemon = await startMarsd(dir);
    await mustMarsadm(dir, 'create-resource', 'r0', disk0);
    await mustMarsadm(dir, 'create-resource', 'r1', disk1);
    const c0 = await connectExport(daemon, 'r0');
    const c1 = await connectExport(daemon, 'r1');
    await writeRounds(c0, random, rounds);
    const written1 = await writeRounds(c1, random, 2);
    await c0.close();
    await c1.close();
    assert.equal(await daemon.kill9(), 137);
    daemon = undefined;

    // Pick a record in the middle that later records prove durable, and damage it.
    const log = join(resourceDir(dir, 'r0'), logName(1));
    const records = await recordLayout(log);
    assert.equal(records.length, rounds * writesPerRound, `log 1 of r0 holds one record per write: ${records.length}`);
    const provable = records.filter((r, i) => records.slice(i + 1).some((later) => later.syncedBytes > r.offsetBytes));
    assert.ok(provable.length >= 2, `records with durable successors: ${provable.length} (syncedBytes ${records.map((r) => r.syncedBytes).join(',')})`);
    const victim = provable[Math.floor(provable.length / 2)]!;
    const damageAt = variant === 'payload' ? victim.offsetBytes + recordHeaderBytes + Math.floor(victim.payloadBytes / 2) : victim.offsetBytes + 20;
    await flipByte(log, damageAt);
    // Replay from the start of the log, so that recovery has to read the damaged record.
    await writePositionFile(dir, 'r0', { formatVersion: 1, logNumber: 1, logHost: hostName, offsetBytes: 0, nextSeq: '1' });
    t.diagnostic(`flipped the byte at ${damageAt} of ${logName(1)}, in record seq ${victim.seq} at ${victim.offsetBytes} (of ${records.length})`);

    daemon = await startMarsd(dir);
    // r0 is refused...
    await assert.rejects(connectExport(daemon, 'r0'), (err: unknown) => {
      assert.ok(err instanceof NbdHandshakeError, `expected a refused export, got ${String(err)}`);
      assert.equal(err.replyType, NbdReply.ERR_UNKNOWN);
      return true;
    });
    const listed = await NbdClient.list({ host: '127.0.0.1', port: daemon.nbdPort });
    assert.deepEqual(listed.sort(), ['r1'], 'only r1 is exported');
    if (findTool('nbdinfo') !== undefined) {
      const info = await run('nbdinfo', [`nbd://127.0.0.1:${daemon.nbdPort}/r0`], { timeoutMs: 30_000 });
      assert.notEqual(info.code, 0, `nbdinfo must fail on r0: ${info.stdout}`);
    }
    // ...with the file and the offset of the damaged record, in view and on stderr.
    const offsetPattern = new RegExp(`\\boffset ${victim.offsetBytes}\\b`);
    const view = await mustMarsadm(dir, 'view', 'r0');
    assert.ok(view.includes(logName(1)), `view names the log file:\n${view}`);
    assert.match(view, offsetPattern, `view names the offset ${victim.offsetBytes}:\n${view}`);
    const status = await rawStatus(dir, 'r0');
    assert.equal(status.state, 'failed');
    assert.equal((await adm(dir, 'view-disk-state', 'r0')).stdout.trim(), 'Failed');
    const complaint = daemon
      .stderr()
      .split('\n')
      .find((line) => line.includes(logName(1)) && offsetPattern.test(line));
    assert.ok(complaint !== undefined, `marsd's stderr names the log file and offset:\n${daemon.stderr()}`);
    assert.equal((await adm(dir, 'log-rotate', 'r0')).code, 1, 'operations on the failed resource fail');

    // r1 is served as before, and marsd lives on.
    const again1 = await connectExport(daemon, 'r1');
    await verifyWritten(again1, written1, 'r1 next to a corrupt r0');
    const more = random.bytes(writeBytes);
    await again1.write(0, more, { fua: true });
    assert.ok((await again1.read(0, writeBytes)).equals(more));
    await again1.close();
    assert.equal(daemon.child.exitCode, null, 'marsd is still running');
    assert.equal(await daemon.stop(), 0, 'marsd stops cleanly with a failed resource');
    daemon = undefined;
  } finally {
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    await removeDir(dir);
  }
}

void test('a flipped payload byte in the middle of a log: r0 refused with file and offset, r1 served, marsd alive', { timeout: testMsMax }, async (t) => {
  await corruptMiddleRecord(t, 'payload');
});

void test('a flipped header byte in the middle of a log: r0 refused with file and offset, r1 served, marsd alive', { timeout: testMsMax }, async (t) => {
  await corruptMiddleRecord(t, 'header');
});
