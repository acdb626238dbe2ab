/**
 * `marsd --metrics` on a real three-host cluster under writes: every one-hot state sums to
 * 1, NBD requests are counted, lag in bytes and seconds rises while a secondary's replay
 * is paused and falls back to 0 after it resumes, and stays 0 while the primary is quiet.
 * The listener's edges: a taken port or a bad address is one line and exit 1, only GET is
 * served, at most httpConnectionsMax connections are open at once, and event streams
 * dropped by their readers free their places.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Random } from '../../src/core/random.js';
import { connect, type Socket } from 'node:net';
import { eventStreamsMax, httpConnectionsMax } from '../../src/metrics/limits.js';
import { adm } from '../support/adm.js';
import { cleanup } from '../support/cluster-helpers.js';
import { marsdPath, run, tempDir, removeDir, waitFor } from '../support/processes.js';
import { MiB, mustAdm, waitCaughtUp } from '../support/replication-helpers.js';
import { scrape, startObservedResource, valueOf, writeLoad, type ObservedHost, type Sample } from '../support/observe-helpers.js';

const sizeBytes = 16 * MiB;
const seed = 71;

/** For each (resource, peer), the sum of a one-hot gauge's series. */
function oneHotSums(samples: readonly Sample[], name: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const s of samples.filter((x) => x.name === name)) {
    const key = `${s.labels['resource']}/${s.labels['peer']}`;
    sums.set(key, (sums.get(key) ?? 0) + s.value);
  }
  return sums;
}

