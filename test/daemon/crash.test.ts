/**
 * Crash under verified load: several NBD connections write 4 KiB..256 KiB at random
 * 512-byte-aligned offsets (unique, self-describing content per sector), with trims and
 * write-zeroes among them, periodic flushes, some FUA requests and checked reads; at a seeded moment marsd gets kill -9 (in
 * some rounds the next start is killed again, during or right after its recovery; one
 * round ends with SIGTERM instead, after which every answered write counts as durable),
 * is restarted on the same directory, and every sector of the device is checked:
 *
 * - its content is one write's intact sector (or the initial zeros);
 * - that write is the last durable write of the sector (answered before a FLUSH that
 *   completed, or a FUA write that was answered) or one issued after it;
 * - the device is a prefix of the log: a write answered before another write was sent
 *   is never lost while the later one survives.
 *
 * Writes never overlap a request in flight, so per sector the writes are totally ordered.
 * Several rounds run in one test, continuing the load after each restart.
 * The seed comes from MARS_TEST_SEED, else from the clock; it is printed on failure.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { freePort, marsdPath, removeDir, sparseFile, startMarsd, type Marsd } from '../support/processes.js';
import { KiB, MiB, connectExport, mustMarsadm, newHostDir, rawStatus, settleWithin, startBackground } from '../support/daemon-helpers.js';

const sectorBytes = 512;
const deviceBytes = 64 * MiB;
const sectorCount = deviceBytes / sectorBytes;
const writeSectorsMin = (4 * KiB) / sectorBytes;
const writeSectorsMax = (256 * KiB) / sectorBytes;
/** A hot region that gets half of the writes, so sectors are overwritten often. */
const hotSectors = (8 * MiB) / sectorBytes;
const connections = 4;
const lanesPerConnection = 6;
/** How each round ends: kill -9; kill -9 and another kill -9 of the next start; SIGTERM. */
/**
 * One round of each ending: the simulator crashes primaries (kill -9 and power loss) under
 * load in hundreds of seeds and checks every flushed write after each (docs/simulator.md).
 */
const endings = ['kill', 'kill-in-recovery', 'sigterm'] as const;
const roundMsMax = 8_000;
const testMsMax = 170_000;

// ---- self-describing sector content ----

/** Sector s of write w: u32 w, u32 s, then 504 bytes of a seeded pool at an offset hashed from (w, s). */
class Content {
  private readonly pool: Buffer;
  private readonly fillerBytes = sectorBytes - 8;

  constructor(random: Random) {
    this.pool = random.bytes(MiB + sectorBytes);
  }

  private poolOffset(writeId: number, sector: number): number {
    const h = (Math.imul(writeId, 0x9e3779b1) ^ Math.imul(sector + 1, 0x85ebca6b)) >>> 0;
    return h % (this.pool.length - this.fillerBytes);
  }

  fill(target: Buffer, at: number, writeId: number, sector: number): void {
    target.writeUInt32LE(writeId, at);
    target.writeUInt32LE(sector, at + 4);
    const from = this.poolOffset(writeId, sector);
    this.pool.copy(target, at + 8, from, from + this.fillerBytes);
  }

  /** The write whose sector this is (0: all zeros), or a description of garbage. */
  identify(source: Buffer, at: number, sector: number): number | string {
    const writeId = source.readUInt32LE(at);
    if (writeId === 0) {
      for (let i = at; i < at + sectorBytes; i++) if (source[i] !== 0) return `not zeros and not a write (byte ${i - at} = ${source[i]})`;
      return 0;
    }
    const stampSector = source.readUInt32LE(at + 4);
    if (stampSector !== sector) return `stamp of write ${writeId} names sector ${stampSector}`;
    const from = this.poolOffset(writeId, sector);
    if (this.pool.compare(source, at + 8, at + sectorBytes, from, from + this.fillerBytes) !== 0) return `write ${writeId}'s stamp with other bytes (torn or mixed sector)`;
    return writeId;
  }
}

// ---- the model ----

interface WriteOp {
  id: number;
  /** TRIM and WRITE_ZEROES both read back as zeros here (the shadow index and replay zero a trimmed range). */
  kind: 'data' | 'trim' | 'zeroes';
  firstSector: number;
  sectors: number;
  fua: boolean;
  issuedAt: number;
  completedAt: number | undefined;
  round: number;
}

