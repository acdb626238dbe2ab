/**
 * kill -9 during sustained sequential writes at full speed: one NBD connection keeps 8
 * writes of 1 MiB in flight, front to back over the device and around again, with a
 * FLUSH after every 16 writes; the log batches these into large appends, whose whole
 * blocks go to the log file with O_DIRECT (src/storage/fs-storage.ts writeSequential),
 * and writeback follows at full speed. At a seeded moment marsd gets kill -9, is
 * restarted on the same directory, and every 4 KiB block of the device is checked:
 *
 * - it holds one write's intact block (or the initial zeros);
 * - that write is the block's last durable write (answered before a FLUSH that completed)
 *   or one issued after it: nothing flushed is lost;
 * - the device is a prefix of the log: a write answered before another write was sent is
 *   never lost while the later one survives.
 *
 * The seed comes from MARS_TEST_SEED, else from the clock; it is printed on failure.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { removeDir, sparseFile, startMarsd, type Marsd } from '../support/processes.js';
import { KiB, MiB, connectExport, mustMarsadm, newHostDir, rawStatus, settleWithin } from '../support/daemon-helpers.js';

const blockBytes = 4 * KiB;
const deviceBytes = 32 * MiB;
const blockCount = deviceBytes / blockBytes;
const writeBytes = MiB;
const writesInFlight = 8;
const flushEveryWrites = 16;
const rounds = 10;
const roundMsMax = 6_000;
const testMsMax = 150_000;

/** The word that fills block b of write w after its stamp. */
function blockWord(writeId: number, block: number): number {
  return (Math.imul(writeId, 0x9e3779b1) ^ Math.imul(block + 1, 0x85ebca6b)) >>> 0;
}

const wordScratch = Buffer.alloc(4);

/**
 * Block b of write w: u32 w, u32 b, then the same 32-bit word derived from both, repeated
 * (one native fill: the test's own CPU is not spent beside the daemon it loads).
 */
function fillBlock(target: Buffer, at: number, writeId: number, block: number): void {
  target.writeUInt32LE(writeId, at);
  target.writeUInt32LE(block, at + 4);
  wordScratch.writeUInt32LE(blockWord(writeId, block), 0);
  target.fill(wordScratch, at + 8, at + blockBytes);
}

const zeroBlock = Buffer.alloc(blockBytes);
const expectedBlock = Buffer.alloc(blockBytes);

/** The write whose block this is (0: all zeros), or a description of garbage. */
function identifyBlock(source: Buffer, at: number, block: number): number | string {
  const found = source.subarray(at, at + blockBytes);
  const writeId = source.readUInt32LE(at);
  if (writeId === 0) return found.equals(zeroBlock) ? 0 : 'neither zeros nor a write';
  if (source.readUInt32LE(at + 4) !== block) return `write ${writeId}'s stamp names block ${source.readUInt32LE(at + 4)}`;
  fillBlock(expectedBlock, 0, writeId, block);
  return found.equals(expectedBlock) ? writeId : `write ${writeId}'s stamp with other bytes (torn block)`;
}

interface WriteOp {
  issuedAt: number;
  completedAt: number | undefined;
}

class Model {
  /** Per block, the ids of the writes sent to it, in order (since the last verified recovery). */
  readonly history: number[][] = Array.from({ length: blockCount }, () => [0]);
  readonly writes: WriteOp[] = [{ issuedAt: 0, completedAt: 0 }];
  private clock = 1;
  /** Every write completed at a tick below this is durable (a FLUSH sent then completed). */
  durableBefore = 0;
  /** Where the next sequential write goes. */
  nextBlock = 0;

  tick(): number {
    return this.clock++;
  }

  durableIndex(block: number): number {
    const h = this.history[block]!;
    for (let i = h.length - 1; i > 0; i--) {
      const w = this.writes[h[i]!]!;
      if (w.completedAt !== undefined && w.completedAt < this.durableBefore) return i;
    }
    return 0;
  }
}

interface Round {
  client: NbdClient;
  crashAfterWrites: number;
  written: number;
  crashed: boolean;
  crash: () => void;
  errors: string[];
}

/** Read through a call: the flag changes while a lane awaits. */
function crashed(round: Round): boolean {
  return round.crashed;
}

async function lane(round: Round, model: Model): Promise<void> {
  while (!round.crashed && round.errors.length === 0) {
    const id = model.writes.length;
    const op: WriteOp = { issuedAt: model.tick(), completedAt: undefined };
    model.writes.push(op);
    const first = model.nextBlock;
    model.nextBlock = (first + writeBytes / blockBytes) % blockCount;
    const data = Buffer.allocUnsafe(writeBytes);
    for (let i = 0; i < writeBytes / blockBytes; i++) {
      fillBlock(data, i * blockBytes, id, first + i);
      model.history[first + i]!.push(id);
    }
    try {
      await round.client.write(first * blockBytes, data);
      op.completedAt = model.tick();
      round.written++;
      if (round.written % flushEveryWrites === 0) {
        const sentAt = model.tick();
        await round.client.flush();
        model.durableBefore = Math.max(model.durableBefore, sentAt);
      }
    } catch (err) {
      if (crashed(round)) return; // in flight at the kill: its outcome is unknown
      round.errors.push(`request failed before the crash: ${(err as Error).message}`);
      return;
    }
    if (round.written >= round.crashAfterWrites) round.crash();
  }
}

