import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalCopies, Replayer, verifyCopy } from '../../src/fetch/index.js';
import { savePosition } from '../../src/replay/position.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { assertCopiesEqual, deviceSizeBytes, dialer, newClient, Primary, Server, sleep } from './helpers.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 30_000;

void test('a full local log directory pauses fetch with a clear state; it resumes and completes when space returns', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 31, 256 * 1024);
  for (let round = 0; round < 10; round++) {
    await primary.append(20);
    await primary.sync();
  }
  const server = await Server.listen('alpha', primary.source);
  const local = new MemStorage({ capacityBytes: 300_000 });
  const copies = await LocalCopies.open(local);
  const client = newClient(copies, dialer('beta', 'alpha', server), 32);
  const state = new MemStorage();
  const device = await state.open('device', 'create');
  await device.write(Buffer.alloc(deviceSizeBytes), 0);
  const replayer = new Replayer({
    source: copies.source,
    device,
    deviceSizeBytes,
    start: { logNumber: 1, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n },
    persist: (p) => savePosition(state, 'beta', p),
    onDamage: (name, offsetBytes) => client.reportDamage(name, offsetBytes),
  });
  try {
    client.start();
    replayer.start();
    await waitFor('paused-no-space', () => client.status().state === 'paused-no-space', 10_000, 5);
    const paused = client.status();
    assert.equal(paused.error?.code, 'ENOSPC');
    assert.match(paused.error.message, /no space/);
    assert.ok((paused.fetchRestBytes ?? 0) > 0, 'fetch-rest shows what is missing');
    await sleep(100); // retries go on, and fail
    assert.equal(client.status().state, 'paused-no-space');
    // The copy being fetched holds only whole verified records, a prefix of the origin's.
    const last = copies.last!;
    const file = await local.open(last.name, 'read');
    const check = await verifyCopy(file);
    await file.close();
    assert.equal(check.sizeBytes, check.verifiedBytes, 'no partial record in the copy');
    assert.ok(local.image(last.name)!.equals(primary.storage.image(last.name)!.subarray(0, check.sizeBytes)));
    local.capacityBytes = Number.MAX_SAFE_INTEGER;
    await waitFor('resumed and caught up', () => client.status().state === 'caught-up' && client.status().fetchRestBytes === 0 && copies.last?.logNumber === primary.writer.position().logNumber, 10_000, 5);
    await assertCopiesEqual(primary.storage, local, 'after space returned');
    await waitFor('replayed', () => replayer.status().state === 'caught-up' && replayer.status().appliedPosition.offsetBytes === primary.durableBytes() && replayer.status().appliedPosition.logNumber === primary.writer.position().logNumber, 10_000, 5);
    assert.ok(state.image('device')!.equals(primary.model), 'nothing was replayed wrong');
  } finally {
    await replayer.stop();
    await client.stop();
    await server.close();
  }
});

void test('a log is fetched from any member that holds it: a secondary serves its verified copies to a third host', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 33, 64 * 1024);
  const alpha = await Server.listen('alpha', primary.source);
  const betaLocal = new MemStorage();
  const betaCopies = await LocalCopies.open(betaLocal);
  const beta = newClient(betaCopies, dialer('beta', 'alpha', alpha), 34);
  const betaServer = await Server.listen('beta', betaCopies.source);
  const gammaLocal = new MemStorage();
  const gamma = newClient(await LocalCopies.open(gammaLocal), dialer('gamma', 'beta', betaServer), 35);
  const failures: string[] = [];
  try {
    beta.start();
    gamma.start();
    for (let round = 0; round < 30; round++) {
      await primary.append(1 + primary.random.int(8));
      await primary.sync();
      // gamma never holds more than beta has verified and synced
      for (const [name, bytes] of [...(await betaLocal.list())].map((n) => [n, gammaLocal.image(n)] as const)) {
        if (bytes !== undefined && !betaLocal.image(name)!.subarray(0, bytes.length).equals(bytes)) failures.push(name);
      }
      await sleep(primary.random.int(3));
    }
    const done = (): boolean => gamma.status().state === 'caught-up' && gamma.status().fetchRestBytes === 0 && gamma.status().logName === primary.logName() && gamma.status().localBytes === primary.durableBytes();
    await waitFor('gamma caught up through beta', done, 20_000, 5);
    assert.deepEqual(failures, []);
    await assertCopiesEqual(primary.storage, gammaLocal, 'gamma via beta');
  } finally {
    await gamma.stop();
    await beta.stop();
    await betaServer.close();
    await alpha.close();
  }
});