class Model {
  /** Per sector, the ids of the writes sent to it, in order (since the last verified recovery). */
  readonly history: number[][] = Array.from({ length: sectorCount }, () => [0]);
  readonly busy = new Uint8Array(sectorCount);
  readonly writes: WriteOp[] = [{ id: 0, kind: 'zeroes', firstSector: 0, sectors: sectorCount, fua: false, issuedAt: 0, completedAt: 0, round: 0 }];
  /** Event clock: issue and completion ticks of every request. */
  private clock = 1;
  /** Every write completed at a tick below this is durable (a FLUSH sent at this tick completed). */
  durableBefore = 0;

  tick(): number {
    return this.clock++;
  }

  isDurable(w: WriteOp): boolean {
    return w.id === 0 || (w.completedAt !== undefined && (w.fua || w.completedAt < this.durableBefore));
  }

  /** The index in history[s] of the last write that must survive (index 0 is durable by construction). */
  durableIndex(s: number): number {
    const h = this.history[s]!;
    for (let i = h.length - 1; i > 0; i--) if (this.isDurable(this.writes[h[i]!]!)) return i;
    return 0;
  }

  /** The id a sector written by `id` identifies as: 0 for every zeroing operation. */
  contentId(id: number): number {
    return this.writes[id]!.kind === 'data' ? id : 0;
  }

  rangeFree(first: number, count: number): boolean {
    for (let s = first; s < first + count; s++) if (this.busy[s] !== 0) return false;
    return true;
  }
}

interface Round {
  readonly number: number;
  readonly clients: NbdClient[];
  readonly crashAfterOps: number;
  completedOps: number;
  crashed: boolean;
  crash: () => void;
  writes: number;
  fuaWrites: number;
  flushes: number;
  reads: number;
  zeroings: number;
  errors: string[];
}

function pickRange(random: Random, model: Model): { first: number; count: number } | undefined {
  for (let attempt = 0; attempt < 16; attempt++) {
    const count = writeSectorsMin + random.int(writeSectorsMax - writeSectorsMin + 1);
    const span = random.chance(0.5) ? hotSectors : sectorCount;
    const first = random.int(span - count + 1);
    if (model.rangeFree(first, count)) return { first, count };
  }
  return undefined;
}

/** Read through a call: the flag changes while a lane awaits. */
function crashed(round: Round): boolean {
  return round.crashed;
}

function mark(model: Model, first: number, count: number, value: 0 | 1): void {
  model.busy.fill(value, first, first + count);
}

async function lane(index: number, round: Round, model: Model, content: Content, random: Random): Promise<void> {
  const client = round.clients[index % round.clients.length]!;
  while (!round.crashed && round.errors.length === 0) {
    const dice = random.int(100);
    try {
      if (dice < 4) {
        const sentAt = model.tick();
        await client.flush();
        model.durableBefore = Math.max(model.durableBefore, sentAt);
        round.flushes++;
      } else if (dice < 10) {
        const range = pickRange(random, model);
        if (range === undefined) {
          await new Promise((r) => setImmediate(r));
          continue;
        }
        const { first, count } = range;
        mark(model, first, count, 1);
        try {
          const expected = Array.from({ length: count }, (_, i) => model.contentId(model.history[first + i]!.at(-1)!));
          const data = await client.read(first * sectorBytes, count * sectorBytes);
          for (let i = 0; i < count; i++) {
            const got = content.identify(data, i * sectorBytes, first + i);
            if (got !== expected[i]) {
              round.errors.push(`read during load: sector ${first + i} holds ${typeof got === 'number' ? `write ${got}` : got}, expected write ${expected[i]}`);
              break;
            }
          }
          round.reads++;
        } finally {
          mark(model, first, count, 0);
        }
      } else {
        const range = pickRange(random, model);
        if (range === undefined) {
          await new Promise((r) => setImmediate(r));
          continue;
        }
        const { first, count } = range;
        const kind = dice < 13 ? 'trim' : dice < 16 ? 'zeroes' : 'data';
        const op: WriteOp = { id: model.writes.length, kind, firstSector: first, sectors: count, fua: random.chance(0.1), issuedAt: 0, completedAt: undefined, round: round.number };
        model.writes.push(op);
        const data = kind === 'data' ? Buffer.allocUnsafe(count * sectorBytes) : undefined;
        for (let i = 0; i < count; i++) {
          if (data !== undefined) content.fill(data, i * sectorBytes, op.id, first + i);
          model.history[first + i]!.push(op.id);
        }
        mark(model, first, count, 1);
        try {
          op.issuedAt = model.tick();
          const offset = first * sectorBytes;
          if (data !== undefined) await client.write(offset, data, { fua: op.fua });
          else if (kind === 'trim') await client.trim(offset, count * sectorBytes, { fua: op.fua });
          else await client.writeZeroes(offset, count * sectorBytes, { fua: op.fua });
          op.completedAt = model.tick();
        } finally {
          mark(model, first, count, 0);
        }
        if (kind === 'data') round.writes++;
        else round.zeroings++;
        if (op.fua) round.fuaWrites++;
      }
    } catch (err) {
      if (crashed(round)) return; // the request was in flight at the kill: its outcome is unknown
      round.errors.push(`request failed before the crash: ${(err as Error).message}`);
      return;
    }
    round.completedOps++;
    if (round.completedOps >= round.crashAfterOps) round.crash();
  }
}

