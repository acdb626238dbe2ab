/**
 * Payload buffers go back to the pool and are reused, but never while a read that
 * captured them, or a writeback round that writes them, may still use them. The device
 * holds back reads and writes on a gate that the test opens, so the dangerous moment is
 * made to happen instead of hoped for: reads wait while writeback drains their extents
 * and new writes take buffers from the pool; writeback waits while newer writes replace
 * the extents it is writing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { Random } from '../../src/core/random.js';
import { ManualClock } from '../../src/core/clock.js';
import { Logger } from '../../src/logger/logger.js';
import { PayloadPool } from '../../src/nbd/payload-pool.js';
import { savePosition } from '../../src/replay/position.js';
import type { StorageFile, WriteJob } from '../../src/storage/storage.js';

const deviceBytes = 256 * 1024;
const half = deviceBytes / 2;
const host = 'alpha';

/** A gate: while closed, callers wait in `pass()` until `open()`. */
class Gate {
  private closed = false;
  private waiters: (() => void)[] = [];
  private onArrival: (() => void) | undefined;
  waiting = 0;
  /** Resolves once a caller waits at the closed gate. */
  arrived(): Promise<void> {
    if (this.waiting > 0) return Promise.resolve();
    return new Promise((resolve) => (this.onArrival = resolve));
  }
  close(): void {
    this.closed = true;
  }
  open(): void {
    this.closed = false;
    for (const w of this.waiters.splice(0)) w();
  }
  async pass(): Promise<void> {
    if (!this.closed) return;
    this.waiting++;
    this.onArrival?.();
    this.onArrival = undefined;
    await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.waiting--;
  }
}

/** The device: reads and batch writes pass a gate; a batch's bytes must not change between its call and its write. */
class GatedDevice implements StorageFile {
  readonly name = 'device';
  readonly reads = new Gate();
  readonly writes = new Gate();
  readonly violations: string[] = [];
  constructor(private readonly inner: StorageFile) {}
  async read(target: Buffer, position: number): Promise<number> {
    await this.reads.pass();
    return this.inner.read(target, position);
  }
  write(data: Buffer, position: number): Promise<void> {
    return this.inner.write(data, position);
  }
  async writeBatch(jobs: readonly WriteJob[]): Promise<void> {
    const copies = jobs.map((j) => ('data' in j ? Buffer.from(j.data) : undefined));
    await this.writes.pass();
    jobs.forEach((j, i) => {
      if ('data' in j && !j.data.equals(copies[i]!)) this.violations.push(`the bytes for ${j.positionBytes}+${j.data.length} changed while writeback was writing them`);
    });
    return this.inner.writeBatch(jobs);
  }
  sync(): Promise<void> {
    return this.inner.sync();
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  truncate(lengthBytes: number): Promise<void> {
    return this.inner.truncate(lengthBytes);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function setup(): Promise<{ logger: Logger; device: GatedDevice; pool: PayloadPool; raw: StorageFile }> {
  const storage = new MemStorage();
  const raw = await new MemStorage().open('device', 'create');
  await raw.truncate(deviceBytes);
  const device = new GatedDevice(raw);
  const start = { logNumber: 1, logHost: host, offsetBytes: 0, nextSeq: 1n };
  await savePosition(storage, host, start);
  const pool = new PayloadPool(1024 * 1024);
  const logger = await Logger.open({
    storage,
    device,
    sizeBytes: deviceBytes,
    host,
    clock: new ManualClock(1_000_000),
    start,
    payloadPool: pool,
    limits: { logSyncDelayMs: 1, positionPersistIntervalMs: 1 },
  });
  return { logger, device, pool, raw };
}

/** Writes `length` bytes of pattern `value` at `offset` from a pool buffer, as an NBD connection does. */
async function poolWrite(logger: Logger, pool: PayloadPool, model: Buffer, offset: number, length: number, value: number): Promise<void> {
  const data = pool.take(length);
  data.fill(value);
  await logger.write(offset, data, false);
  model.fill(value, offset, offset + length);
}

/** Offset and length (4 KiB multiples) inside the half that starts at `base`. */
function range(random: Random, base: number): [number, number] {
  const blocks = half / 4096;
  const first = random.int(blocks);
  const count = 1 + random.int(Math.min(8, blocks - first));
  return [base + first * 4096, count * 4096];
}

test('a read that captured shadow extents sees its bytes, though writeback drains them and new writes take pool buffers meanwhile', async () => {
  for (let seed = 1; seed <= 8; seed++) {
    const random = new Random(seed);
    const { logger, device, pool, raw } = await setup();
    const model = Buffer.alloc(deviceBytes);
    let value = 1;
    const next = (): number => (value = (value % 250) + 1);
    for (let round = 0; round < 6; round++) {
      const [readBase, writeBase] = random.chance(0.5) ? [0, half] : [half, 0];
      // Shadow extents in the read half, some split by overlapping writes.
      for (let i = 0; i < 3 + random.int(4); i++) await poolWrite(logger, pool, model, ...range(random, readBase), next());
      await logger.flush();
      const expected = Buffer.from(model);
      device.reads.close();
      const reads = Array.from({ length: 3 }, () => {
        const [offset, length] = range(random, readBase);
        return logger.read(offset, length).then((got) => ({ offset, got }));
      });
      // Writeback drains the read half and gives buffers back if it may...
      await logger.drain();
      // ...and writes to the other half take buffers from the pool.
      for (let i = 0; i < 4; i++) await poolWrite(logger, pool, model, ...range(random, writeBase), next());
      device.reads.open();
      for (const { offset, got } of await Promise.all(reads)) {
        assert.ok(got.equals(expected.subarray(offset, offset + got.length)), `seed ${seed} round ${round}: read at ${offset}+${got.length} returned bytes of another write`);
      }
      await logger.drain();
    }
    await logger.drain();
    const image = Buffer.alloc(deviceBytes);
    await raw.read(image, 0);
    assert.ok(image.equals(model), `seed ${seed}: the device differs from the writes`);
    assert.ok(pool.stats().reused > 0, `seed ${seed}: no buffer was reused at all`);
    await logger.close();
  }
});

test('a writeback round keeps its buffers while newer writes replace its extents', async () => {
  for (let seed = 1; seed <= 8; seed++) {
    const random = new Random(seed);
    const { logger, device, pool, raw } = await setup();
    const model = Buffer.alloc(deviceBytes);
    let value = 1;
    const next = (): number => (value = (value % 250) + 1);
    for (let round = 0; round < 6; round++) {
      const ranges = Array.from({ length: 2 + random.int(4) }, () => range(random, random.chance(0.5) ? 0 : half));
      device.writes.close();
      const arrived = device.writes.arrived();
      for (const [offset, length] of ranges) await poolWrite(logger, pool, model, offset, length, next());
      await logger.flush();
      // Writeback starts its round and waits at the gate with (some of) the extents in hand.
      await arrived;
      // Newer writes replace those extents (their buffers leave the shadow index), and more take pool buffers.
      for (const [offset, length] of ranges) await poolWrite(logger, pool, model, offset, length, next());
      for (let i = 0; i < 4; i++) await poolWrite(logger, pool, model, ...range(random, 0), next());
      device.writes.open();
      await logger.drain();
    }
    assert.deepEqual(device.violations, [], `seed ${seed}`);
    const image = Buffer.alloc(deviceBytes);
    await raw.read(image, 0);
    assert.ok(image.equals(model), `seed ${seed}: the device differs from the writes`);
    assert.ok(pool.stats().reused > 0, `seed ${seed}: no buffer was reused at all`);
    await logger.close();
  }
});
