/**
 * kill -9 of either side while replication runs at full speed: alpha (primary) and beta
 * (secondary) on 127.0.0.1–2, a write load of 256 KiB writes, eight in flight, with a
 * FLUSH every 16 writes, unpaced. Four rounds; even rounds kill beta, odd rounds alpha.
 *
 * - After beta is killed, its device (as the dead process left it) must equal alpha's
 *   device as of some prefix of alpha's log: the prefix checker reads alpha's log files
 *   and rebuilds the device record by record. The prefix never moves back: each check
 *   starts from the prefix the check before it found (that check's image is the device there).
 * - After alpha is killed and restarted, every write whose FLUSH was answered reads back
 *   exact, unless a later write to the same place was sent (its outcome is unknown).
 * - At the end beta catches up and equals alpha's export byte for byte.
 *
 * Seeded (KILL_LOAD_SEED); every wait is bounded; only daemons this file started are
 * killed, by PID.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { parseLogName } from '../../src/log/index.js';
import { waitFor } from '../support/processes.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { kill9 } from '../support/roles-helpers.js';
import { checkPrefix, readDeviceImage } from '../support/prefix-checker.js';
import { assertSameAsPrimary, connect, MiB, mustAdm, readExport, seededBytes, startCluster, status, waitCaughtUp } from '../support/replication-helpers.js';

const seed = Number(process.env['KILL_LOAD_SEED'] ?? 7);
const name = 'rk';
const sizeBytes = 32 * MiB;
const writeBytes = 256 * 1024;
const slots = sizeBytes / writeBytes;
const inflightMax = 8;
const flushEvery = 16;
/**
 * Four rounds, two kills of each side: the simulator crashes primaries and secondaries
 * under load in hundreds of seeds, with the prefix and flushed-write checks after every
 * step (docs/simulator.md); these rounds show the same on real processes and real files.
 */
const rounds = 4;
/** Writes of load before a kill (bounded: the prefix check reads the whole log each time). */
const writesBeforeKillMin = 48;
const roundMsMax = 60_000;

/** What the load knows: per slot, the data of its last write whose FLUSH was answered, and whether a later write was sent. */
interface Slot {
  flushed: Buffer | undefined;
  laterSent: boolean;
}

class Load {
  readonly slots: Slot[] = Array.from({ length: slots }, () => ({ flushed: undefined, laterSent: false }));
  writes = 0;
  private running: Promise<void> | undefined;
  private stopping = false;
  failure: Error | undefined;

  constructor(
    private readonly client: NbdClient,
    private readonly random: Random,
  ) {}

  start(): void {
    this.running = this.run();
  }

  /** Stops the load; a connection error (the primary was killed) ends it quietly. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private async run(): Promise<void> {
    const inflight = new Set<Promise<void>>();
    let sinceFlush: { slot: number; data: Buffer }[] = [];
    try {
      while (!this.stopping) {
        const slot = this.random.int(slots);
        const data = seededBytes(this.random, writeBytes);
        this.slots[slot]!.laterSent = true;
        const write = this.client.write(slot * writeBytes, data);
        sinceFlush.push({ slot, data });
        const tracked = write.then(() => {
          this.writes++;
        });
        inflight.add(tracked);
        void tracked.finally(() => inflight.delete(tracked)).catch(() => undefined);
        if (inflight.size >= inflightMax) await Promise.race(inflight);
        if (sinceFlush.length >= flushEvery) {
          const covered = sinceFlush;
          sinceFlush = [];
          await Promise.all(inflight); // every write of the group is answered before the FLUSH is sent
          await this.client.flush();
          this.markFlushed(covered);
        }
      }
      await Promise.all(inflight);
    } catch (err) {
      if (!this.stopping) this.failure = err as Error;
      await Promise.allSettled(inflight);
    }
  }

  /** After a FLUSH (nothing was sent meanwhile): each slot's last write of the group is durable and the latest. */
  private markFlushed(covered: readonly { slot: number; data: Buffer }[]): void {
    const last = new Map<number, Buffer>();
    for (const w of covered) last.set(w.slot, w.data);
    for (const [slot, data] of last) this.slots[slot] = { flushed: data, laterSent: false };
  }
}