interface VerifyReport {
  violations: string[];
  /** Writes answered (not flushed) whose data is gone: allowed, but unexpected after kill -9 alone. */
  answeredLost: number;
  survivingUnflushed: number;
  found: Int32Array;
}

async function readDevice(client: NbdClient, content: Content): Promise<{ found: Int32Array; garbage: Map<number, string> }> {
  const found = new Int32Array(sectorCount);
  const garbage = new Map<number, string>();
  const chunkBytes = MiB;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < deviceBytes) {
      const offset = next;
      next += chunkBytes;
      const data = await client.read(offset, chunkBytes);
      for (let i = 0; i < chunkBytes / sectorBytes; i++) {
        const sector = offset / sectorBytes + i;
        const id = content.identify(data, i * sectorBytes, sector);
        if (typeof id === 'number') found[sector] = id;
        else {
          found[sector] = -1;
          garbage.set(sector, id);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { found, garbage };
}

function verify(model: Model, found: Int32Array, garbage: Map<number, string>): VerifyReport {
  const violations: string[] = [];
  let maxSurvivingIssue = 0;
  let survivingUnflushed = 0;
  const counted = new Set<number>();
  for (let s = 0; s < sectorCount; s++) {
    const f = found[s]!;
    if (f > 0) maxSurvivingIssue = Math.max(maxSurvivingIssue, model.writes[f]!.issuedAt);
  }
  const answeredLost = new Set<number>();
  for (let s = 0; s < sectorCount; s++) {
    const f = found[s]!;
    const h = model.history[s]!;
    if (f < 0) {
      violations.push(`sector ${s}: ${garbage.get(s)} (history ${h.join(',')})`);
      continue;
    }
    // Zeros may come from any zeroing operation (or the initial state): take the latest one.
    let idx = -1;
    if (f === 0) {
      for (let i = h.length - 1; i >= 0 && idx < 0; i--) if (model.contentId(h[i]!) === 0) idx = i;
    } else idx = h.indexOf(f);
    if (idx < 0) {
      violations.push(`sector ${s}: holds ${f === 0 ? 'zeros' : `write ${f}`}, which no operation since the last check wrote (${h.join(',')})`);
      continue;
    }
    const d = model.durableIndex(s);
    if (idx < d) {
      const lost = model.writes[h[d]!]!;
      violations.push(`sector ${s}: holds ${f === 0 ? 'zeros' : `write ${f}`}, but ${lost.kind} ${lost.id} (${lost.fua ? 'FUA, answered' : 'answered before a completed flush'}) was durable`);
      continue;
    }
    if (idx > d && !counted.has(f)) {
      counted.add(f);
      survivingUnflushed++;
    }
    for (let i = idx + 1; i < h.length; i++) {
      const lost = model.writes[h[i]!]!;
      if (lost.completedAt === undefined) continue;
      answeredLost.add(lost.id);
      if (lost.completedAt < maxSurvivingIssue) {
        violations.push(`sector ${s}: write ${lost.id} is lost though it was answered (tick ${lost.completedAt}) before a surviving write was sent (tick ${maxSurvivingIssue}): the device is no prefix of the log`);
        break;
      }
    }
  }
  return { violations, answeredLost: answeredLost.size, survivingUnflushed, found };
}

void test('kill -9 under a verified multi-connection write load: every flushed write survives, the device is a log prefix', { timeout: testMsMax }, async (t) => {
  const seed = Number(process.env['MARS_TEST_SEED'] ?? Date.now() % 2_147_483_647);
  const random = new Random(seed);
  const content = new Content(random);
  const model = new Model();
  const dir = await newHostDir('mars-crash');
  let daemon: Marsd | undefined;
  let clients: NbdClient[] = [];
  const extraArgs = ['--log-rotate-bytes', String(8 * MiB), '--shadow-bytes-max', String(32 * MiB)];
  const where = (): string => `(seed ${seed}; MARS_TEST_SEED=${seed} replays the same random choices, timing aside)`;
  try {
    const disk = await sparseFile(join(dir, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir, { extraArgs });
    await mustMarsadm(dir, 'create-resource', 'r0', disk);
    for (let r = 1; r <= endings.length; r++) {
      const ending = endings[r - 1]!;
      clients = await Promise.all(Array.from({ length: connections }, () => connectExport(daemon!, 'r0')));
      const current: Marsd = daemon;
      let stopped: Promise<number> | undefined;
      const round: Round = {
        number: r,
        clients,
        crashAfterOps: 200 + random.int(2800),
        completedOps: 0,
        crashed: false,
        crash: () => {
          if (round.crashed) return;
          round.crashed = true;
          stopped = ending === 'sigterm' ? current.stop() : current.kill9();
        },
        writes: 0,
        fuaWrites: 0,
        flushes: 0,
        reads: 0,
        zeroings: 0,
        errors: [],
      };
      const timer = setTimeout(() => round.crash(), roundMsMax);
      const started = Date.now();
      await Promise.all(Array.from({ length: connections * lanesPerConnection }, (_, i) => lane(i, round, model, content, random)));
      clearTimeout(timer);
      assert.deepEqual(round.errors, [], `round ${r}: the load failed before the ${ending} ${where()}`);
      assert.ok(stopped !== undefined, 'the round ended without a crash');
      assert.equal(await stopped, ending === 'sigterm' ? 0 : 137, `marsd's exit after ${ending} ${where()}\n${current.stderr().slice(-2000)}`);
      // A clean stop writes out and syncs everything: every answered write is durable.
      if (ending === 'sigterm') model.durableBefore = model.tick();
      const loadMs = Date.now() - started;
      for (const c of clients) c.destroy();
      clients = [];

      let interrupted = '';
      if (ending === 'kill-in-recovery') {
        // Start marsd and kill it again after a random delay: during recovery, or soon after.
        const delayMs = 100 + random.int(600);
        const port = await freePort();
        const early = startBackground(process.execPath, [marsdPath, '--dir', dir, '--nbd', `127.0.0.1:${port}`, ...extraArgs]);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        await early.stop('SIGKILL');
        const log = early.output();
        const phase = log.includes('marsd is ready') ? 'after it was ready' : log.includes('recovery replayed') ? 'after its recovery' : 'before it reported a recovery';
        interrupted = `; the next start was killed after ${delayMs} ms, ${phase}`;
      }

      daemon = await startMarsd(dir, { extraArgs });
      const status = await rawStatus(dir, 'r0');
      assert.equal(status.state, 'serving', `round ${r}: r0 is not served after recovery: ${status.failure ?? ''} ${where()}`);
      const checker = await connectExport(daemon, 'r0');
      clients = [checker];
      const { found, garbage } = await readDevice(checker, content);
      const report = verify(model, found, garbage);
      const summary =
        `round ${r} (${ending}${interrupted}): ${round.completedOps} ops in ${loadMs} ms (${round.writes} writes, ${round.zeroings} trims/zeroes, ${round.fuaWrites} FUA, ${round.flushes} flushes, ${round.reads} checked reads); ` +
        `recovery replayed ${status.recovery?.replayedRecords ?? '?'} records` +
        `${status.recovery?.tornTail ? `, torn tail at ${status.recovery.tornTail.logName}@${status.recovery.tornTail.offsetBytes}` : ''}; ` +
        `${report.survivingUnflushed} unflushed writes survived, ${report.answeredLost} answered-but-unflushed writes lost`;
      t.diagnostic(summary);
      assert.deepEqual(report.violations.slice(0, 20), [], `${summary}\n${report.violations.length} violations ${where()}`);
      if (ending === 'sigterm') assert.equal(status.recovery?.replayedRecords, 0, `nothing to replay after a clean stop ${where()}`);
      // The verified state is the new starting point: it is durable (recovery synced the device).
      for (let s = 0; s < sectorCount; s++) model.history[s] = [found[s]!];
      await checker.close();
      clients = [];
    }
    const code = await daemon.stop();
    daemon = undefined;
    assert.equal(code, 0, 'marsd stops cleanly after the rounds');
  } catch (err) {
    t.diagnostic(`seed ${seed}`);
    throw err;
  } finally {
    for (const c of clients) c.destroy();
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    await removeDir(dir);
  }
});
