/**
 * Faults on a running replication between two real daemons (alpha primary, beta
 * secondary on 127.0.0.1–2), each test with its own resource: a secondary killed with -9
 * during its full sync, and the secondary's log directory full (a small tmpfs; root
 * only). Each ends with the secondary byte-identical to the primary's export after more
 * writes, which also proves that nothing wrong was ever replayed. The last test: a
 * secondary that joins a primary with nothing left to write back becomes consistent
 * without further writes. Seeded (FAULTS_SEED); every wait is bounded; only daemons this
 * file started are killed or stopped, by PID.
 *
 * What the simulator checks in hundreds of seeds is not repeated here (docs/simulator.md):
 * a secondary crashed while it replays under load (and test/replication/kill-under-load),
 * a bit flipped in a log copy before replay reaches it (and the record verifier's tests in
 * test/fetch), the primary crashed while a secondary follows it (and kill-under-load).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { adm } from '../support/adm.js';
import { run, waitFor } from '../support/processes.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { findTool, isRoot, mustRun, unmountQuietly } from '../support/daemon-helpers.js';
import {
  assertSameAsPrimary,
  connect,
  MiB,
  mustAdm,
  randomDevice,
  randomWrites,
  readExport,
  startCluster,
  status,
  waitCaughtUp,
  type ReplicaJson,
  type ReplStatus,
} from '../support/replication-helpers.js';

const seed = Number(process.env['FAULTS_SEED'] ?? 11);
/** beta's sync limit while its sync is paused and killed: 64 MiB take eight seconds at it. */
const syncRateMiBPerS = 8;
/**
 * How often the daemons fdatasync their devices and save the written-back position
 * (MARS_INTERVALS positionPersistIntervalMs; production 5 s): the last test waits for the
 * primary to have written everything back, which it reports once the position is saved.
 */
const positionPersistIntervalMs = 200;

async function statusOrUndefined(host: TestHost, name: string): Promise<ReplStatus | undefined> {
  try {
    return await status(host, name);
  } catch {
    return undefined;
  }
}

async function replica(host: TestHost, name: string): Promise<ReplicaJson> {
  const r = (await status(host, name)).replica;
  assert.ok(r !== null && r !== undefined, `${host.name} has no replica of ${name}`);
  return r;
}

interface SyncStateFile {
  nextBytes: number;
  endPosition: unknown;
}

async function readSyncState(host: TestHost, name: string): Promise<SyncStateFile> {
  return JSON.parse(await readFile(join(host.dir, `resource-${name}`, 'sync-state'), 'utf8')) as SyncStateFile;
}

async function view(host: TestHost, macro: string, name: string): Promise<string> {
  return (await mustAdm(host, `view-${macro}`, name)).trim();
}

/**
 * What `marsadm pause-sync` / `resume-sync` … send, straight over the control socket: the
 * sync of a 256 MiB device may take less time than starting a marsadm process.
 */
async function setSwitch(host: TestHost, name: string, which: 'fetch' | 'replay' | 'sync', on: boolean): Promise<void> {
  await callDaemon(join(host.dir, 'control.sock'), 'switch', { name, switch: which, on }, 30_000);
}

/** kill -9 of the host's daemon (started by this file); waits for its exit. */
async function kill9(host: TestHost): Promise<void> {
  const daemon = host.daemon;
  assert.ok(daemon !== undefined, `${host.name} is not running`);
  host.daemon = undefined;
  await daemon.kill9();
}

/** Why the tmpfs test cannot run here, or undefined when it can. */
function tmpfsSkipReason(): string | undefined {
  if (!isRoot()) return 'needs root (mounts a tmpfs)';
  if (findTool('mount') === undefined || findTool('umount') === undefined) return 'needs mount and umount';
  return undefined;
}

/**
 * Stops `name` on the host (`down`: its files close) so that the tmpfs at `dir` can be
 * unmounted; never throws (used in finally).
 */
async function releaseMount(host: TestHost, name: string, dir: string): Promise<string> {
  if (host.daemon !== undefined) {
    await adm(host.dir, 'down', name).catch(() => undefined);
    await waitFor(`${name} to stop on ${host.name}`, async () => (await statusOrUndefined(host, name))?.state === 'stopped', 20_000, 100).catch(() => undefined);
  }
  return unmountQuietly(dir);
}

