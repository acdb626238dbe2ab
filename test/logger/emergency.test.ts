/**
 * Emergency mode of the logger on the in-memory disks: the log storage has room for a few
 * KiB only. Random writes, trims, flushes and reads never fail because of it (the logger
 * stops logging and writes the device directly); a crash at any moment loses no flushed
 * write, before, during or after the switch, also after leaving emergency mode again
 * (the log continues after a hole), and a restart in emergency mode stays in it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { Random } from '../../src/core/random.js';
import { ManualClock } from '../../src/core/clock.js';
import { Logger } from '../../src/logger/logger.js';
import type { LoggerLimits } from '../../src/logger/limits.js';
import { EmergencyFile } from '../../src/logger/emergency-file.js';
import { recover } from '../../src/logger/recovery.js';
import { loadPosition, savePosition } from '../../src/replay/position.js';
import { listLogFiles, formatLogName } from '../../src/log/index.js';
import { fileSize, type Storage, type StorageFile } from '../../src/storage/storage.js';

const deviceBytes = 16 * 1024;
const host = 'alpha';
const logCapacityBytes = 24 * 1024;

/** Per byte: the durable value and every value written since (any of them may survive a crash). */
class Model {
  durable = Buffer.alloc(deviceBytes);
  latest = Buffer.alloc(deviceBytes);
  since: Set<number>[] = Array.from({ length: deviceBytes }, () => new Set<number>());
  issue(offset: number, data: Buffer): void {
    for (let i = 0; i < data.length; i++) this.since[offset + i]!.add(data[i]!);
  }
  answer(offset: number, data: Buffer): void {
    data.copy(this.latest, offset);
  }
  flushed(snapshot: Buffer): void {
    snapshot.copy(this.durable);
  }
  check(image: Buffer, what: string): void {
    for (let i = 0; i < deviceBytes; i++) {
      const v = image[i]!;
      if (v !== this.durable[i] && !this.since[i]!.has(v)) assert.fail(`${what}: byte ${i} is ${v}; durable ${this.durable[i]}, since: ${[...this.since[i]!].join(',')}`);
    }
  }
  reset(image: Buffer): void {
    image.copy(this.durable);
    image.copy(this.latest);
    for (const s of this.since) s.clear();
  }
}

/** What the daemon's Resource does at start: recovery, unless the emergency state says the device is the truth. */
async function startLogger(logStorage: Storage, device: StorageFile, clock: ManualClock, limits: Partial<LoggerLimits> = {}): Promise<Logger> {
  const emergencyFile = await EmergencyFile.open(logStorage, host);
  let start;
  if (emergencyFile.inEmergency) {
    const s = emergencyFile.state!;
    const name = formatLogName(s.logNumber, host);
    start = { logNumber: s.logNumber, logHost: host, offsetBytes: (await logStorage.exists(name)) ? await fileSize(logStorage, name) : 0, nextSeq: s.nextSeq };
  } else {
    let from = await loadPosition(logStorage, host);
    if (from === undefined) {
      from = { logNumber: 1, logHost: host, offsetBytes: 0, nextSeq: 1n };
      await savePosition(logStorage, host, from);
    }
    start = (await recover({ storage: logStorage, device, deviceSizeBytes: deviceBytes, host, from })).start;
  }
  return Logger.open({
    storage: logStorage,
    device,
    sizeBytes: deviceBytes,
    host,
    clock,
    start,
    emergencyFile,
    startInEmergency: emergencyFile.inEmergency,
    limits: { shadowBytesMax: 8 * 1024, logRotateBytes: 6 * 1024, writebackRetriesMax: 1, writebackRetryDelayMs: 1, logSyncDelayMs: 1, positionPersistIntervalMs: 2, ...limits },
  });
}

/** Frees the log storage as the space monitor would: every log file before the current one goes. */
async function freeLogs(logStorage: Storage): Promise<void> {
  const files = await listLogFiles(logStorage);
  for (const f of files.slice(0, -1)) await logStorage.remove(f.name);
}

