/**
 * Bandwidth limits (src/daemon/bandwidth.ts): rates are parsed strictly; host and resource
 * limits combine to the tighter one; sync yields while a fetch is behind; and a fetch
 * client paced by a limit never receives more than rate × time plus one window, over real
 * TCP in-process (an upper bound: a slow machine only receives less).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, systemClock } from '../../src/core/clock.js';
import { MarsError } from '../../src/core/errors.js';
import { LocalCopies } from '../../src/fetch/index.js';
import { fetchWindowBytes } from '../../src/fetch/limits.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { Bandwidth, fetchBehindBytes, fetchWindowBytesMin, parseRate, rateBytesPerSMax, syncYieldMs } from '../../src/daemon/bandwidth.js';
import { dialer, newClient, Primary, Server } from '../fetch/helpers.js';
import { waitFor } from '../support/wait.js';

const KiB = 1024;
const MiB = 1024 * KiB;

void test('a rate is bytes per second with K, M or G, or unlimited; zero, negative and non-numeric rates are refused in one line', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(['', 1], ['K', KiB], ['M', MiB], ['G', 1024 * MiB], ['k', KiB], ['m', MiB]), (n, [suffix, unit]) => {
      fc.pre(n * (unit as number) <= rateBytesPerSMax);
      assert.equal(parseRate(`${n}${suffix as string}`, 'fetch rate'), n * (unit as number));
    }),
  );
  assert.equal(parseRate('unlimited', 'fetch rate'), 0);
  assert.equal(parseRate('1.5M', 'fetch rate'), 1.5 * MiB);
  for (const bad of ['0', '0M', '-5', '-1M', 'fast', '', '1X', '1e9', 'NaN', '99999999999999G']) {
    assert.throws(
      () => parseRate(bad, '--fetch-rate'),
      (err: unknown) => err instanceof MarsError && err.code === 'EINVAL' && err.message.startsWith(`bad --fetch-rate '${bad}'`) && !err.message.includes('\n'),
      bad,
    );
  }
  assert.match((() => { try { parseRate('0', 'x'); return ''; } catch (err) { return (err as Error).message; } })(), /pause-fetch/);
});

void test('the tighter of the host and resource limits paces; a limited fetch lets the source only a small window ahead', async () => {
  const clock = new ManualClock(0);
  const bw = new Bandwidth(clock, { fetch: 10 * MiB });
  const r1 = bw.pacer('r1', 'fetch');
  const r2 = bw.pacer('r2', 'fetch');
  assert.equal(r1.limitBytesPerS(), 10 * MiB);
  await bw.setLimit('r1', 'fetch', MiB);
  assert.equal(r1.limitBytesPerS(), MiB);
  assert.equal(r2.limitBytesPerS(), 10 * MiB);
  assert.equal(r1.windowBytes(), MiB / 4);
  // Charged bytes make a debt at the tightest rate: 2 MiB at 1 MiB/s is a wait of about 2 s.
  r1.take(2 * MiB);
  const wait = r1.delayMs();
  assert.ok(wait > 1800 && wait <= 2000, `wait ${wait} ms`);
  clock.advance(wait);
  assert.equal(r1.delayMs(), 0);
  // The host bucket is shared: r1's bytes count against r2 too.
  r1.take(20 * MiB);
  assert.ok(r2.delayMs() > 0, 'the host limit is shared by every resource');
  await bw.setLimit(undefined, 'fetch', 0);
  await bw.setLimit('r1', 'fetch', 0);
  clock.advance(10_000);
  assert.equal(r2.limitBytesPerS(), 0);
  assert.equal(r2.windowBytes(), fetchWindowBytes);
  await bw.setLimit('r1', 'fetch', 1);
  assert.equal(r1.windowBytes(), fetchWindowBytesMin);
  assert.deepEqual(bw.limits(), { host: { fetch: 0, sync: 0 }, resources: { r1: { fetch: 1, sync: 0 } } });
});

void test('sync yields while a fetch of the host is behind, and goes on once it has caught up', () => {
  const bw = new Bandwidth(new ManualClock(0));
  const sync = bw.pacer('r2', 'sync');
  assert.equal(sync.delayMs(), 0);
  bw.noteFetchBehind('r1', fetchBehindBytes / 2);
  assert.equal(sync.delayMs(), 0, 'a little behind: sync goes on');
  bw.noteFetchBehind('r1', fetchBehindBytes + 1);
  assert.equal(sync.delayMs(), syncYieldMs);
  assert.equal(bw.pacer('r1', 'fetch').delayMs(), 0, 'fetch itself never waits for sync');
  bw.noteFetchBehind('r1', 0);
  assert.equal(sync.delayMs(), 0);
});

void test('a fetch paced at 2 MiB/s never runs ahead of its limit by more than a window, and fetches everything', { timeout: 60_000 }, async () => {
  const rate = 2 * MiB;
  const primary = await Primary.open('alpha', 31);
  while (primary.durableBytes() < 5 * MiB) {
    await primary.append(64, 64 * KiB);
    await primary.sync();
  }
  const total = primary.durableBytes();
  const server = await Server.listen('alpha', primary.source);
  const local = new MemStorage();
  const bw = new Bandwidth(systemClock, { fetch: rate });
  const pacer = bw.pacer('r1', 'fetch');
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', server), 32, { pacer });
  const name = primary.logName(1);
  const startedMs = Date.now();
  const excess: string[] = [];
  const sampler = setInterval(() => {
    const got = local.image(name)?.length ?? 0;
    const allowed = (rate * (Date.now() - startedMs)) / 1000 + pacer.windowBytes() + fetchWindowBytesMin + 128 * KiB;
    if (got > allowed) excess.push(`${got} bytes after ${Date.now() - startedMs} ms (allowed ${Math.round(allowed)})`);
  }, 20);
  try {
    client.start();
    await waitFor('the whole log arrives', () => (local.image(name)?.length ?? 0) === total, 30_000, 5);
    const tookMs = Date.now() - startedMs;
    assert.deepEqual(excess, []);
    assert.ok(tookMs >= ((total - pacer.windowBytes() - fetchWindowBytesMin) / rate) * 1000 - 100, `${total} bytes took ${tookMs} ms at ${rate} B/s`);
    assert.ok(local.image(name)?.equals(primary.storage.image(name)!.subarray(0, total)), 'the copy equals the log');
  } finally {
    clearInterval(sampler);
    await client.stop();
    await server.close();
  }
});
