/**
 * A sync that began again from a new source at a later log saves the new start before the
 * replica drops the copies of the earlier start. A crash in between leaves copies that all
 * lie before the saved start: Replica.open must drop them, or fetch goes on from the last
 * of them and asks the source for a log it no longer holds, for ever. Copies that reach the
 * start's log belong to this start and stay. And while running: when the sync's new
 * source says its start, the replica drops the earlier start's copies and fetches from the
 * new start (over TCP on 127.0.0.1, a real sync source and fetch server), and the member
 * ends consistent and byte-exact; without that its fetch kept asking for the stale log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replica, type ReplicaOptions } from '../../src/daemon/replica.js';
import { encodeRecord } from '../../src/log/record.js';
import { formatLogName } from '../../src/log/names.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { saveSyncState } from '../../src/sync/state-file.js';
import { systemClock } from '../../src/core/clock.js';
import { systemTimers } from '../../src/core/timers.js';
import { Random } from '../../src/core/random.js';
import { MarsError } from '../../src/core/errors.js';
import { SyncSourceSession } from '../../src/sync/index.js';
import { deviceSizeBytes, dialer, Primary, resource as fetchResource, Server } from '../fetch/helpers.js';
import { SourceHost } from '../sync/helpers.js';
import { waitFor } from '../support/wait.js';

const sizeBytes = 1 << 20;

async function withCopies(startLog: number, copies: number[]): Promise<{ mem: MemStorage; options: ReplicaOptions; logs: string[] }> {
  const mem = new MemStorage();
  for (const n of copies) {
    const copy = await mem.open(formatLogName(n, 'delta'), 'create');
    await copy.write(encodeRecord({ kind: 'zeroes', seq: BigInt(n), lamport: BigInt(n), offsetBytes: 0, lengthBytes: 4096 }, 0), 0);
    await copy.sync();
    await copy.close();
  }
  await saveSyncState(mem, { resource: 'r0', sizeBytes, nextBytes: 0, startPosition: { logNumber: startLog, logHost: 'delta', offsetBytes: 0, nextSeq: 100n }, endPosition: undefined, sourceHost: 'delta' });
  await mem.syncDir();
  const device = await mem.open('device', 'create');
  const logs: string[] = [];
  const options: ReplicaOptions = {
    resource: 'r0', host: 'alpha', storage: mem, device, sizeBytes, deviceBytes: sizeBytes,
    primary: () => 'delta',
    // No peer answers: the test looks only at what open and start decide locally.
    dial: () => Promise.reject(new MarsError('EIO', 'no peer in this test')),
    clock: systemClock, timers: systemTimers, random: new Random(44),
    switches: { fetch: false, replay: true, sync: false },
    log: (_level, msg) => logs.push(msg),
    onChange: () => undefined,
  };
  return { mem, options, logs };
}

async function copiesAfterStart(startLog: number, copies: number[]): Promise<{ names: string[]; logs: string[] }> {
  const { mem, options, logs } = await withCopies(startLog, copies);
  const replica = await Replica.open(options);
  await replica.start();
  await replica.stop();
  await options.device.close();
  return { names: (await mem.list()).filter((n) => n.startsWith('log-')), logs };
}

void test('copies that all lie before the saved sync start are dropped at start, with a warning', async () => {
  const { names, logs } = await copiesAfterStart(16, [9, 10]);
  assert.deepEqual(names, []);
  assert.ok(logs.some((m) => m.includes('dropped the copies of an earlier start') && m.includes(formatLogName(10, 'delta'))), logs.join('\n'));
});

void test('copies that reach the saved start\'s log stay', async () => {
  const { names } = await copiesAfterStart(10, [10, 11]);
  assert.deepEqual(names, [formatLogName(10, 'delta'), formatLogName(11, 'delta')]);
});

void test('a sync that begins again from a new source drops the copy of the earlier start, fetches from the new one and ends consistent and byte-exact', { timeout: 30_000 }, async () => {
  const primary = await Primary.open('delta', 44);
  await primary.append(12);
  await primary.sync();
  const fetchServer = await Server.listen('delta', primary.source);
  const zeroes = new MemStorage();
  const sourceDevice = await zeroes.open('device', 'create');
  await sourceDevice.write(Buffer.alloc(deviceSizeBytes), 0);
  const endBytes = primary.durableBytes();
  const newStart = { logNumber: 1, logHost: 'delta', offsetBytes: 0, nextSeq: 1n };
  const syncHost = await SourceHost.listen((link) => {
    SyncSourceSession.serve(link, {
      resolve: (name) => (name === fetchResource ? { device: sourceDevice, sizeBytes: deviceSizeBytes, startPosition: () => newStart, endPosition: () => ({ logNumber: 1, logHost: 'delta', offsetBytes: endBytes, nextSeq: 13n }) } : undefined),
      digestSeed: () => 0x44n,
    });
  }, 'delta');
  // The member's state from an earlier start of its sync, from zeta (a primary before delta): a copy of zeta's log 3.
  const mem = new MemStorage();
  const stale = formatLogName(3, 'zeta');
  const copy = await mem.open(stale, 'create');
  await copy.write(encodeRecord({ kind: 'zeroes', seq: 50n, lamport: 50n, offsetBytes: 0, lengthBytes: 4096 }, 0), 0);
  await copy.sync();
  await copy.close();
  await saveSyncState(mem, { resource: fetchResource, sizeBytes: deviceSizeBytes, nextBytes: 0, startPosition: { logNumber: 3, logHost: 'zeta', offsetBytes: 0, nextSeq: 50n }, endPosition: undefined, sourceHost: 'zeta' });
  await mem.syncDir();
  const device = await mem.open('device', 'create');
  await device.write(Buffer.alloc(deviceSizeBytes), 0);
  const logs: string[] = [];
  const replica = await Replica.open({
    resource: fetchResource, host: 'beta', storage: mem, device, sizeBytes: deviceSizeBytes, deviceBytes: deviceSizeBytes,
    primary: () => 'delta',
    dial: (_host, channel) => (channel === 'sync' ? syncHost.dial() : dialer('beta', 'delta', fetchServer)()),
    clock: systemClock, timers: systemTimers, random: new Random(45),
    switches: { fetch: true, replay: true, sync: true },
    log: (_level, msg) => logs.push(msg),
    onChange: () => undefined,
    fetchRetryMs: 200,
  });
  try {
    await replica.start();
    await waitFor('the member is consistent', () => replica.consistent, 20_000, 20);
    const names = (await mem.list()).filter((n) => n.startsWith('log-'));
    assert.deepEqual(names, [primary.logName(1)], logs.join('\n'));
    assert.ok(logs.some((m) => m.includes('dropped the copies of an earlier start') && m.includes(stale)), logs.join('\n'));
    assert.ok(mem.image('device')!.equals(primary.model), 'the device equals the primary\'s history');
  } finally {
    await replica.stop();
    await device.close();
    await fetchServer.close();
    await syncHost.close();
  }
});
