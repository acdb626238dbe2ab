/**
 * Regression: the Replayer once lost a pause (or stop) that arrived while its caught-up
 * checkpoint was waiting on the device's fdatasync. The loop then set 'caught-up' over
 * 'paused' and went on touching the device. Here the device's `sync()` waits on a gate the
 * test holds: the replayer catches up, more records arrive, its caught-up checkpoint
 * blocks in sync, `pause()` (or `stop()`) is called, the gate opens; the call must resolve,
 * the state must be 'paused' ('stopped'), and the device must not be written afterwards,
 * even when more records arrive.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemLogSource, Replayer } from '../../src/fetch/index.js';
import { encodeRecord, formatLogName, type LogRecord } from '../../src/log/index.js';
import type { ReplayPosition } from '../../src/replay/position.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 20_000;
const deviceSizeBytes = 1024 * 1024;
const logName = formatLogName(1, 'alpha');

/** Polls until `done` holds, at most `timeoutMs` (the one waitFor, polling every 2 ms). */
function until(done: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  return waitFor(what, done, timeoutMs, 2);
}

/** Settles with the promise's value, or 'late' after `ms` (the timer keeps the test alive meanwhile). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'late'> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Appends `count` records to log 1 of `source` (durable at once), continuing seq and offset. */
class Log {
  private seq = 1n;
  private endBytes = 0;

  constructor(readonly source: MemLogSource) {}

  async append(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const seq = this.seq++;
      const record: LogRecord = { kind: 'write', seq, lamport: seq, offsetBytes: Number(seq % 200n) * 4096, payload: Buffer.alloc(4096, Number(seq % 251n)) };
      const encoded = encodeRecord(record, this.endBytes);
      await this.source.append(logName, encoded);
      this.endBytes += encoded.length;
    }
    await this.source.makeDurable(logName);
  }

  get end(): number {
    return this.endBytes;
  }
}

/** A device over MemStorage whose sync() can be held at a gate; it counts writes. */
class GatedDevice {
  writes = 0;
  syncs = 0;
  /** A sync that is waiting at the gate. */
  held = false;
  private gate: { promise: Promise<void>; open: () => void } | undefined;
  file!: StorageFile;

  static async open(): Promise<GatedDevice> {
    const d = new GatedDevice();
    const raw = await new MemStorage().open('device', 'create');
    await raw.write(Buffer.alloc(deviceSizeBytes), 0);
    await raw.sync();
    d.file = {
      name: raw.name,
      read: (target, position) => raw.read(target, position),
      write: async (data, position) => {
        d.writes++;
        await raw.write(data, position);
      },
      writeBatch: async (jobs) => {
        d.writes++;
        await raw.writeBatch(jobs);
      },
      sync: async () => {
        d.syncs++;
        const gate = d.gate;
        if (gate !== undefined) {
          d.held = true;
          await gate.promise;
          d.held = false;
        }
        await raw.sync();
      },
      size: () => raw.size(),
      truncate: (lengthBytes) => raw.truncate(lengthBytes),
      close: () => raw.close(),
    };
    return d;
  }

  /** The next sync waits until `release()`. */
  hold(): void {
    let open = (): void => undefined;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gate = { promise, open };
  }

  release(): void {
    const gate = this.gate;
    this.gate = undefined;
    gate?.open();
  }
}

async function caughtUpReplayer(): Promise<{ log: Log; device: GatedDevice; replayer: Replayer; persisted: ReplayPosition[] }> {
  const log = new Log(new MemLogSource());
  await log.append(5);
  const device = await GatedDevice.open();
  const persisted: ReplayPosition[] = [];
  const replayer = new Replayer({
    source: log.source,
    device: device.file,
    deviceSizeBytes,
    start: { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n },
    persist: (p) => {
      persisted.push(p);
      return Promise.resolve();
    },
    readChunkBytes: 4096,
  });
  replayer.start();
  await until(() => replayer.status().state === 'caught-up' && replayer.status().persistedPosition.offsetBytes === log.end, 'the first catch-up');
  return { log, device, replayer, persisted };
}

/** More records arrive; the replayer applies them and its caught-up checkpoint blocks in the device's sync. */
async function blockInCaughtUpCheckpoint(log: Log, device: GatedDevice, replayer: Replayer): Promise<void> {
  device.hold();
  await log.append(3);
  await until(() => device.held, 'the caught-up checkpoint to wait in fdatasync');
  assert.equal(replayer.status().appliedPosition.offsetBytes, log.end, 'every record applied before the checkpoint');
}

/** After the call resolved: more records arrive and nothing touches the device. */
async function assertDeviceLeftAlone(log: Log, device: GatedDevice, replayer: Replayer, state: string): Promise<void> {
  const writes = device.writes;
  const syncs = device.syncs;
  const applied = replayer.status().appliedRecords;
  await log.append(4);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(replayer.status().state, state);
  assert.equal(device.writes, writes, 'no device write after the call resolved');
  assert.equal(device.syncs, syncs, 'no device sync after the call resolved');
  assert.equal(replayer.status().appliedRecords, applied, 'no record applied after the call resolved');
}

void test('a pause that arrives while the caught-up checkpoint waits on fdatasync is kept', { timeout: testTimeoutMs }, async () => {
  const { log, device, replayer, persisted } = await caughtUpReplayer();
  try {
    await blockInCaughtUpCheckpoint(log, device, replayer);
    const paused = replayer.pause();
    assert.equal(replayer.status().state, 'paused');
    device.release();
    assert.notEqual(await within(paused, 5_000), 'late', 'pause() resolves once the checkpoint is done');
    const s = replayer.status();
    assert.equal(s.state, 'paused');
    assert.equal(s.error, undefined);
    assert.equal(s.persistedPosition.offsetBytes, log.end, 'the checkpoint persisted everything applied');
    assert.equal(persisted.at(-1)?.offsetBytes, log.end);
    await assertDeviceLeftAlone(log, device, replayer, 'paused');
    // And resume catches up with what arrived meanwhile.
    replayer.resume();
    await until(() => replayer.status().state === 'caught-up' && replayer.status().persistedPosition.offsetBytes === log.end, 'resume to catch up');
  } finally {
    device.release();
    await replayer.stop();
  }
});

void test('a stop that arrives while the caught-up checkpoint waits on fdatasync is kept', { timeout: testTimeoutMs }, async () => {
  const { log, device, replayer } = await caughtUpReplayer();
  try {
    await blockInCaughtUpCheckpoint(log, device, replayer);
    const stopped = replayer.stop();
    assert.equal(replayer.status().state, 'stopped');
    device.release();
    assert.notEqual(await within(stopped, 5_000), 'late', 'stop() resolves once the checkpoint is done');
    const s = replayer.status();
    assert.equal(s.state, 'stopped');
    assert.equal(s.persistedPosition.offsetBytes, log.end, 'the checkpoint persisted everything applied');
    await assertDeviceLeftAlone(log, device, replayer, 'stopped');
    replayer.resume();
    replayer.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(replayer.status().state, 'stopped', 'a stopped replayer does not start again');
  } finally {
    device.release();
  }
});
