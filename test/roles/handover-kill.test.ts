/**
 * kill -9 during a planned handover, between real daemons on 127.0.0.1–3: in each round a
 * light write load (flushed) goes to the current primary, its whole export is read, then
 * the `primary R` request goes to another host's daemon and, after a seeded random 0–300 ms, the old or (in turn)
 * the new primary's marsd is killed with kill -9 and restarted. Afterwards exactly one
 * host serves R (view-is-primary on every host, bounded), every host names it, and its
 * export equals the image read before the handover: nothing flushed is lost, whichever
 * side died and whenever. Seeded (HANDOVER_KILL_SEED; HANDOVER_KILL_ROUNDS rounds).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import { callDaemon } from '../../src/control/client.js';
import { waitFor } from '../support/processes.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { assertSameAsPrimary, firstDifference, MiB, mustAdm, randomDevice, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { exportImage, kill9, view, waitOnePrimary, writeSome } from '../support/roles-helpers.js';

const sizeBytes = 32 * MiB;
const seed = Number(process.env['HANDOVER_KILL_SEED'] ?? 41);
/** Two rounds by default: the simulator crashes hosts during hundreds of handovers (docs/simulator.md). */
const rounds = Number(process.env['HANDOVER_KILL_ROUNDS'] ?? 2);
const killDelayMsMax = 300;

void describe('kill -9 during a planned handover', { timeout: 300_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const device = (h: TestHost): string => join(root, `${h.name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-handover-kill', 3));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(hosts[0]!, 'create-resource', 'r1', device(hosts[0]!));
    await writeSome(hosts[0]!, 'r1', sizeBytes, 40, random);
    for (const h of hosts.slice(1)) await mustAdm(h, 'join-resource', 'r1', device(h));
    for (const h of hosts.slice(1)) await waitCaughtUp(hosts[0]!, h, 'r1', 120_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test(`kill -9 of the old or the new primary at a random moment of a handover, ${rounds} rounds: then exactly one host serves, with every flushed byte`, async (t) => {
    t.diagnostic(`seed ${seed}`);
    let current = hosts[0]!;
    for (let round = 0; round < rounds; round++) {
      for (const h of hosts) if (h !== current) await waitCaughtUp(current, h, 'r1', 90_000);
      await writeSome(current, 'r1', sizeBytes, 10 + random.int(20), random);
      const image = await exportImage(current, 'r1', sizeBytes);
      const others = hosts.filter((h) => h !== current);
      const target = others[random.int(others.length)]!;
      const victim = round % 2 === 0 ? current : target; // both sides die within two rounds
      const delayMs = random.int(killDelayMsMax + 1);
      const started = Date.now();
      // What `marsadm primary r1 --wait` sends, straight to the daemon: starting a marsadm process takes longer than the kill
      // delays. --wait: the old primary's indicator may still list the client closed a moment ago.
      const handover = callDaemon(join(target.dir, 'control.sock'), 'primary', { name: 'r1', force: false, wait: true, timeoutMs: 45_000 }, 50_000).then(
        (answer) => ({ ok: true, detail: `done in ${(answer as { tookMs?: number }).tookMs ?? '?'} ms` }),
        (err: unknown) => ({ ok: false, detail: (err as Error).message }),
      );
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      await kill9(victim);
      await start(victim);
      const result = await handover;
      const serving = await waitOnePrimary(hosts, 'r1', 60_000);
      const tookMs = Date.now() - started;
      for (const h of hosts) await waitFor(`${h.name} to name ${serving.name} primary`, async () => (await view(h, 'primarynode', 'r1')) === serving.name, 20_000, 200);
      const got = await exportImage(serving, 'r1', sizeBytes);
      const at = firstDifference(image, got);
      t.diagnostic(
        `round ${round}: ${current.name} -> ${target.name}, kill -9 of ${victim === current ? 'the old' : 'the new'} primary ${victim.name} after ${delayMs} ms; ` +
          `primary on ${target.name}: ${result.ok ? 'ok' : 'failed'} (${result.detail}); ${serving.name} serves after ${tookMs} ms`,
      );
      assert.equal(at, undefined, `round ${round}: ${serving.name}'s export differs from the image flushed before the handover at byte ${at}`);
      if (result.ok) assert.equal(serving, target, `round ${round}: primary succeeded on ${target.name}, but ${serving.name} serves`);
      current = serving;
    }
    // Every host follows the last primary to the same bytes.
    await writeSome(current, 'r1', sizeBytes, 10, random);
    const image = await exportImage(current, 'r1', sizeBytes);
    for (const h of hosts) {
      if (h === current) continue;
      await waitCaughtUp(current, h, 'r1', 90_000);
      await assertSameAsPrimary(image, h, device(h), `${h.name} after ${rounds} rounds`);
    }
    for (const h of hosts) assert.equal(await view(h, 'is-split-brain', 'r1'), '0', `${h.name}: no split brain`);
  });
});