async function readDevice(client: NbdClient): Promise<(number | string)[]> {
  const found: (number | string)[] = [];
  for (let offset = 0; offset < deviceBytes; offset += MiB) {
    const data = await client.read(offset, MiB);
    for (let i = 0; i < MiB / blockBytes; i++) found.push(identifyBlock(data, i * blockBytes, offset / blockBytes + i));
  }
  return found;
}

function verify(model: Model, found: readonly (number | string)[]): { violations: string[]; lostUnflushed: number } {
  const violations: string[] = [];
  let maxSurvivingIssue = 0;
  for (const f of found) if (typeof f === 'number' && f > 0) maxSurvivingIssue = Math.max(maxSurvivingIssue, model.writes[f]!.issuedAt);
  const lost = new Set<number>();
  for (let b = 0; b < blockCount; b++) {
    const f = found[b]!;
    const h = model.history[b]!;
    if (typeof f === 'string') {
      violations.push(`block ${b}: ${f}`);
      continue;
    }
    const idx = h.lastIndexOf(f);
    if (idx < 0) {
      violations.push(`block ${b}: holds write ${f}, which was never sent to it (${h.join(',')})`);
      continue;
    }
    const d = model.durableIndex(b);
    if (idx < d) {
      violations.push(`block ${b}: holds write ${f}, but write ${h[d]} was answered before a completed flush`);
      continue;
    }
    for (let i = idx + 1; i < h.length; i++) {
      const later = model.writes[h[i]!]!;
      if (later.completedAt === undefined) continue;
      lost.add(h[i]!);
      if (later.completedAt < maxSurvivingIssue) {
        violations.push(`block ${b}: write ${h[i]} is lost though it was answered before a surviving write was sent: the device is no prefix of the log`);
        break;
      }
    }
  }
  return { violations, lostUnflushed: lost.size };
}

void test('kill -9 during sustained 1 MiB sequential writes: nothing flushed is lost, the device is a log prefix, ten rounds', { timeout: testMsMax }, async (t) => {
  const seed = Number(process.env['MARS_TEST_SEED'] ?? Date.now() % 2_147_483_647);
  const random = new Random(seed);
  const model = new Model();
  const dir = await newHostDir('mars-crash-seq');
  let daemon: Marsd | undefined;
  let client: NbdClient | undefined;
  const extraArgs = ['--log-rotate-bytes', String(32 * MiB), '--shadow-bytes-max', String(32 * MiB)];
  const where = `(seed ${seed}; MARS_TEST_SEED=${seed} replays the same choices, timing aside)`;
  try {
    const disk = await sparseFile(join(dir, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir, { extraArgs });
    await mustMarsadm(dir, 'create-resource', 'r0', disk);
    for (let r = 1; r <= rounds; r++) {
      const current: Marsd = daemon;
      client = await connectExport(current, 'r0');
      let stopped: Promise<number> | undefined;
      const round: Round = {
        client,
        crashAfterWrites: 16 + random.int(64),
        written: 0,
        crashed: false,
        crash: () => {
          if (round.crashed) return;
          round.crashed = true;
          stopped = current.kill9();
        },
        errors: [],
      };
      const timer = setTimeout(() => round.crash(), roundMsMax);
      await Promise.all(Array.from({ length: writesInFlight }, () => lane(round, model)));
      clearTimeout(timer);
      assert.deepEqual(round.errors, [], `round ${r}: the load failed before the kill ${where}`);
      assert.equal(await stopped, 137, `marsd's exit after kill -9 ${where}`);
      client.destroy();
      client = undefined;

      daemon = await startMarsd(dir, { extraArgs });
      const status = await rawStatus(dir, 'r0');
      assert.equal(status.state, 'serving', `round ${r}: r0 is not served after recovery: ${status.failure ?? ''} ${where}`);
      client = await connectExport(daemon, 'r0');
      const found = await readDevice(client);
      const report = verify(model, found);
      const summary = `round ${r}: ${round.written} writes of 1 MiB; recovery replayed ${status.recovery?.replayedRecords ?? '?'} records; ${report.lostUnflushed} answered-but-unflushed writes lost`;
      t.diagnostic(summary);
      assert.deepEqual(report.violations.slice(0, 20), [], `${summary}\n${report.violations.length} violations ${where}`);
      for (let b = 0; b < blockCount; b++) model.history[b] = [found[b] as number];
      await client.close();
      client = undefined;
    }
    const code = await daemon.stop();
    daemon = undefined;
    assert.equal(code, 0, 'marsd stops cleanly after the rounds');
  } catch (err) {
    t.diagnostic(`seed ${seed}`);
    throw err;
  } finally {
    client?.destroy();
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    await removeDir(dir);
  }
});
