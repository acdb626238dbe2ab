/**
 * A secondary that crashed below its dirty mark (replay had written the device further than
 * its saved position) meets a `primary --force` on a member that had none of the mark's
 * log: the new history writes that log number itself. The mark is a place in the old
 * history; replaying the new log of that number, even beyond the mark's offset, must not
 * count as passing it (the device still holds the old history's records). Driven step by step on the simulator's hosts (the real cores), one seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allFaults, ClusterSim, simOptionsDefault } from '../../src/sim/cluster-sim.js';
import { formatLogName } from '../../src/log/index.js';
import { loadPosition, saveDirtyMark, savePosition } from '../../src/replay/position.js';
import type { SimHost } from '../../src/sim/sim-host.js';

const quiet = { ...allFaults, crash: false, partition: false, netFaults: false, diskLatency: false, bitRot: false, handover: false, pause: false, logDelete: false, membership: false, emergency: false };

interface SimInside {
  boot(): Promise<void>;
  crash(h: SimHost): void;
  restart(h: SimHost): Promise<void>;
  forceFailover(h: SimHost): Promise<void>;
}

test('a member below its dirty mark never passes it in the log of that number a forced primary writes: off the history, never consistent, also after a restart', async () => {
  const sim = new ClusterSim({ ...simOptionsDefault, seed: 1, hosts: 3, faults: quiet });
  const inside = sim as unknown as SimInside;
  await inside.boot();
  const [alpha, beta, gamma] = sim.hosts as [SimHost, SimHost, SimHost];
  const primaryLogger = (h: SimHost) => {
    if (h.role.kind !== 'primary') throw new Error(`${h.name} is not serving`);
    return h.role.logger;
  };
  const logger = () => primaryLogger(alpha);
  const waitFor = async (what: string, done: () => boolean): Promise<void> => {
    assert.ok(await sim.scheduler.runUntil(done, sim.scheduler.nowMs() + 30_000), what);
  };
  // Six records reach both members; then gamma's fetch stops and ten more, over the same
  // blocks, reach beta only.
  for (let i = 0; i < 6; i++) await sim.perform('write', logger().write((i % 4) * 8192, Buffer.alloc(8192, i + 1), false));
  await sim.perform('flush', logger().flush());
  await waitFor('both members replayed six records', () => beta.appliedSeq() >= 6 && gamma.appliedSeq() >= 6);
  await sim.perform('gamma pauses fetch', gamma.pauseFetch());
  for (let i = 6; i < 16; i++) await sim.perform('write', logger().write((i % 4) * 8192 + 512, Buffer.alloc(4096, i + 1), false));
  await sim.perform('flush', logger().flush());
  await waitFor('beta replayed all sixteen', () => beta.appliedSeq() >= 16);
  await sim.scheduler.runFor(2_000); // its checkpoint: the device holds all sixteen durably

  // gamma replayed to the end of the log the first six records are in; the ten more went
  // into alpha's next log, which the force will throw away (gamma writes that number itself).
  const cut = (await loadPosition(gamma.logDisk.mem, gamma.name))!;
  const lost = formatLogName(cut.logNumber + 1, 'alpha');
  const lostBytes = beta.logDisk.mem.image(lost)?.length ?? 0;
  assert.ok(lostBytes > 0, `beta holds alpha's next log (${beta.logDisk.mem.listNow().join(' ')}; gamma at ${cut.logNumber}:${cut.offsetBytes})`);

  // beta crashes as it would after a power loss during replay: its device holds the
  // sixteen records, but its saved position is gamma's, its copy of alpha's next log is
  // gone, and its dirty mark says how far into that log it wrote the device.
  beta.crash(false);
  await savePosition(beta.logDisk.mem, beta.name, cut);
  await beta.logDisk.mem.remove(lost);
  await saveDirtyMark(beta.logDisk.mem, beta.name, { logNumber: cut.logNumber + 1, logHost: 'alpha', offsetBytes: lostBytes });

  // alpha is gone; gamma is forced and writes its own next log.
  inside.crash(alpha);
  await inside.forceFailover(gamma);
  assert.equal(gamma.role.kind, 'primary');
  await inside.restart(beta);
  assert.equal(beta.consistent(), false, 'below its mark at start');

  let claimed = false;
  const deadlineMs = sim.scheduler.nowMs() + 30_000;
  while (sim.scheduler.nowMs() < deadlineMs && beta.offHistory() === undefined) {
    await sim.scheduler.runFor(200);
    if (beta.consistent()) claimed = true;
    await sim.perform('write', primaryLogger(gamma).write(0, Buffer.alloc(512, 0x77), false));
  }
  assert.equal(claimed, false, 'beta said it was consistent while its device holds alpha\'s records beyond the cut');
  assert.match(beta.offHistory() ?? '', /before a crash replay wrote the device up to .* of alpha, but replay is in log \d+ of gamma.*invalidate/);
  await sim.scheduler.runFor(2_000);
  assert.equal(beta.consistent(), false, 'and it stays so until invalidate');
  // Replay stopped before gamma's log: the saved position and the mark still say it at the next start.
  assert.equal((await loadPosition(beta.logDisk.mem, beta.name))?.logNumber, cut.logNumber);
  beta.crash(false);
  await inside.restart(beta);
  const again = await sim.scheduler.runUntil(() => beta.offHistory() !== undefined || beta.consistent(), sim.scheduler.nowMs() + 30_000);
  assert.ok(again, 'beta settles after the restart');
  assert.equal(beta.consistent(), false, 'after a restart beta said it was consistent');
  assert.notEqual(beta.offHistory(), undefined);
});
