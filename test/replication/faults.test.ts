/**
 * Faults on a running replication between two real daemons (alpha primary, beta
 * secondary on 127.0.0.1–2), each test with its own resource: a secondary killed with -9
 * during its full sync and during replay under a write load, a bit flipped in a local
 * log copy before replay reaches it, the primary killed with -9, and the secondary's log
 * directory full (a small tmpfs; root only). Each ends with the secondary byte-identical
 * to the primary's export after more writes, which also proves that nothing wrong was
 * ever replayed. The last test: a secondary that joins a primary with nothing left to
 * write back becomes consistent without further writes. Seeded (FAULTS_SEED); every
 * wait is bounded; only daemons this file started are killed or stopped, by PID.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { marsadm, run, waitFor } from '../support/processes.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { findTool, isRoot, mustRun, stderrLines, unmountQuietly } from '../support/daemon-helpers.js';
import { flipByte, recordHeaderBytes, recordLayout } from '../support/log-files.js';
import {
  assertSameAsPrimary,
  connect,
  MiB,
  mustAdm,
  randomWrites,
  readExport,
  startCluster,
  status,
  waitCaughtUp,
  type ReplicaJson,
  type ReplStatus,
} from '../support/replication-helpers.js';

const seed = Number(process.env['FAULTS_SEED'] ?? 11);

/**
 * A file of `sizeBytes` seeded pseudo-random bytes, fast (AES-128-CTR keystream; the JS
 * generator of replication-helpers needs ~14 s for 256 MiB).
 */