void describe('marsd --metrics', { timeout: 240_000 }, () => {
  let root = '';
  let hosts: ObservedHost[] = [];
  const random = new Random(seed);

  before(async () => {
    ({ root, hosts } = await startObservedResource('mars-metrics', sizeBytes, seed));
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('every host shows each member\'s states one-hot and the primary counts its NBD requests', async () => {
    const load = writeLoad(hosts[0]!, 'r0', sizeBytes, random);
    try {
      await waitFor('writes to be counted on alpha', async () => (valueOf(await scrape(hosts[0]!), 'mars_nbd_requests_total', { resource: 'r0', op: 'write' }) ?? 0) > 0, 20_000, 200);
      for (const h of hosts) {
        const samples = await scrape(h);
        assert.equal(valueOf(samples, 'mars_up', { host: h.name }), 1);
        for (const metric of ['mars_resource_disk_state', 'mars_resource_repl_state', 'mars_resource_role']) {
          const sums = oneHotSums(samples, metric);
          assert.deepEqual([...sums.keys()].sort(), ['r0/alpha', 'r0/beta', 'r0/gamma'], `${metric} on ${h.name}`);
          for (const [key, sum] of sums) assert.equal(sum, 1, `${metric} ${key} on ${h.name}`);
        }
        assert.equal(valueOf(samples, 'mars_resource_role', { peer: 'alpha', role: 'Primary' }), 1);
        assert.equal(valueOf(samples, 'mars_resource_disk_state', { peer: 'alpha', state: 'UpToDate' }), 1);
        for (const peer of ['alpha', 'beta', 'gamma']) assert.equal(valueOf(samples, 'mars_host_alive', { peer }), 1, `${peer} alive seen from ${h.name}`);
        assert.equal(valueOf(samples, 'mars_resource_split_brain', { resource: 'r0' }), 0);
      }
      const alpha = await scrape(hosts[0]!);
      assert.ok((valueOf(alpha, 'mars_nbd_bytes_total', { resource: 'r0', op: 'write' }) ?? 0) >= 4096);
      assert.ok((valueOf(alpha, 'mars_nbd_request_duration_seconds_count', { resource: 'r0', op: 'write' }) ?? 0) > 0);
      assert.ok((valueOf(alpha, 'mars_log_position_offset_bytes', { stage: 'log_end' }) ?? 0) > 0);
      const beta = await scrape(hosts[1]!);
      const consistent = ['UpToDate', 'OutDated'].map((state) => valueOf(beta, 'mars_resource_disk_state', { peer: 'beta', state }) ?? 0);
      assert.equal(consistent[0]! + consistent[1]!, 1, 'beta is consistent: UpToDate, or OutDated while behind the load');
      assert.ok(valueOf(beta, 'mars_log_position_log_number', { stage: 'replayed' }) !== undefined);
    } finally {
      await load.stop();
    }
  });

  void test('lag rises in bytes and seconds while replay is paused, is 0 after resume, and stays 0 while the primary is quiet', async () => {
    const [alpha, beta, gamma] = [hosts[0]!, hosts[1]!, hosts[2]!];
    await mustAdm(beta, 'pause-replay', 'r0');
    const load = writeLoad(alpha, 'r0', sizeBytes, random);
    let last: Sample[] = [];
    try {
      await waitFor(
        'beta to show replay lag over 2 s',
        async () => {
          last = await scrape(beta);
          return (valueOf(last, 'mars_resource_lag_bytes', { stage: 'replay' }) ?? 0) > 0 && (valueOf(last, 'mars_resource_lag_seconds', { resource: 'r0' }) ?? 0) > 2;
        },
        30_000,
        250,
      ).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; last lag: ${JSON.stringify(last.filter((s) => s.name.startsWith('mars_resource_lag')))}`);
      });
    } finally {
      await load.stop();
    }
    await mustAdm(beta, 'resume-replay', 'r0');
    await waitCaughtUp(alpha, beta, 'r0', 60_000);
    await waitCaughtUp(alpha, gamma, 'r0', 60_000);
    const caughtUpMs = Date.now();
    for (const h of [beta, gamma]) {
      await waitFor(`${h.name} to show no lag`, async () => {
        last = await scrape(h);
        return ['fetch', 'replay'].every((stage) => valueOf(last, 'mars_resource_lag_bytes', { stage }) === 0) && valueOf(last, 'mars_resource_lag_seconds', { resource: 'r0' }) === 0;
      }, 20_000, 200);
    }
    // The last write is now seconds old: a lag taken from the age of the last replayed record would show it.
    await new Promise((r) => setTimeout(r, Math.max(0, 2_500 - (Date.now() - caughtUpMs))));
    for (const h of [alpha, beta, gamma]) assert.equal(valueOf(await scrape(h), 'mars_resource_lag_seconds', { resource: 'r0' }), 0, `quiet primary: no lag on ${h.name}`);
  });

  void test('a taken port or a bad address: one line, exit 1', async () => {
    const dir = await tempDir('mars-metrics-bad');
    try {
      assert.equal((await adm(dir, 'create-cluster', '--host', 'omega', '--listen', '127.0.0.9:7777')).code, 0);
      const cases: [string, RegExp][] = [
        [hosts[0]!.metrics, /^marsd: cannot listen for metrics on 127\.0\.0\.1:\d+: address in use$/],
        ['127.0.0.1:99999', /^marsd: bad port in '127\.0\.0\.1:99999'$/],
        ['nowhere', /^marsd: bad address 'nowhere': expected IP:PORT$/],
        ['192.0.2.1:9100', /^marsd: cannot listen for metrics on 192\.0\.2\.1:9100: not an address of this host$/],
      ];
      // Side by side: each stops before its daemon starts (nothing in the directory is written),
      // and each loads all of marsd first.
      const results = await Promise.all(cases.map(([address]) => run(marsdPath, ['--dir', dir, '--nbd', '127.0.0.9:0', '--metrics', address], { timeoutMs: 30_000 })));
      for (const [i, r] of results.entries()) {
        const [address, expected] = cases[i]!;
        assert.equal(r.code, 1, `--metrics ${address}: ${r.stderr}`);
        assert.match(r.stderr.trim(), expected);
      }
    } finally {
      await removeDir(dir);
    }
  });

  void test('only GET is served, connections are limited, and event streams dropped mid-stream free their places', async () => {
    const base = `http://${hosts[0]!.metrics}`;
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await fetch(`${base}/metrics`, { method });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
    }
    assert.equal((await fetch(`${base}/nothing`)).status, 404);
    for (let i = 0; i < eventStreamsMax * 2; i++) {
      const controller = new AbortController();
      const res = await fetch(`${base}/api/events`, { signal: controller.signal });
      assert.equal(res.status, 200, `stream ${i}`);
      const reader = res.body!.getReader();
      const first = await reader.read();
      assert.match(Buffer.from(first.value ?? new Uint8Array()).toString(), /^data: \{/);
      controller.abort();
      await reader.cancel().catch(() => undefined);
    }
    // At most httpConnectionsMax connections: one more is closed at once; once they go, all is as before.
    const [ip, port] = hosts[0]!.metrics.split(':') as [string, string];
    const idle: Socket[] = [];
    for (let i = 0; i < httpConnectionsMax; i++) {
      const socket = connect(Number(port), ip);
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      idle.push(socket);
    }
    const extra = connect(Number(port), ip);
    extra.on('error', () => undefined);
    let answer = '';
    extra.on('data', (d: Buffer) => (answer += d.toString()));
    extra.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((resolve) => extra.once('close', () => resolve()));
    assert.equal(answer, '', 'a connection over the limit is closed unanswered');
    for (const socket of idle) socket.destroy();
    await waitFor('the listener to take connections again', async () => (await fetch(`${base}/metrics`).then((r) => r.status, () => 0)) === 200, 10_000, 100);
    // A client that sent half a request holds no one else up.
    const stalled = request(`${base}/metrics`, { method: 'GET', headers: { 'x-slow': '1' } });
    stalled.on('error', () => undefined);
    stalled.flushHeaders();
    assert.equal((await fetch(`${base}/metrics`)).status, 200);
    stalled.destroy();
  });
});
