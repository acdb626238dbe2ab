/**
 * A sync session that began before the primary entered emergency mode and goes on in it
 * copies blocks that direct writes change meanwhile, and no log records those writes. Its
 * end must not be the last logged position (replay to it would make the member say it is
 * consistent on a copy that is no state of the primary's disk): the source gives no end in
 * emergency mode. Driven step by step on the simulator's hosts (the real cores), one seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allFaults, ClusterSim, simOptionsDefault } from '../../src/sim/cluster-sim.js';

const quiet = { ...allFaults, crash: false, partition: false, netFaults: false, diskLatency: false, bitRot: false, handover: false, pause: false, logDelete: false, membership: false, emergency: false };

test('a sync that runs into emergency mode gets no end there: the member never says it is consistent on a copy with direct writes', async () => {
  const sim = new ClusterSim({ ...simOptionsDefault, seed: 1, hosts: 2, faults: quiet });
  await (sim as unknown as { boot(): Promise<void> }).boot();
  const [alpha, beta] = sim.hosts as [(typeof sim.hosts)[0], (typeof sim.hosts)[0]];
  const logger = () => {
    if (alpha.role.kind !== 'primary') throw new Error('alpha is not serving');
    return alpha.role.logger;
  };
  for (let i = 0; i < 8; i++) await sim.perform('write', logger().write(i * 8192, Buffer.alloc(8192, i + 1), false));
  await sim.perform('flush', logger().flush());
  await sim.perform('drain', logger().drain());
  // beta resyncs with its sync paused: the session has the start position, no block is
  // copied yet; the primary logs a little more (fetch copies it).
  await beta.pauseSync(); // the switch holds for the next sync
  await sim.perform('invalidate beta', beta.invalidate());
  const started = await sim.scheduler.runUntil(() => beta.role.kind === 'syncing' && beta.role.start !== undefined, sim.scheduler.nowMs() + 10_000);
  assert.ok(started, 'the sync session began');
  for (let i = 0; i < 3; i++) await sim.perform('write', logger().write(i * 4096 + 1000, Buffer.alloc(3000, 0x30 + i), false));
  await sim.perform('flush', logger().flush());
  const durable = logger().durableLogEnd();
  const copied = await sim.scheduler.runUntil(() => beta.role.kind === 'syncing' && (beta.role.copies.last?.verifiedBytes ?? 0) >= durable.endOffsetBytes, sim.scheduler.nowMs() + 10_000);
  assert.ok(copied, `fetch copied the log up to its durable end ${JSON.stringify(durable, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))} ${beta.role.kind === 'syncing' ? `${beta.role.copies.last?.name ?? 'no copy'} ${beta.role.copies.last?.verifiedBytes ?? 0} ${beta.role.fetch?.status().state ?? 'no fetch'}` : beta.role.kind}`);
  // The primary's log space runs out: direct writes over every block.
  await sim.perform('emergency mode', alpha.enterEmergency('the log filesystem is full'));
  assert.equal(alpha.inEmergency(), true);
  for (let i = 0; i < 16; i++) await sim.perform('direct write', logger().write(i * 8192, Buffer.alloc(8192, 0xa0 + i), false));
  beta.resumeSync();
  let claimed = false;
  const deadlineMs = sim.scheduler.nowMs() + 30_000;
  while (sim.scheduler.nowMs() < deadlineMs) {
    await sim.scheduler.runFor(200);
    if (beta.consistent()) claimed = true;
    // A direct write now and then, as the application goes on.
    await sim.perform('direct write', logger().write(4096, Buffer.alloc(512, 0x55), false));
  }
  assert.equal(claimed, false, 'beta said it was consistent while its copy mixes blocks from before and after direct writes');
  assert.equal(beta.role.kind, 'syncing', 'the sync has no end while the primary is in emergency mode');
});