async function fastRandomDevice(path: string, sizeBytes: number, deviceSeed: number): Promise<string> {
  const key = createHash('sha256').update(`mars-faults-${deviceSeed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(4 * MiB);
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < sizeBytes; at += zeros.length) {
      const chunk = cipher.update(zeros.subarray(0, Math.min(zeros.length, sizeBytes - at)));
      await handle.write(chunk, 0, chunk.length, at);
    }
  } finally {
    await handle.close();
  }
  return path;
}

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

/** Writes in the background (batches of 8, each ending with a FLUSH) until stopped; at most 90 s. */
interface Load {
  readonly writes: () => number;
  stop(): Promise<number>;
}

function startLoad(client: NbdClient, sizeBytes: number, random: Random): Load {
  const state = { stopping: false, writes: 0 };
  const running = (async () => {
    const deadline = Date.now() + 90_000;
    while (!state.stopping && Date.now() < deadline) {
      await randomWrites(client, sizeBytes, 8, random);
      state.writes += 8;
    }
  })();
  running.catch(() => undefined);
  return {
    writes: () => state.writes,
    stop: async () => {
      state.stopping = true;
      await running;
      return state.writes;
    },
  };
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
    await marsadm(host.dir, 'down', name).catch(() => undefined);
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
    ({ root, hosts } = await startCluster('mars-faults', 2));
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  /** Creates `name` on alpha over `sizeBytes` of random bytes and returns a client of its export. */
  async function createOnAlpha(name: string, sizeBytes: number, deviceSeed: number): Promise<NbdClient> {
    await fastRandomDevice(device(alpha(), name), sizeBytes, deviceSeed);
    await mustAdm(alpha(), 'create-resource', name, device(alpha(), name));
    return connect(alpha(), name);
  }

  /**
   * beta joins `name` with a disk of other random bytes; alpha writes a little during or
   * after the sync, and beta catches up.
   */
  async function joinOnBeta(client: NbdClient, name: string, sizeBytes: number, deviceSeed: number, random: Random): Promise<void> {
    await fastRandomDevice(device(beta(), name), sizeBytes, deviceSeed);
    await mustAdm(beta(), 'join-resource', name, device(beta(), name));
    await randomWrites(client, sizeBytes, 4, random);
    await waitCaughtUp(alpha(), beta(), name, 60_000);
  }

  async function assertBetaSame(client: NbdClient, name: string, sizeBytes: number, what: string): Promise<void> {
    await assertSameAsPrimary(await readExport(client, sizeBytes), beta(), device(beta(), name), what);
  }

  void test('a secondary killed with -9 during its full sync resumes from its persisted progress and ends byte-identical', async (t) => {
    const name = 'r1';
    const sizeBytes = 256 * MiB;
    const random = new Random(seed + 1);
    t.diagnostic(`seed ${seed}`);
    const client = await createOnAlpha(name, sizeBytes, seed + 10);
    let alphaStopped = false;
    try {
      await randomWrites(client, sizeBytes, 50, random);
      await fastRandomDevice(device(beta(), name), sizeBytes, seed + 11);
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

  void test('a secondary killed with -9 while it replays under a write load restarts, catches up and ends byte-identical', async (t) => {
    const name = 'r2';
    const sizeBytes = 64 * MiB;
    const random = new Random(seed + 2);
    t.diagnostic(`seed ${seed}`);
    const client = await createOnAlpha(name, sizeBytes, seed + 20);
    let load: Load | undefined;
    try {
      await randomWrites(client, sizeBytes, 50, random);
      await joinOnBeta(client, name, sizeBytes, seed + 21, random);
      const seqOf = async (): Promise<bigint> => BigInt((await replica(beta(), name)).replay.position?.nextSeq ?? '0');
      const joined = await seqOf();
      load = startLoad(client, sizeBytes, random);
      await waitFor('beta to replay part of the load', async () => (await seqOf()) > joined + 16n, 30_000, 10);
      const writesAtKill = load.writes();
      await kill9(beta());
      await waitFor('writes to go on while beta is down', () => load!.writes() >= writesAtKill + 16, 30_000, 10);
      await start(beta());
      await waitFor('the restarted beta to load its replica', async () => ((await statusOrUndefined(beta(), name))?.replica?.replay.position ?? null) !== null, 30_000, 20);
      const restarted = await seqOf();
      await waitFor('the restarted beta to replay the load', async () => (await seqOf()) > restarted, 30_000, 20);
      const writes = await load.stop();
      t.diagnostic(`${writes} writes of the load, ${writesAtKill} before the kill; replay restarted at seq ${restarted}`);
      await waitCaughtUp(alpha(), beta(), name, 60_000);
      await assertBetaSame(client, name, sizeBytes, 'after the kill during replay');
    } finally {
      await load?.stop().catch(() => undefined);
      await client.close().catch(() => undefined);
    }
  });

  void test('a bit flipped in a local log copy before replay reaches it is detected, the copy fetched again, and the disk ends byte-identical', async (t) => {
    const name = 'r3';
    const sizeBytes = 64 * MiB;
    const random = new Random(seed + 3);
    t.diagnostic(`seed ${seed}`);
    const client = await createOnAlpha(name, sizeBytes, seed + 30);
    try {
      await randomWrites(client, sizeBytes, 30, random);
      await joinOnBeta(client, name, sizeBytes, seed + 31, random);
      await mustAdm(beta(), 'pause-replay', name);
      await randomWrites(client, sizeBytes, 60, random);
      await waitFor('beta to fetch everything while replay is paused', async () => {
        const r = await replica(beta(), name);
        return r.fetch.state === 'caught-up' && r.fetch.restBytes === 0 && r.replay.restBytes > 0;
      });
      const position = (await replica(beta(), name)).replay.position!;
      const copyName = `log-${String(position.logNumber).padStart(9, '0')}-${position.logHost}`;
      const copy = join(beta().dir, `resource-${name}`, copyName);
      const ahead = (await recordLayout(copy)).filter((r) => r.offsetBytes >= position.offsetBytes && r.payloadBytes > 0);
      assert.ok(ahead.length >= 3, `records not replayed yet in ${copyName}: ${ahead.length}`);
      const victim = ahead[1 + random.int(ahead.length - 2)]!;
      const flipAt = victim.offsetBytes + recordHeaderBytes + random.int(victim.payloadBytes);
      await flipByte(copy, flipAt);
      t.diagnostic(`flipped byte ${flipAt} of ${copyName} (record at ${victim.offsetBytes}, seq ${victim.seq}); replay at ${position.offsetBytes}`);
      await mustAdm(beta(), 'resume-replay', name);
      await randomWrites(client, sizeBytes, 20, random);
      await waitCaughtUp(alpha(), beta(), name, 60_000);
      await assertBetaSame(client, name, sizeBytes, 'after the damaged copy');
      const damage = stderrLines(beta().daemon!).filter((l) => typeof l.msg === 'string' && l.msg.includes(copyName) && /damage/i.test(l.msg));
      assert.ok(damage.length > 0, `beta's stderr names the damage of ${copyName}:\n${beta().daemon!.stderr().slice(-4000)}`);
      const fresh = await recordLayout(copy);
      const again = fresh.find((r) => r.offsetBytes === victim.offsetBytes);
      assert.ok(again !== undefined && again.seq === victim.seq, 'the damaged record was fetched again');
    } finally {
      await client.close().catch(() => undefined);
    }
  });

  void test('with the primary killed the secondary stays consistent and reports it unreachable, then resumes by itself', async (t) => {
    const name = 'r4';
    const sizeBytes = 64 * MiB;
    const random = new Random(seed + 4);
    t.diagnostic(`seed ${seed}`);
    let client = await createOnAlpha(name, sizeBytes, seed + 40);
    try {
      await randomWrites(client, sizeBytes, 50, random);
      await joinOnBeta(client, name, sizeBytes, seed + 41, random);
      await client.close();
      await kill9(alpha());
      await waitFor('beta to see its primary unreachable', async () => (await replica(beta(), name)).fetch.state === 'source-unreachable', 45_000, 50);
      assert.equal(await view(beta(), 'repl-state', name), 'PrimaryUnreachable');
      assert.equal(await view(beta(), 'is-consistent', name), '1');
      assert.equal((await replica(beta(), name)).consistent, true);
      await start(alpha());
      client = await connect(alpha(), name);
      await randomWrites(client, sizeBytes, 80, random);
      await waitCaughtUp(alpha(), beta(), name, 60_000);
      assert.equal(await view(beta(), 'repl-state', name), 'Replicating');
      await assertBetaSame(client, name, sizeBytes, 'after the primary came back');
    } finally {
      await client.close().catch(() => undefined);
    }
  });

  void test('a full log directory on the secondary pauses fetch with NoSpace, which resumes by itself once there is room', { skip: tmpfsSkipReason() ?? false }, async (t) => {
    const name = 'r5';
    const sizeBytes = 64 * MiB;
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
        await fastRandomDevice(device(beta(), name), sizeBytes, seed + 1);
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