void describe('replication survives faults', { timeout: 300_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (h: TestHost, name: string): string => join(root, `${h.name}-${name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-faults', 2, undefined, `positionPersistIntervalMs=${positionPersistIntervalMs}`));
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  /** Creates `name` on alpha over `sizeBytes` of random bytes and returns a client of its export. */
  async function createOnAlpha(name: string, sizeBytes: number, deviceSeed: number): Promise<NbdClient> {
    await randomDevice(device(alpha(), name), sizeBytes, deviceSeed);
    await mustAdm(alpha(), 'create-resource', name, device(alpha(), name));
    return connect(alpha(), name);
  }

  /**
   * beta joins `name` with a disk of other random bytes; alpha writes a little during or
   * after the sync, and beta catches up.
   */
  async function joinOnBeta(client: NbdClient, name: string, sizeBytes: number, deviceSeed: number, random: Random): Promise<void> {
    await randomDevice(device(beta(), name), sizeBytes, deviceSeed);
    await mustAdm(beta(), 'join-resource', name, device(beta(), name));
    await randomWrites(client, sizeBytes, 4, random);
    await waitCaughtUp(alpha(), beta(), name, 60_000);
  }

  async function assertBetaSame(client: NbdClient, name: string, sizeBytes: number, what: string): Promise<void> {
    await assertSameAsPrimary(await readExport(client, sizeBytes), beta(), device(beta(), name), what);
  }

  void test('a secondary killed with -9 during its full sync resumes from its persisted progress and ends byte-identical', async (t) => {
    const name = 'r1';
    const sizeBytes = 64 * MiB;
    const random = new Random(seed + 1);
    t.diagnostic(`seed ${seed}`);
    const client = await createOnAlpha(name, sizeBytes, seed + 10);
    let alphaStopped = false;
    try {
      await randomWrites(client, sizeBytes, 50, random);
      await randomDevice(device(beta(), name), sizeBytes, seed + 11);
      // Unlimited, the sync copies tens of MiB before the first poll sees it: a limit (it
      // lasts until marsd restarts) leaves the sync seconds to be paused and killed in, on a
      // small device. The restarted marsd syncs unlimited.
      await mustAdm(beta(), 'set-rate', '--sync', `${syncRateMiBPerS}M`);
      await mustAdm(beta(), 'join-resource', name, device(beta(), name));
      // pause-sync persists the progress; the sync then runs on from there and is killed.
      await waitFor('the sync to copy something', async () => ((await replica(beta(), name)).sync?.doneBytes ?? 0) > 0, 30_000, 10);
      await setSwitch(beta(), name, 'sync', false);
      await waitFor('the sync to pause', async () => (await replica(beta(), name)).sync?.state === 'paused', 30_000, 10);
      const paused = await readSyncState(beta(), name);
      assert.ok(paused.nextBytes > 0 && paused.nextBytes < sizeBytes, `persisted progress after pause-sync: ${paused.nextBytes}`);
      await setSwitch(beta(), name, 'sync', true);
      let killedAt = 0;
      await waitFor('the sync to run again', async () => {
        killedAt = (await replica(beta(), name)).sync?.doneBytes ?? 0;
        return killedAt > paused.nextBytes;
      }, 30_000, 5);
      await kill9(beta());
      assert.ok(killedAt < sizeBytes, `the kill came before the sync's end (done ${killedAt} of ${sizeBytes})`);
      const killed = await readSyncState(beta(), name);
      assert.equal(killed.endPosition, null, `the sync was killed before it finished (done ${killedAt} of ${sizeBytes})`);
      assert.ok(killed.nextBytes >= paused.nextBytes, `sync-state went back: ${killed.nextBytes} < ${paused.nextBytes}`);
      t.diagnostic(`paused at ${paused.nextBytes}, killed at ${killedAt} with ${killed.nextBytes} persisted, of ${sizeBytes}`);
      // With alpha stopped, the restarted sync cannot move: its first progress is what it resumes from.
      alpha().daemon!.child.kill('SIGSTOP');
      alphaStopped = true;
      await start(beta());
      const seen: ReplicaJson['sync'][] = [];
      await waitFor('the restarted sync to report progress', async () => {
        const sync = (await statusOrUndefined(beta(), name))?.replica?.sync ?? null;
        if (sync !== null) seen.push(sync);
        return sync !== null;
      }, 30_000, 20);
      const first = seen[0];
      assert.ok(first !== undefined && first !== null);
      assert.notEqual(first.state, 'done');
      assert.equal(first.doneBytes, killed.nextBytes, 'the restarted sync resumes at the persisted progress, not at 0');
      alpha().daemon!.child.kill('SIGCONT');
      alphaStopped = false;
      await randomWrites(client, sizeBytes, 100, random);
      await waitCaughtUp(alpha(), beta(), name, 120_000);
      await assertBetaSame(client, name, sizeBytes, 'after the resumed sync');
      assert.equal(await view(beta(), 'is-consistent', name), '1');
    } finally {
      if (alphaStopped) alpha().daemon?.child.kill('SIGCONT');
      await client.close().catch(() => undefined);
    }
  });

  void test('a full log directory on the secondary pauses fetch with NoSpace, which resumes by itself once there is room', { skip: tmpfsSkipReason() ?? false }, async (t) => {
    const name = 'r5';
    // The log's volume comes from the writes (up to 1 MiB each), not from the device's size.
    const sizeBytes = 32 * MiB;
    const random = new Random(seed + 5);
    t.diagnostic(`seed ${seed}`);
    const dir = join(beta().dir, `resource-${name}`);
    await mkdir(dir, { recursive: true });
    const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', dir], { timeoutMs: 30_000 });
    if (mounted.code !== 0) {
      t.skip(`mount -t tmpfs failed: ${mounted.stderr.trim()}`);
      return;
    }
    let client: NbdClient | undefined;
    try {
      client = await createOnAlpha(name, sizeBytes, seed + 50);
      await randomWrites(client, sizeBytes, 20, random);
      await joinOnBeta(client, name, sizeBytes, seed + 51, random);
      await mustAdm(beta(), 'pause-replay', name);
      // About 64 MiB of log against 24 MiB of room, replay paused: the copies cannot go.
      await randomWrites(client, sizeBytes, 128, random);
      await waitFor('fetch to pause for lack of space', async () => (await replica(beta(), name)).fetch.state === 'paused-no-space', 30_000, 50);
      assert.equal(await view(beta(), 'repl-state', name), 'NoSpace');
      assert.equal(await view(beta(), 'is-consistent', name), '1');
      await mustRun('mount', ['-o', 'remount,size=160m', dir]);
      await mustAdm(beta(), 'resume-replay', name);
      await waitCaughtUp(alpha(), beta(), name, 60_000);
      await assertBetaSame(client, name, sizeBytes, 'after space returned');
    } finally {
      await client?.close().catch(() => undefined);
      t.diagnostic(`tmpfs: ${await releaseMount(beta(), name, dir)}`);
    }
  });

  void test(
    'a secondary that joins a primary with everything written back becomes consistent without further writes',
    async () => {
      const name = 'r0';
      const sizeBytes = 16 * MiB;
      const random = new Random(seed);
      const client = await createOnAlpha(name, sizeBytes, seed);
      try {
        await randomWrites(client, sizeBytes, 20, random);
        await waitFor('alpha to write everything back', async () => {
          const l = (await status(alpha(), name)).logger;
          return l !== null && l !== undefined && l.shadowBytes === 0 && l.writtenBack.nextSeq === l.logPosition.nextSeq;
        });
        await randomDevice(device(beta(), name), sizeBytes, seed + 1);
        await mustAdm(beta(), 'join-resource', name, device(beta(), name));
        await waitFor('beta to finish its sync and replay', async () => {
          const r = await replica(beta(), name);
          return (r.sync === null || r.sync.state === 'done') && r.replay.state === 'caught-up' && r.fetch.state === 'caught-up';
        }, 30_000);
        await waitFor('beta to be consistent', async () => (await replica(beta(), name)).consistent, 3_000);
        await assertBetaSame(client, name, sizeBytes, 'after joining an idle primary');
      } finally {
        await client.close().catch(() => undefined);
      }
    },
  );
});