async function runSeed(seed: number): Promise<{ entered: number; left: number }> {
  const random = new Random(seed);
  const logDisk = new MemStorage({ capacityBytes: logCapacityBytes });
  const deviceDisk = new MemStorage();
  const clock = new ManualClock(1_000_000);
  const model = new Model();
  let writeValue = 1;
  let entered = 0;
  let left = 0;
  for (let life = 0; life < 6; life++) {
    const logStorage = logDisk.incarnation();
    const deviceStorage = deviceDisk.incarnation();
    const device = await deviceStorage.open('device', 'create');
    if ((await device.size()) < deviceBytes) {
      assert.equal(life, 0, `seed ${seed}: the device shrank`);
      await device.truncate(deviceBytes);
      await device.sync();
      await deviceStorage.syncDir();
    }
    const logger = await startLogger(logStorage, device, clock);
    const image = await logger.read(0, deviceBytes);
    model.check(image, `seed ${seed} life ${life}: after the restart (mode ${logger.loggerMode})`);
    model.reset(image);
    const inflight: Promise<unknown>[] = [];
    const ops = 20 + random.int(60);
    for (let op = 0; op < ops; op++) {
      const choice = random.int(20);
      const offset = random.int(deviceBytes - 1);
      const length = 1 + random.int(Math.min(3000, deviceBytes - offset));
      if (choice < 12) {
        const data = Buffer.alloc(length, writeValue);
        writeValue = (writeValue % 250) + 1;
        model.issue(offset, data);
        inflight.push(logger.write(offset, data, random.chance(0.1)).then(() => model.answer(offset, data)));
      } else if (choice < 13) {
        const zero = Buffer.alloc(length);
        model.issue(offset, zero);
        inflight.push(logger.writeZeroes(offset, length, false).then(() => model.answer(offset, zero)));
      } else if (choice < 16) {
        const snapshot = Buffer.from(model.latest);
        inflight.push(logger.flush().then(() => model.flushed(snapshot)));
      } else if (choice < 18) {
        const expected = Buffer.from(model.latest);
        inflight.push(
          logger.read(offset, length).then((got) => {
            for (let i = 0; i < length; i++) {
              const v = got[i]!;
              if (v !== expected[offset + i] && !model.since[offset + i]!.has(v)) assert.fail(`seed ${seed}: read byte ${offset + i} = ${v}, expected ${expected[offset + i]}`);
            }
          }),
        );
      } else if (logger.loggerMode === 'emergency') {
        await freeLogs(logStorage);
        if (await logger.leaveEmergency()) left++;
      }
      if (logger.loggerMode !== 'logging') entered++;
      if (random.chance(0.3)) await settleAll(inflight.splice(0, random.int(inflight.length + 1)), seed);
    }
    await settleAll(inflight.slice(0, random.int(inflight.length + 1)), seed);
    logDisk.crash(random);
    deviceDisk.crash(random);
    await Promise.allSettled(inflight);
    await logger.close().catch(() => undefined);
  }
  return { entered, left };
}

/** Every operation must succeed: no write fails because the log is full. */
async function settleAll(ops: Promise<unknown>[], seed: number): Promise<void> {
  const results = await Promise.allSettled(ops);
  for (const r of results) if (r.status === 'rejected') assert.fail(`seed ${seed}: an operation failed: ${String(r.reason)}`);
}

void test('a full log storage never fails a write, and no flushed write is lost across crashes in and out of emergency mode', async () => {
  const base = Number(process.env['SEED'] ?? 1);
  const count = Number(process.env['SEEDS'] ?? 40);
  let entered = 0;
  let left = 0;
  for (let seed = base; seed < base + count; seed++) {
    const r = await runSeed(seed);
    entered += r.entered;
    left += r.left;
  }
  assert.ok(entered > 0, 'emergency mode was never entered: the test does not test it');
  assert.ok(left > 0, 'emergency mode was never left: the test does not test leaving');
});

