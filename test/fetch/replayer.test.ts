import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FetchClient, LocalCopies, Replayer, type ReplayedLog } from '../../src/fetch/index.js';
import { listLogFiles, LogScanner } from '../../src/log/index.js';
import { loadPosition, savePosition } from '../../src/replay/position.js';
import { compareChains, emptyChain, extendChain, extendChainOnce, type VersionChain } from '../../src/replay/version-chain.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { Storage, StorageFile } from '../../src/storage/storage.js';
import { assertCopiesEqual, deviceSizeBytes, dialer, newClient, Primary, Server, sleep } from './helpers.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 30_000;
const deviceName = 'device';

/** A secondary: local copies, a fetch client, a device and a replayer over the copies. */
class Secondary {
  readonly local = new MemStorage();
  readonly state = new MemStorage();
  chain: VersionChain = emptyChain;
  readonly replayed: ReplayedLog[] = [];
  /** Every write the replayer made to the device, in order. */
  readonly deviceWrites: { positionBytes: number; data: Buffer }[] = [];
  copies!: LocalCopies;
  client!: FetchClient;
  replayer!: Replayer;
  device!: StorageFile;

  static async start(server: { port: number }, seed: number, replay = true): Promise<Secondary> {
    const s = new Secondary();
    const raw = await s.state.open(deviceName, 'create');
    await raw.write(Buffer.alloc(deviceSizeBytes), 0);
    await raw.sync();
    s.device = {
      name: raw.name,
      read: (target, position) => raw.read(target, position),
      write: async (data, position) => {
        s.deviceWrites.push({ positionBytes: position, data: Buffer.from(data) });
        await raw.write(data, position);
      },
      writeBatch: (jobs) => raw.writeBatch(jobs),
      sync: () => raw.sync(),
      size: () => raw.size(),
      truncate: (lengthBytes) => raw.truncate(lengthBytes),
      close: () => raw.close(),
    };
    s.copies = await LocalCopies.open(s.local);
    s.client = newClient(s.copies, dialer('beta', 'alpha', server), seed);
    s.replayer = new Replayer({
      source: s.copies.source,
      device: s.device,
      deviceSizeBytes,
      start: { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n },
      persist: (p) => savePosition(s.state, 'beta', p),
      onDamage: (name, offsetBytes) => s.client.reportDamage(name, offsetBytes),
      onLogReplayed: (log) => {
        s.replayed.push(log);
        s.chain = extendChainOnce(s.chain, { logNumber: log.logNumber, origin: log.host, lengthBytes: log.lengthBytes });
      },
      readChunkBytes: 4096,
    });
    s.client.start();
    if (replay) s.replayer.start();
    return s;
  }

  deviceImage(): Buffer {
    return this.state.image(deviceName)!;
  }

  async stop(): Promise<void> {
    await this.replayer.stop();
    await this.client.stop();
  }
}

/** Waits until the secondary has replayed everything the primary has made durable. */
async function replayedAll(primary: Primary, secondary: Secondary, what: string): Promise<void> {
  await waitFor(what, () => {
    const s = secondary.replayer.status();
    const d = primary.writer.durablePosition();
    return s.state === 'caught-up' && s.appliedPosition.logNumber === d.logNumber && s.appliedPosition.offsetBytes === d.endOffsetBytes;
  }, 20_000, 5);
}

/** The origin's version chain: one link per complete (rotated) log file. */
async function originChain(storage: Storage): Promise<VersionChain> {
  const files = await listLogFiles(storage);
  let chain = emptyChain;
  for (const f of files.slice(0, -1)) chain = extendChain(chain, { logNumber: f.logNumber, origin: f.host, lengthBytes: (await storage.readAll(f.name))!.length });
  return chain;
}

/** The device writes the origin's log describes, in order (trims and zeroes as zero buffers). */
async function expectedDeviceWrites(storage: Storage): Promise<{ positionBytes: number; data: Buffer }[]> {
  const writes: { positionBytes: number; data: Buffer }[] = [];
  for (const f of await listLogFiles(storage)) {
    const file = await storage.open(f.name, 'read');
    for await (const e of new LogScanner(file, f.name, { readChunkBytes: 4096 })) {
      const r = e.record;
      writes.push({ positionBytes: r.offsetBytes, data: r.kind === 'write' ? Buffer.from(r.payload) : Buffer.alloc(r.lengthBytes) });
    }
    await file.close();
  }
  return writes;
}

void test('replay over fetched logs ends byte-identical to the origin model, across rotated files', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 21, 64 * 1024);
  const server = await Server.listen('alpha', primary.source);
  const secondary = await Secondary.start(server, 22);
  try {
    for (let round = 0; round < 40; round++) {
      await primary.append(1 + primary.random.int(10));
      await primary.sync();
      if (round % 10 === 9) await sleep(5);
    }
    assert.ok(primary.writer.position().logNumber >= 4, `rotated into log ${primary.writer.position().logNumber}`);
    await replayedAll(primary, secondary, 'replay caught up');
    assert.ok(secondary.deviceImage().equals(primary.model), 'device equals the model');
    await assertCopiesEqual(primary.storage, secondary.local, 'copies');
    const comparison = compareChains(secondary.chain, await originChain(primary.storage));
    assert.deepEqual(comparison, { relation: 'equal' }, 'the version chains agree');
    assert.deepEqual(await loadPosition(secondary.state, 'beta'), secondary.replayer.status().appliedPosition, 'position persisted when caught up');
  } finally {
    await secondary.stop();
    await server.close();
  }
});

