import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fcSeed } from '../log/helpers.js';
import { MarsError } from '../../src/core/errors.js';
import { ReplayEngine, type ReplayRecord } from '../../src/replay/replay-engine.js';
import type { ReplayPosition } from '../../src/replay/position.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';

const recordBytes = 512;
const logHost = 'alpha';

/** Lets other work run for `turns` event-loop turns. */
async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A device that knows which records are durable: record `seq` writes at seq * 512, and an
 * fdatasync makes durable exactly the writes that completed before it was called. Its
 * writes and syncs take a scripted number of turns, so applies overlap a slow sync.
 */
class DurabilityDevice {
  completedThroughSeq = 0n;
  durableThroughSeq = 0n;
  syncsStarted = 0;
  failSyncs = false;
  constructor(
    private readonly inner: StorageFile,
    private readonly delays: readonly number[],
  ) {}
  private delay(): number {
    return this.delays[(this.syncsStarted + Number(this.completedThroughSeq)) % this.delays.length] ?? 0;
  }
  file(): StorageFile {
    return {
      name: this.inner.name,
      read: (target, position) => this.inner.read(target, position),
      write: async (data, position) => {
        await turns(this.delay() % 3);
        await this.inner.write(data, position);
        this.completedThroughSeq = BigInt(position / recordBytes);
      },
      writeBatch: (jobs) => this.inner.writeBatch(jobs),
      sync: async () => {
        this.syncsStarted++;
        const covered = this.completedThroughSeq;
        await turns(this.delay());
        if (this.failSyncs) throw new MarsError('EIO', 'fdatasync failed');
        if (covered > this.durableThroughSeq) this.durableThroughSeq = covered;
      },
      size: () => this.inner.size(),
      truncate: (lengthBytes) => this.inner.truncate(lengthBytes),
      close: () => this.inner.close(),
    };
  }
}

function record(seq: bigint): ReplayRecord {
  return { kind: 'write', seq, offsetBytes: Number(seq) * recordBytes, payload: Buffer.alloc(recordBytes, Number(seq % 251n)) };
}

async function newDevice(delays: readonly number[], records: number): Promise<DurabilityDevice> {
  const file = await new MemStorage().open('device', 'create');
  await file.write(Buffer.alloc((records + 2) * recordBytes), 0);
  return new DurabilityDevice(file, delays);
}

const start: ReplayPosition = { logNumber: 1, logHost, offsetBytes: 0, nextSeq: 1n };

void test('a checkpoint persists only positions whose records the device holds durably, while applies go on during it', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 80 }), fc.array(fc.nat({ max: 12 }), { minLength: 1, maxLength: 16 }), fc.integer({ min: 1, max: 8 }), async (records, delays, checkpointRecords) => {
      const device = await newDevice(delays, records);
      const persisted: ReplayPosition[] = [];
      const engine = new ReplayEngine({
        device: device.file(),
        deviceSizeBytes: (records + 2) * recordBytes,
        start,
        checkpointBytes: checkpointRecords * recordBytes,
        persist: async (position) => {
          assert.ok(position.nextSeq - 1n <= device.durableThroughSeq, `persisted up to record ${position.nextSeq - 1n}, durable only through ${device.durableThroughSeq}`);
          await turns(1);
          persisted.push(position);
        },
      });
      for (let seq = 1n; seq <= BigInt(records); seq++) await engine.apply(record(seq), { logNumber: 1, logHost, endOffsetBytes: Number(seq) * 100 });
      await engine.checkpoint();
      assert.equal(engine.persistedPosition.nextSeq, BigInt(records) + 1n);
      assert.equal(engine.persistedPosition.offsetBytes, records * 100);
      for (let i = 1; i < persisted.length; i++) assert.ok(persisted[i]!.nextSeq >= persisted[i - 1]!.nextSeq, 'positions go forward');
    }),
    { seed: fcSeed, numRuns: 150 },
  );
});

void test('automatic checkpoints do not stall replay: records are applied while the device fdatasyncs', async () => {
  const records = 40;
  const device = await newDevice([30], records);
  let appliedDuringSync = 0;
  const state = { syncing: false };
  const file = device.file();
  const engine = new ReplayEngine({
    device: {
      ...file,
      sync: async () => {
        state.syncing = true;
        try {
          await file.sync();
        } finally {
          state.syncing = false;
        }
      },
    },
    deviceSizeBytes: (records + 2) * recordBytes,
    start,
    checkpointBytes: 4 * recordBytes,
    persist: () => Promise.resolve(),
  });
  for (let seq = 1n; seq <= BigInt(records); seq++) {
    await engine.apply(record(seq), { logNumber: 1, logHost, endOffsetBytes: Number(seq) * 100 });
    if (state.syncing) appliedDuringSync++;
  }
  await engine.checkpoint();
  assert.ok(appliedDuringSync > 0, 'no record was applied while a checkpoint ran');
});