void test('leaving emergency mode when the log storage fails it (no room, an I/O error) fails quietly: it stays in it, writes go on, and it leaves later', async () => {
  const logDisk = new MemStorage({ capacityBytes: logCapacityBytes });
  const deviceDisk = new MemStorage();
  const clock = new ManualClock(1_000_000);
  const device = await deviceDisk.open('device', 'create');
  await device.truncate(deviceBytes);
  const logger = await startLogger(logDisk, device, clock);
  const data = (n: number): Buffer => Buffer.alloc(4096, n);
  for (let n = 0; logger.loggerMode === 'logging'; n++) {
    assert.ok(n < 1000, 'emergency mode never came');
    await logger.write((n % 4) * 4096, data(n % 250), false);
  }
  await logger.flush();
  assert.equal(logger.loggerMode, 'emergency');
  logDisk.failAll = true;
  assert.equal(await logger.leaveEmergency(), false, 'the new log cannot be started');
  assert.equal(logger.loggerMode, 'emergency');
  await logger.write(0, data(7), true);
  assert.ok((await logger.read(0, 4096)).equals(data(7)));
  logDisk.failAll = false;
  logDisk.capacityBytes = logCapacityBytes * 4;
  await freeLogs(logDisk);
  assert.equal(await logger.leaveEmergency(), true);
  assert.equal(logger.loggerMode, 'logging');
  assert.ok(logger.lastHole > 0, 'the log numbering has a hole');
  await logger.write(4096, data(8), true);
  assert.ok((await logger.read(0, 8192)).equals(Buffer.concat([data(7), data(8)])));
  await logger.close();
});

/** The log storage, with a hook run right after the emergency state is saved (fdatasync'd) in emergency mode. */
class CrashAfterEmergencySave implements Storage {
  constructor(
    private readonly inner: Storage,
    private readonly onSaved: () => void,
  ) {}
  async open(name: string, mode: 'read' | 'write' | 'create'): Promise<StorageFile> {
    const file = await this.inner.open(name, mode);
    if (name !== `emergency-${host}` || mode !== 'write') return file;
    const onSaved = this.onSaved;
    return {
      name: file.name,
      read: (t, p) => file.read(t, p),
      write: (d, p) => file.write(d, p),
      writeBatch: (j) => file.writeBatch(j),
      size: () => file.size(),
      truncate: (l) => file.truncate(l),
      close: () => file.close(),
      sync: async () => {
        await file.sync();
        onSaved();
      },
    };
  }
  list(): Promise<string[]> {
    return this.inner.list();
  }
  exists(name: string): Promise<boolean> {
    return this.inner.exists(name);
  }
  remove(name: string): Promise<void> {
    return this.inner.remove(name);
  }
  syncDir(): Promise<void> {
    return this.inner.syncDir();
  }
  writeAtomic(name: string, data: Buffer): Promise<void> {
    return this.inner.writeAtomic(name, data);
  }
  readAll(name: string): Promise<Buffer | undefined> {
    return this.inner.readAll(name);
  }
}

void test('a crash right after the emergency state is saved loses no flushed write: the device was written back and synced before it', async () => {
  const logDisk = new MemStorage();
  const deviceDisk = new MemStorage();
  const clock = new ManualClock(1_000_000);
  const random = new Random(5);
  const deviceStorage = deviceDisk.incarnation();
  const device = await deviceStorage.open('device', 'create');
  await device.truncate(deviceBytes);
  await device.sync();
  await deviceStorage.syncDir();
  const logStorage = new CrashAfterEmergencySave(logDisk.incarnation(), () => {
    logDisk.crash(random);
    deviceDisk.crash(random);
  });
  const logger = await startLogger(logStorage, device, clock, { positionPersistIntervalMs: 60_000 });
  const data = Buffer.alloc(8192, 0x42);
  await logger.write(4096, data, false);
  await logger.flush(); // durable in the log; on the device only in the page cache (no position persisted yet)
  await logger.enterEmergency('test');
  await logger.close().catch(() => undefined);
  const restarted = await startLogger(logDisk.incarnation(), await deviceDisk.incarnation().open('device', 'write'), clock);
  assert.equal(restarted.loggerMode, 'emergency', 'the saved state says emergency mode');
  assert.ok((await restarted.read(4096, 8192)).equals(data), 'the flushed write is on the device after the crash');
  await restarted.close();
});
