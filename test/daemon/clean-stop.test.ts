/**
 * A clean stop: SIGTERM while writes are in flight. marsd must answer what it accepted,
 * exit with code 0, remove its control socket, and leave everything written back (the
 * persisted writeback position is the end of the last log file). After a restart nothing
 * is replayed and every answered write - flushed or not - reads back.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Random } from '../../src/core/random.js';
import { removeDir, sparseFile, startMarsd, type Marsd } from '../support/processes.js';
import {
  KiB,
  MiB,
  connectExport,
  fileSize,
  logFilesOf,
  logName,
  mustMarsadm,
  newHostDir,
  rawStatus,
  readPositionFile,
  resourceDir,
  settleWithin,
  stderrLines,
} from '../support/daemon-helpers.js';

const deviceBytes = 32 * MiB;
const writeBytes = 128 * KiB;
const testMsMax = 60_000;

void test('SIGTERM: exit 0, control socket gone, everything written back, nothing replayed after restart, data intact', { timeout: testMsMax }, async (t) => {
  const random = new Random(777);
  const dir = await newHostDir('mars-stop');
  let daemon: Marsd | undefined;
  try {
    const disk = await sparseFile(join(dir, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir);
    await mustMarsadm(dir, 'create-resource', 'r0', disk);
    const client = await connectExport(daemon, 'r0');
    const slots = deviceBytes / writeBytes;
    const order = Array.from({ length: slots }, (_, i) => i);
    for (let i = slots - 1; i > 0; i--) {
      const j = random.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const next = (): number => order.pop()! * writeBytes;
    const answered = new Map<number, Buffer>();
    // Flushed writes, then answered but unflushed ones.
    for (let i = 0; i < 24; i++) {
      const offset = next();
      const data = random.bytes(writeBytes);
      await client.write(offset, data);
      answered.set(offset, data);
      if (i === 15) await client.flush();
    }
    // Then SIGTERM with 64 writes in flight.
    const inflight = new Map<number, Buffer>();
    const outcomes: Promise<'ok' | 'failed'>[] = [];
    for (let i = 0; i < 64; i++) {
      const offset = next();
      const data = random.bytes(writeBytes);
      inflight.set(offset, data);
      outcomes.push(
        client.write(offset, data).then(
          () => {
            answered.set(offset, data);
            return 'ok' as const;
          },
          () => 'failed' as const,
        ),
      );
    }
    const code = await daemon.stop();
    const settled = await Promise.all(outcomes);
    client.destroy();
    assert.equal(code, 0, `marsd exit code after SIGTERM:\n${daemon.stderr()}`);
    daemon = undefined;
    t.diagnostic(`in flight at SIGTERM: ${settled.filter((s) => s === 'ok').length} answered, ${settled.filter((s) => s === 'failed').length} failed`);
    assert.equal(existsSync(join(dir, 'control.sock')), false, 'the control socket is removed');

    // Everything is written back: the position is the end of the last log file.
    const logs = await logFilesOf(dir, 'r0');
    const lastLog = logs.at(-1)!;
    const position = await readPositionFile(dir, 'r0');
    assert.equal(logName(position.logNumber, position.logHost), lastLog, `position ${JSON.stringify(position)} vs logs ${logs.join(' ')}`);
    assert.equal(position.offsetBytes, await fileSize(join(resourceDir(dir, 'r0'), lastLog)), 'the writeback position is the end of the log');

    daemon = await startMarsd(dir);
    const status = await rawStatus(dir, 'r0');
    assert.equal(status.state, 'serving');
    assert.equal(status.recovery?.replayedRecords, 0, 'nothing is replayed after a clean stop');
    assert.equal(status.recovery.tornTail ?? null, null, 'no torn tail after a clean stop');
    assert.equal(
      stderrLines(daemon).filter((l) => typeof l.msg === 'string' && l.msg.includes('recovery replayed')).length,
      0,
      `no replay reported on stderr:\n${daemon.stderr()}`,
    );
    assert.equal((await mustMarsadm(dir, 'view-replay-rest', 'r0')).trim(), '0');
    const reader = await connectExport(daemon, 'r0');
    for (const [offset, data] of answered) assert.ok((await reader.read(offset, writeBytes)).equals(data), `answered write at ${offset} is intact`);
    for (const [offset, data] of inflight) {
      if (answered.has(offset)) continue;
      const got = await reader.read(offset, writeBytes);
      assert.ok(got.equals(data) || got.equals(Buffer.alloc(writeBytes)), `unanswered write at ${offset} reads as old or new data`);
    }
    await reader.close();
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
  } finally {
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    await removeDir(dir);
  }
});