void test('a failed background checkpoint stops the next apply with its error, and nothing is persisted for it', async () => {
  const records = 10;
  const device = await newDevice([2], records);
  const persisted: ReplayPosition[] = [];
  const engine = new ReplayEngine({
    device: device.file(),
    deviceSizeBytes: (records + 2) * recordBytes,
    start,
    checkpointBytes: 2 * recordBytes,
    persist: (position) => {
      persisted.push(position);
      return Promise.resolve();
    },
  });
  device.failSyncs = true;
  await engine.apply(record(1n), { logNumber: 1, logHost, endOffsetBytes: 100 });
  await engine.apply(record(2n), { logNumber: 1, logHost, endOffsetBytes: 200 }); // starts the background checkpoint
  await engine.settled();
  await assert.rejects(engine.apply(record(3n), { logNumber: 1, logHost, endOffsetBytes: 300 }), (err: unknown) => err instanceof MarsError && err.code === 'EIO');
  assert.equal(persisted.length, 0);
  assert.equal(engine.persistedPosition.nextSeq, 1n);
});

/** A record of a batch test: writes and zeroes of 1-3 blocks of 512 bytes on a 16-block device, often contiguous. */
const batchDeviceBytes = 16 * recordBytes;
const batchRecord = fc.record({
  zero: fc.boolean(),
  block: fc.nat({ max: 13 }),
  blocks: fc.integer({ min: 1, max: 3 }),
  follow: fc.boolean(),
  fill: fc.integer({ min: 1, max: 255 }),
});

void test('a batch ends as applying its records one by one, and every device write leaves a prefix state (or tears only the record being written)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(batchRecord, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 40 }), async (specs, batchSize) => {
      // Records: "follow" places a record right after the previous one, so runs get gathered.
      const records: ReplayRecord[] = [];
      let end = 0;
      for (const [i, s] of specs.entries()) {
        const lengthBytes = s.blocks * recordBytes;
        const offsetBytes = s.follow && end + lengthBytes <= batchDeviceBytes ? end : s.block * recordBytes;
        const seq = BigInt(i + 1);
        records.push(s.zero ? { kind: 'zeroes', seq, offsetBytes, lengthBytes } : { kind: 'write', seq, offsetBytes, payload: Buffer.alloc(lengthBytes, s.fill) });
        end = offsetBytes + lengthBytes;
      }
      const prefixes: Buffer[] = [Buffer.alloc(batchDeviceBytes)];
      for (const r of records) {
        const next = Buffer.from(prefixes.at(-1)!);
        if (r.kind === 'write') r.payload.copy(next, r.offsetBytes);
        else next.fill(0, r.offsetBytes, r.offsetBytes + r.lengthBytes);
        prefixes.push(next);
      }
      const storage = new MemStorage();
      const inner = await storage.open('device', 'create');
      await inner.write(Buffer.alloc(batchDeviceBytes), 0);
      const image = (): Buffer => storage.image('device')!;
      let applied = 0; // records the engine has said are applied: the device is at least that far
      const failures: string[] = [];
      const check = (): void => {
        const now = image();
        if (!prefixes.slice(applied).some((p) => p.equals(now))) failures.push(`after a write the device is no prefix state at or beyond ${applied} records`);
      };
      const device: StorageFile = {
        ...inner,
        name: inner.name,
        write: async (data, position) => {
          await inner.write(data, position);
          check();
        },
        writev: async (parts, position) => {
          await inner.write(Buffer.concat(parts), position);
          check();
        },
        writeBatch: () => Promise.reject(new Error('replay writes in order, never as an unordered batch')),
      };
      const engine = new ReplayEngine({ device, deviceSizeBytes: batchDeviceBytes, persist: () => Promise.resolve(), start: { logNumber: 1, logHost, offsetBytes: 0, nextSeq: 1n } });
      for (let i = 0; i < records.length; i += batchSize) {
        const batch = records.slice(i, i + batchSize).map((record, j) => ({ record, endOffsetBytes: (i + j + 1) * 100 }));
        await engine.applyBatch(batch, { logNumber: 1, logHost });
        applied = i + batch.length;
        assert.deepEqual(engine.appliedPosition, { logNumber: 1, logHost, offsetBytes: applied * 100, nextSeq: BigInt(applied + 1) });
        assert.ok(image().equals(prefixes[applied]!), `after ${applied} records the device is their state`);
      }
      assert.deepEqual(failures, []);
      assert.equal(engine.appliedRecords, records.length);
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});

void test('a batch with a seq gap or a record past the device end is refused before any write', async () => {
  const storage = new MemStorage();
  const device = await storage.open('device', 'create');
  await device.write(Buffer.alloc(4 * recordBytes), 0);
  const engine = new ReplayEngine({ device, deviceSizeBytes: 4 * recordBytes, persist: () => Promise.resolve(), start: { logNumber: 1, logHost, offsetBytes: 0, nextSeq: 1n } });
  const write = (seq: bigint, block: number): ReplayRecord => ({ kind: 'write', seq, offsetBytes: block * recordBytes, payload: Buffer.alloc(recordBytes, 7) });
  await assert.rejects(engine.applyBatch([{ record: write(1n, 0), endOffsetBytes: 10 }, { record: write(3n, 1), endOffsetBytes: 20 }], { logNumber: 1, logHost }), (e: unknown) => e instanceof MarsError && e.code === 'LOG_SEQ_GAP');
  await assert.rejects(engine.applyBatch([{ record: write(1n, 0), endOffsetBytes: 10 }, { record: write(2n, 4), endOffsetBytes: 20 }], { logNumber: 1, logHost }), (e: unknown) => e instanceof MarsError && e.code === 'LOG_CORRUPT');
  assert.ok(storage.image('device')!.equals(Buffer.alloc(4 * recordBytes)), 'nothing written');
  assert.equal(engine.appliedPosition.nextSeq, 1n);
});
