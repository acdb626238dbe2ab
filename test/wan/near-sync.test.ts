/**
 * Near-sync mode between real daemons over an emulated link (20 ms round trip): with it
 * off a FLUSH never waits for the secondary; with it on, FLUSH and FUA wait while the
 * secondary's marsd is stopped (SIGSTOP, by PID: it can make nothing durable) and are
 * answered once it runs again; when it stays stopped past the timeout they are answered,
 * the primary shows the fallback (view, view --json, status, events, its log), returns to
 * near-sync once the secondary has caught up, and the secondary ends byte-exact.
 *
 * Reproduce with WAN_SEED=N.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { adm } from '../support/adm.js';
import { waitFor } from '../support/processes.js';
import { wanSpec } from '../support/link-emulator.js';
import { readDeviceImage } from '../support/prefix-checker.js';
import { digest, MiB, mustAdm, readExport, status, waitCaughtUp } from '../support/replication-helpers.js';
import { startWanCluster, startWanResource, stopWanCluster, wanDevice, type WanCluster } from '../support/wan-helpers.js';
import type { TestHost } from '../support/cluster-helpers.js';

const seed = Number(process.env['WAN_SEED'] ?? 20_261_208);
const resource = 'r1';
const sizeBytes = 8 * MiB;
const timeoutMs = 4_000;

interface SyncModeJson {
  mode: string;
  state: string | null;
  members: number;
  timeoutMs: number;
  waiting: number;
  fallbacks: number;
  reason: string | null;
}

async function syncMode(host: TestHost): Promise<SyncModeJson> {
  const json = JSON.parse(await mustAdm(host, 'view', resource, '--json')) as { resources: { syncMode: SyncModeJson }[] };
  return json.resources[0]!.syncMode;
}

/** A promise's outcome, to look at without waiting for it. */
function track<T>(p: Promise<T>): { done: () => boolean; result: Promise<T> } {
  let settled = false;
  const result = p.finally(() => (settled = true));
  return { done: () => settled, result };
}

