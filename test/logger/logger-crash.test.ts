/**
 * Random sequences of writes, trims, flushes, reads and crashes against the logger on the
 * in-memory disk: a flushed write is never lost, a read always sees every answered write,
 * and recovery never refuses crash damage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { Random } from '../../src/core/random.js';
import { ManualClock } from '../../src/core/clock.js';
import { Logger } from '../../src/logger/logger.js';
import { recover } from '../../src/logger/recovery.js';
import { loadPosition, savePosition } from '../../src/replay/position.js';
import type { Storage, StorageFile } from '../../src/storage/storage.js';

const deviceBytes = 16 * 1024;
const host = 'alpha';

/** Per byte: the value a flush made durable, and the values written since (any may survive a crash). */
class Model {
  durable = Buffer.alloc(deviceBytes);
  /** The newest answered value: what a read must return. */
  latest = Buffer.alloc(deviceBytes);
  /** Values written (answered or not) since the byte was last made durable. */
  since: Set<number>[] = Array.from({ length: deviceBytes }, () => new Set<number>());

  issue(offset: number, data: Buffer): void {
    for (let i = 0; i < data.length; i++) this.since[offset + i]!.add(data[i]!);
  }

  answer(offset: number, data: Buffer): void {
    data.copy(this.latest, offset);
  }

  /** A flush issued when `snapshot` was the latest image completed: those bytes are durable. */
  flushed(snapshot: Buffer): void {
    for (let i = 0; i < deviceBytes; i++) {
      if (snapshot[i] !== this.durable[i]) {
        this.durable[i] = snapshot[i]!;
      }
    }
  }

  checkAfterCrash(image: Buffer, seed: number): void {
    for (let i = 0; i < deviceBytes; i++) {
      const v = image[i]!;
      if (v === this.durable[i] || this.since[i]!.has(v)) continue;
      assert.fail(`seed ${seed}: byte ${i} is ${v} after the crash; durable was ${this.durable[i]}, written since: ${[...this.since[i]!].join(',')}`);
    }
  }

  /** After recovery the image is the new truth. */
  reset(image: Buffer): void {
    image.copy(this.durable);
    image.copy(this.latest);
    for (const s of this.since) s.clear();
  }
}

async function startLogger(logStorage: Storage, device: StorageFile, clock: ManualClock): Promise<Logger> {
  let from = await loadPosition(logStorage, host);
  if (from === undefined) {
    from = { logNumber: 1, logHost: host, offsetBytes: 0, nextSeq: 1n };
    await savePosition(logStorage, host, from);
  }
  const report = await recover({ storage: logStorage, device, deviceSizeBytes: deviceBytes, host, from });
  return Logger.open({
    storage: logStorage,
    device,
    sizeBytes: deviceBytes,
    host,
    clock,
    start: report.start,
    limits: { shadowBytesMax: 8 * 1024, logRotateBytes: 6 * 1024, writebackRetriesMax: 1, writebackRetryDelayMs: 1, logSyncDelayMs: 1, positionPersistIntervalMs: 2 },
  });
}

async function runSeed(seed: number): Promise<void> {
  const random = new Random(seed);
  const logDisk = new MemStorage();
  const deviceDisk = new MemStorage();
  const clock = new ManualClock(1_000_000);
  const model = new Model();
  let writeValue = 1;
  for (let life = 0; life < 6; life++) {
    const logStorage = logDisk.incarnation();
    const deviceStorage = deviceDisk.incarnation();
    const device = await deviceStorage.open('device', 'create');
    if ((await device.size()) < deviceBytes) {
      // The device exists before the resource does: make it durable once.
      assert.equal(life, 0, `seed ${seed}: the device shrank`);
      await device.truncate(deviceBytes);
      await device.sync();
      await deviceStorage.syncDir();
    }
    const logger = await startLogger(logStorage, device, clock);
    const image = await logger.read(0, deviceBytes);
    model.checkAfterCrash(image, seed);
    model.reset(image);
    const inflight: Promise<unknown>[] = [];
    const ops = 10 + random.int(40);
    for (let op = 0; op < ops; op++) {
      clock.advance(random.int(5));
      const choice = random.int(10);
      const offset = random.int(deviceBytes - 1);
      const length = 1 + random.int(Math.min(3000, deviceBytes - offset));
      if (choice < 6) {
        const data = Buffer.alloc(length, writeValue);
        writeValue = (writeValue % 250) + 1;
        model.issue(offset, data);
        inflight.push(logger.write(offset, data, random.chance(0.1)).then(() => model.answer(offset, data)));
      } else if (choice < 7) {
        model.issue(offset, Buffer.alloc(length));
        const zero = Buffer.alloc(length);
        const p = random.chance(0.5) ? logger.trim(offset, length, false) : logger.writeZeroes(offset, length, false);
        inflight.push(p.then(() => model.answer(offset, zero)));
      } else if (choice < 8) {
        const snapshot = Buffer.from(model.latest);
        inflight.push(logger.flush().then(() => model.flushed(snapshot)));
      } else {
        const expected = Buffer.from(model.latest);
        inflight.push(
          logger.read(offset, length).then((got) => {
            // Writes still in flight may or may not be visible; answered ones must be.
            for (let i = 0; i < length; i++) {
              const v = got[i]!;
              if (v !== expected[offset + i] && !model.since[offset + i]!.has(v)) assert.fail(`seed ${seed}: read byte ${offset + i} = ${v}, expected ${expected[offset + i]}`);
            }
          }),
        );
      }
      if (random.chance(0.3)) await Promise.allSettled(inflight.splice(0, random.int(inflight.length + 1)));
    }
    const settleCount = random.int(inflight.length + 1);
    await Promise.allSettled(inflight.slice(0, settleCount));
    // Power loss: whatever was not synced may be lost or torn, on both disks.
    logDisk.crash(random);
    deviceDisk.crash(random);
    await Promise.allSettled(inflight);
    await logger.close().catch(() => undefined);
  }
}

test('random write/flush/crash sequences on the in-memory disk never lose a flushed write', async () => {
  const base = Number(process.env['SEED'] ?? 1);
  const count = Number(process.env['SEEDS'] ?? 60);
  for (let seed = base; seed < base + count; seed++) {
    if (process.env['SEED_TRACE'] !== undefined) process.stderr.write(`seed ${seed}\n`);
    await runSeed(seed);
  }
});