void test('a paused replayer leaves the device untouched while fetch continues, and resume catches up', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 23, 64 * 1024);
  const server = await Server.listen('alpha', primary.source);
  const secondary = await Secondary.start(server, 24);
  try {
    await primary.append(30);
    await primary.sync();
    await replayedAll(primary, secondary, 'first catch-up');
    await secondary.replayer.pause();
    assert.equal(secondary.replayer.status().state, 'paused');
    const deviceBefore = Buffer.from(secondary.deviceImage());
    const writesBefore = secondary.deviceWrites.length;
    const persistedBefore = await loadPosition(secondary.state, 'beta');
    for (let round = 0; round < 20; round++) {
      await primary.append(5);
      await primary.sync();
    }
    await waitFor('fetch goes on', () => secondary.client.status().state === 'caught-up' && secondary.client.status().fetchRestBytes === 0 && secondary.copies.last?.logNumber === primary.writer.position().logNumber, 10_000, 5);
    await sleep(50);
    assert.equal(secondary.deviceWrites.length, writesBefore, 'no device write while paused');
    assert.ok(secondary.deviceImage().equals(deviceBefore), 'the device is unchanged');
    assert.deepEqual(await loadPosition(secondary.state, 'beta'), persistedBefore);
    secondary.replayer.resume();
    await replayedAll(primary, secondary, 'resume catches up');
    assert.ok(secondary.deviceImage().equals(primary.model), 'device equals the model');
  } finally {
    await secondary.stop();
    await server.close();
  }
});

void test('a bit flipped in a local copy is found by replay, fetched again, and never applied', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 25, 64 * 1024);
  for (let round = 0; round < 20; round++) {
    await primary.append(8);
    await primary.sync();
  }
  const server = await Server.listen('alpha', primary.source);
  const secondary = await Secondary.start(server, 26, false);
  try {
    await waitFor('everything fetched', () => secondary.client.status().state === 'caught-up' && secondary.client.status().fetchRestBytes === 0 && secondary.copies.last?.logNumber === primary.writer.position().logNumber, 10_000, 5);
    // Damage a record in the middle of log 1 (log 2 and later exist); replay has not started.
    const name = primary.logName(1);
    const file = await secondary.local.open(name, 'read');
    const records = [];
    for await (const e of new LogScanner(file, name, { readChunkBytes: 4096 })) records.push(e);
    await file.close();
    const victim = records[Math.floor(records.length / 2)]!;
    secondary.local.flipBit(name, (victim.offsetBytes + 70) * 8 + 3);
    secondary.replayer.start();
    await replayedAll(primary, secondary, 'replay caught up after the re-fetch');
    assert.ok(secondary.deviceImage().equals(primary.model), 'device equals the model');
    assert.ok(server.streamStarts.some((s) => s.logName === name && s.fromOffsetBytes === victim.offsetBytes), 'log 1 was fetched again from the damaged record');
    assert.deepEqual(secondary.deviceWrites, await expectedDeviceWrites(primary.storage), 'every device write is an origin record, in order, once');
    await assertCopiesEqual(primary.storage, secondary.local, 'copies repaired');
  } finally {
    await secondary.stop();
    await server.close();
  }
});

void test('a damaged end of the last local copy is cut when the copies are opened again and fetched again', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 27);
  await primary.append(40);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const local = new MemStorage();
  let client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', server), 28);
  try {
    client.start();
    await waitFor('fetched', () => client.status().localBytes === primary.durableBytes(), 10_000, 5);
    await client.stop();
    const name = primary.logName(1);
    const sizeBytes = local.image(name)!.length;
    local.flipBit(name, (sizeBytes - 10) * 8); // in the last record's payload
    const copies = await LocalCopies.open(local);
    assert.ok(copies.lastCheck !== undefined && copies.lastCheck.cutBytes > 0 && copies.lastCheck.verifiedBytes < sizeBytes, `cut ${copies.lastCheck?.cutBytes} bytes`);
    assert.equal(local.image(name)!.length, copies.lastCheck.verifiedBytes, 'cut after the last valid record');
    client = newClient(copies, dialer('beta', 'alpha', server), 29);
    client.start();
    await waitFor('fetched again', () => client.status().localBytes === primary.durableBytes() && client.status().state === 'caught-up', 10_000, 5);
    await assertCopiesEqual(primary.storage, local, 'repaired');
    assert.equal(server.streamStarts.at(-1)?.fromOffsetBytes, copies.lastCheck.verifiedBytes);
  } finally {
    await client.stop();
    await server.close();
  }
});