void describe('near-sync mode over an emulated link', { timeout: 180_000 }, () => {
  let cluster: WanCluster | undefined;
  let client: NbdClient | undefined;
  const random = new Random(seed);
  const alpha = () => cluster!.hosts[0]!;
  const beta = () => cluster!.hosts[1]!;
  let stopped = false;
  const stopBeta = (): void => {
    process.kill(beta().daemon!.child.pid!, 'SIGSTOP');
    stopped = true;
  };
  const continueBeta = (): void => {
    process.kill(beta().daemon!.child.pid!, 'SIGCONT');
    stopped = false;
  };
  const block = (): Buffer => {
    const data = Buffer.alloc(64 * 1024);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(random.uint32(), i);
    return data;
  };
  const offset = (): number => random.int(sizeBytes / (64 * 1024)) * 64 * 1024;

  before(async () => {
    cluster = await startWanCluster('mars-wan-nearsync', 2, wanSpec(20, 100), seed, [], (c) => (cluster = c));
    client = await startWanResource(cluster, resource, sizeBytes, seed);
    await mustAdm(beta(), 'join-resource', resource, wanDevice(cluster, 'beta'));
    await waitCaughtUp(alpha(), beta(), resource, 90_000);
  });

  after(async () => {
    if (stopped) continueBeta();
    await stopWanCluster(cluster, client);
  });

  void test('bad input gets one line and exit 1', async () => {
    for (const args of [
      ['near-sync', '--members', '0'],
      ['near-sync', '--members', '2'],
      ['near-sync', '--members', 'two'],
      ['near-sync', '--timeout-ms', '-5'],
      ['near-sync', '--timeout-ms', 'soon'],
      ['sometimes'],
    ]) {
      const r = await adm(alpha().dir, 'set-sync-mode', resource, ...args);
      assert.equal(r.code, 1, `set-sync-mode ${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^marsadm: bad /);
    }
    assert.equal((await syncMode(alpha())).mode, 'async', 'nothing changed');
  });

  void test('asynchronous (the default): a FLUSH is answered while the secondary is stopped', async () => {
    assert.deepEqual([(await syncMode(alpha())).mode, (await syncMode(alpha())).state], ['async', 'off']);
    stopBeta();
    try {
      await client!.write(offset(), block());
      await client!.flush();
      await client!.write(offset(), block(), { fua: true });
      assert.ok(stopped, 'answered while beta was stopped');
    } finally {
      continueBeta();
    }
  });

  void test('near-sync: FLUSH and FUA wait while the secondary cannot make the records durable, and are answered once it can', async () => {
    assert.equal((await mustAdm(alpha(), 'set-sync-mode', resource, 'near-sync', '--members', '1', '--timeout-ms', String(timeoutMs))).trim(), `resource ${resource}: near-sync, 1 member(s), timeout ${timeoutMs} ms`);
    await waitFor('beta to know the sync mode', async () => (await syncMode(beta())).mode === 'near-sync', 20_000, 100);
    assert.equal((await syncMode(alpha())).state, 'near-sync');
    // With the secondary running a flush is answered (it acknowledged), and its copy then holds the log.
    await client!.write(offset(), block());
    await client!.flush();
    const logAtFlush = (await status(alpha(), resource)).logger!.logPosition;
    const fetched = (await status(beta(), resource)).replica!.fetch;
    assert.ok(fetched.localBytes >= logAtFlush.offsetBytes, `beta holds ${fetched.localBytes} bytes of the log once the flush is answered, alpha's log is at ${logAtFlush.offsetBytes}`);

    stopBeta();
    let flush: ReturnType<typeof track<void>>;
    let fua: ReturnType<typeof track<void>>;
    try {
      await client!.write(offset(), block());
      flush = track(client!.flush());
      fua = track(client!.write(offset(), block(), { fua: true }));
      await waitFor('the flush to wait on alpha', async () => (await syncMode(alpha())).waiting >= 2, 10_000, 50);
      assert.equal(flush.done(), false, 'the FLUSH waits while beta is stopped');
      assert.equal(fua.done(), false, 'the FUA write waits while beta is stopped');
    } finally {
      continueBeta();
    }
    await flush.result;
    await fua.result;
    const mode = await syncMode(alpha());
    assert.equal(mode.fallbacks, 0, 'answered because beta acknowledged, not by the timeout');
    assert.equal(mode.state, 'near-sync');
  });

  void test('after the timeout the flush is answered, the fallback is shown, near-sync returns once the secondary catches up, nothing is lost', async (t) => {
    stopBeta();
    try {
      await client!.write(offset(), block());
      const startedMs = Date.now();
      await client!.flush();
      const tookMs = Date.now() - startedMs;
      t.diagnostic(`flush answered after ${tookMs} ms with beta stopped (timeout ${timeoutMs} ms)`);
      assert.ok(stopped && tookMs >= timeoutMs - 100, `answered by the timeout (${tookMs} ms)`);
      const mode = await syncMode(alpha());
      assert.equal(mode.state, 'fallen-back');
      assert.equal(mode.fallbacks, 1);
      assert.match(mode.reason ?? '', /0 of 1 member\(s\) acknowledged/);
      assert.match(await mustAdm(alpha(), 'view', resource), /sync-mode: near-sync \(1 member\(s\), timeout 4000 ms\): FALLEN BACK to asynchronous/);
      assert.match(await mustAdm(alpha(), 'status', resource), /NEAR-SYNC FALLEN BACK on alpha/);
      assert.match(await mustAdm(alpha(), 'events', resource, '--now'), /exists resource name:r1 .* sync-mode:fallen-back/);
      assert.match(alpha().daemon!.stderr(), /r1 fell back from near-sync to asynchronous replication/);
      // Fallen back: flushes are answered without waiting, beta still stopped.
      await client!.write(offset(), block(), { fua: true });
      await client!.flush();
      assert.ok(stopped);
    } finally {
      continueBeta();
    }
    await waitFor('near-sync to return', async () => (await syncMode(alpha())).state === 'near-sync', 60_000, 100);
    assert.match(alpha().daemon!.stderr(), /r1 is near-sync again/);
    await waitCaughtUp(alpha(), beta(), resource, 60_000);
    const primary = await readExport(client!, sizeBytes);
    assert.equal(digest(await readDeviceImage(wanDevice(cluster!, 'beta'), sizeBytes)), digest(primary), `beta equals alpha's export (WAN_SEED=${seed})`);
    assert.equal((await mustAdm(alpha(), 'set-sync-mode', resource, 'async')).trim(), `resource ${resource}: async`);
    assert.equal((await syncMode(alpha())).state, 'off');
  });
});