void describe('kill -9 during replication at full speed', { timeout: 600_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (host: TestHost): string => join(root, `${host.name}-${name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-kill-load', 2));
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('either side killed twice under load: beta is always a prefix, nothing flushed is lost, both end identical', async (t) => {
    const random = new Random(seed);
    t.diagnostic(`seed ${seed}`);
    for (const h of hosts) {
      const handle = await open(device(h), 'w'); // sparse: all zeroes, as the prefix checker's initial image
      await handle.truncate(sizeBytes);
      await handle.close();
    }
    await mustAdm(alpha(), 'create-resource', name, device(alpha()));
    await mustAdm(beta(), 'join-resource', name, device(beta()));
    await waitCaughtUp(alpha(), beta(), name, 60_000);
    let client = await connect(alpha(), name);
    /** The prefix beta's device was found at by the check before: its image, where the next record starts, records up to it. */
    let previous: { image: Buffer | 'zero'; from: { logNumber: number; offsetBytes: number } | undefined; prefixRecords: number } = { image: 'zero', from: undefined, prefixRecords: 0 };
    let checked = 0;
    try {
      for (let round = 0; round < rounds; round++) {
        const load = new Load(client, random);
        const killBeta = round % 2 === 0;
        load.start();
        const writesBeforeKill = writesBeforeKillMin + random.int(writesBeforeKillMin);
        await waitFor(`round ${round}: ${writesBeforeKill} writes`, () => load.writes >= writesBeforeKill, roundMsMax, 5);
        if (killBeta) {
          await kill9(beta());
          // The device as the killed secondary left it: a prefix of alpha's history.
          const image = await readDeviceImage(device(beta()), sizeBytes);
          await load.stop();
          assert.equal(load.failure, undefined, `round ${round}: the load failed: ${load.failure?.message}`);
          const result = await checkPrefix({ logDir: join(alpha().dir, `resource-${name}`), host: 'alpha', initial: previous.image, snapshot: image, sizeBytes, ...(previous.from === undefined ? {} : { from: previous.from }) });
          assert.ok(result.ok, `round ${round} (seed ${seed}): beta's device after kill -9 is no prefix of alpha's log at or after prefix ${previous.prefixRecords} (found by the check before): ${result.detail}`);
          const prefixRecords = previous.prefixRecords + result.prefixRecords;
          t.diagnostic(`round ${round}: beta killed after ${load.writes} writes; prefix ${prefixRecords}: ${result.detail}`);
          previous = { image, from: { logNumber: parseLogName(result.at.logName)!.logNumber, offsetBytes: result.at.offsetBytes }, prefixRecords };
          checked++;
          await start(beta());
        } else {
          await kill9(alpha());
          await load.stop();
          await client.close().catch(() => undefined);
          await start(alpha());
          await waitFor(`round ${round}: alpha serves ${name} again`, async () => (await status(alpha(), name)).logger !== null, roundMsMax, 20);
          client = await connect(alpha(), name);
          let verified = 0;
          for (const [i, slot] of load.slots.entries()) {
            if (slot.flushed === undefined || slot.laterSent) continue;
            const data = await client.read(i * writeBytes, writeBytes);
            assert.ok(data.equals(slot.flushed), `round ${round} (seed ${seed}): a flushed write at ${i * writeBytes} was lost by kill -9 of the primary`);
            verified++;
          }
          t.diagnostic(`round ${round}: alpha killed after ${load.writes} writes; ${verified} flushed writes read back exact`);
        }
      }
      assert.ok(checked >= rounds / 2, `${checked} prefix checks`);
      await waitCaughtUp(alpha(), beta(), name, 120_000);
      await assertSameAsPrimary(await readExport(client, sizeBytes), beta(), device(beta()), `after ${rounds} kills`);
    } finally {
      await client.close().catch(() => undefined);
    }
  });
});
