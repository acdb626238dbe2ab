/**
 * The pure parts of the exporter: lag seconds from log stamps (a quiet primary is no
 * lag), byte distances across log files, and the bounded history ring.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { observationOf, type Measured } from '../../src/metrics/observation.js';
import { logBytesBetween as bytesBetween } from '../../src/log/names.js';
import { History, Ring } from '../../src/metrics/history.js';
import { MarsMetrics } from '../../src/metrics/prometheus.js';
import type { HostStatus } from '../../src/daemon/daemon.js';
import type { LoggerStatus } from '../../src/logger/logger.js';

function secondaryStatus(replayRestBytes: number, fetchRestBytes: number | null): HostStatus {
  return {
    host: 'beta',
    clusterId: 'c',
    listen: '127.0.0.2:7777',
    nbd: '127.0.0.2:10809',
    resources: [
      {
        name: 'r0',
        sizeBytes: 1,
        devicePath: '/d',
        primary: 'alpha',
        state: 'serving',
        role: 'secondary',
        failure: undefined,
        logger: undefined,
        recovery: undefined,
        logFiles: [{ name: 'log-000000001-alpha', sizeBytes: 1000 }],
        replica: {
          consistent: true,
          switches: { fetch: true, replay: true, sync: true },
          sync: null,
          fetch: { state: 'caught-up', source: 'alpha', logName: 'log-000000001-alpha', localBytes: 1000, restBytes: fetchRestBytes, rateBytesPerS: 0, error: null },
          replay: { state: 'idle', position: { logNumber: 1, logHost: 'alpha', offsetBytes: 1000 - replayRestBytes, nextSeq: '5' }, restBytes: replayRestBytes, rateBytesPerS: 0, error: null },
        },
        members: [],
        logDeleteHeldBy: null,
        splitBrain: null,
        space: null,
        emergency: null,
      },
    ],
  };
}

function lagOf(status: HostStatus, m: Measured, nowMs: number): number | null {
  return observationOf({ status, hosts: [], nowMs, measured: new Map([['r0', m]]) }).resources[0]!.lagS;
}

void describe('observation', () => {
  void test('lag seconds is the age of the oldest unreplayed record, and 0 when nothing is left to replay however old the last write', () => {
    const nowMs = 1_000_000;
    assert.equal(lagOf(secondaryStatus(100, 0), { oldestUnappliedStampUs: BigInt(nowMs - 7_500) * 1000n }, nowMs), 7.5);
    assert.equal(lagOf(secondaryStatus(0, 0), { oldestUnappliedStampUs: BigInt(nowMs - 7_500) * 1000n }, nowMs), 0);
    assert.equal(lagOf(secondaryStatus(0, 0), {}, nowMs), 0);
    assert.equal(lagOf(secondaryStatus(0, 50), { behindSinceMs: nowMs - 3_000 }, nowMs), 3);
    assert.equal(lagOf(secondaryStatus(100, 0), { oldestUnappliedStampUs: BigInt(nowMs + 5_000) * 1000n }, nowMs), 0, 'a stamp ahead of this clock is no negative lag');
  });

  void test('a secondary that has not heard from its primary exports no fetch lag and no lag in seconds, never 0', async () => {
    const nowMs = 1_000_000;
    const unheard = secondaryStatus(0, null);
    unheard.resources[0]!.replica!.fetch.state = 'source-unreachable';
    const r = observationOf({ status: unheard, hosts: [], nowMs, measured: new Map([['r0', { unknown: true }]]) }).resources[0]!;
    assert.deepEqual(r.lagBytes, { replay: 0 }, 'no fetch figure');
    assert.equal(r.lagS, null);
    // With an unreplayed record here, its age is the lag whatever fetch does not know.
    assert.equal(lagOf(secondaryStatus(100, null), { oldestUnappliedStampUs: BigInt(nowMs - 4_000) * 1000n }, nowMs), 4);
    const metrics = new MarsMetrics('beta');
    metrics.update({ ...observationOf({ status: unheard, hosts: [], nowMs, measured: new Map([['r0', { unknown: true }]]) }) });
    const text = await metrics.metrics();
    assert.doesNotMatch(text, /^mars_resource_lag_seconds\{/m, 'no lag sample');
    assert.doesNotMatch(text, /^mars_resource_lag_bytes\{[^}]*stage="fetch"/m, 'no fetch lag sample');
    assert.match(text, /^mars_resource_lag_bytes\{[^}]*stage="replay"[^}]*\} 0$/m, 'the figures that are known are there');
  });

  void test('the primary shows writeback lag in bytes and no lag in seconds: it is the source', () => {
    const base = secondaryStatus(0, 0);
    const pos = (offsetBytes: number): { logNumber: number; logHost: string; offsetBytes: number; nextSeq: bigint } => ({ logNumber: 1, logHost: 'alpha', offsetBytes, nextSeq: 1n });
    const logger: LoggerStatus = { logPosition: pos(1000), writtenBack: pos(400), shadowBytes: 0, shadowExtents: 0, writesWaiting: 0, appendedRecords: 0, appendedBytes: 0, writebackRounds: 0, failure: undefined, positionError: undefined, mode: 'logging', emergencyReason: undefined, holeLogNumber: 0 };
    const primary = { ...base, resources: [{ ...base.resources[0]!, role: 'primary' as const, replica: undefined, logger }] };
    const r = observationOf({ status: primary, hosts: [], nowMs: 1_000_000, measured: new Map([['r0', { oldestUnappliedStampUs: 1n }]]) }).resources[0]!;
    assert.deepEqual(r.lagBytes, { writeback: 600 });
    assert.equal(r.lagS, 0);
  });

  void test('bytes between two positions count the rest of the first log, whole logs between, and the start of the last', () => {
    const files = [
      { name: 'log-000000001-alpha', sizeBytes: 100 },
      { name: 'log-000000002-alpha', sizeBytes: 200 },
      { name: 'log-000000003-alpha', sizeBytes: 300 },
    ];
    assert.equal(bytesBetween({ logNumber: 1, offsetBytes: 40 }, { logNumber: 3, offsetBytes: 10 }, files), 60 + 200 + 10);
    assert.equal(bytesBetween({ logNumber: 2, offsetBytes: 50 }, { logNumber: 2, offsetBytes: 150 }, files), 100);
    assert.equal(bytesBetween({ logNumber: 3, offsetBytes: 0 }, { logNumber: 2, offsetBytes: 150 }, files), 0);
  });

  void test('a ring keeps the last `capacity` items in order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.array(fc.integer(), { maxLength: 100 }), (capacity, items) => {
        const ring = new Ring<number>(capacity);
        for (const i of items) ring.push(i);
        assert.deepEqual(ring.toArray(), items.slice(Math.max(0, items.length - capacity)));
        assert.equal(ring.size, Math.min(capacity, items.length));
      }),
      { seed: 5 },
    );
  });

  void test('history is bounded in samples and resources, and forgets a resource that went away', () => {
    const history = new History(3, 1);
    const status = secondaryStatus(0, 0);
    for (let t = 0; t < 5; t++) history.add(observationOf({ status, hosts: [], nowMs: t, measured: new Map() }));
    assert.deepEqual(history.samples('r0').map((s) => s.tMs), [2, 3, 4]);
    const two = { ...status, resources: [status.resources[0]!, { ...status.resources[0]!, name: 'r1' }] };
    history.add(observationOf({ status: two, hosts: [], nowMs: 5, measured: new Map() }));
    assert.deepEqual(Object.keys(history.toJson()), ['r0'], 'no room for a second resource');
    history.add(observationOf({ status: { ...status, resources: [] }, hosts: [], nowMs: 6, measured: new Map() }));
    assert.deepEqual(history.toJson(), {});
  });
});
