/**
 * No space left for the log: the whole state directory is a small tmpfs (the device file
 * lives outside it). Writes of three times the tmpfs never fail: reclaim deletes what is
 * written back or, when it cannot keep up, the primary goes into emergency mode (writes
 * straight to its device) until space is back. With the tmpfs held full by another file it stays in
 * emergency mode; marsd is killed with SIGKILL there and must come back in emergency
 * mode with every flushed write, and log again once the file is gone. Finally a clean
 * stop and a restart keep every answered write. In emergency mode the frozen last log is
 * deleted even while a secondary's fetch stream waits at its end, so the primary logs
 * again by itself. Needs root (mount); skipped otherwise.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { adm } from '../support/adm.js';
import { freePort, removeDir, run, sparseFile, startMarsd, tempDir, waitFor, type Marsd } from '../support/processes.js';
import {
  KiB,
  MiB,
  connectExport,
  hostName,
  isMountPoint,
  mustMarsadm,
  mustRun,
  rawStatus,
  rootSkipReason,
  settleWithin,
  stderrLines,
  unmountQuietly,
  waitWrittenBack,
} from '../support/daemon-helpers.js';

const deviceBytes = 64 * MiB;
const writeBytes = 256 * KiB;
const tmpfsBytes = 24 * MiB;
const groupWrites = 8;
const testMsMax = 120_000;
/** A persist interval longer than any test here: a position written back stays due until something asks for it. */
const positionDueMs = 600_000;

interface Version {
  data: Buffer;
  /** Answered before a FLUSH that completed. */
  durable: boolean;
}

class Load {
  /** Per offset, the data answered there, oldest first (initially zeros, durable). */
  readonly history = new Map<number, Version[]>();
  private notDurable: Version[] = [];
  writes = 0;

  constructor(
    private readonly random: Random,
    /** The connection writes go to (replaced after a restart). */
    public client: NbdClient,
  ) {}

  private async writeOne(offset = this.random.int(deviceBytes / writeBytes) * writeBytes): Promise<void> {
    const data = this.random.bytes(writeBytes);
    await this.client.write(offset, data);
    const version: Version = { data, durable: false };
    let versions = this.history.get(offset);
    if (versions === undefined) this.history.set(offset, (versions = [{ data: Buffer.alloc(writeBytes), durable: true }]));
    versions.push(version);
    this.notDurable.push(version);
    this.writes++;
  }

  /**
   * `count` writes in flight at once, at distinct offsets; resolves with the first error.
   * A write that failed must leave its range as it was (the daemon rejects it before it
   * reaches the log or the shadow index), so it is simply not recorded.
   */
  private async writeGroup(count: number): Promise<unknown> {
    const offsets = new Set<number>();
    while (offsets.size < count) offsets.add(this.random.int(deviceBytes / writeBytes) * writeBytes);
    const results = await Promise.allSettled([...offsets].map((offset) => this.writeOne(offset)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    return failed?.reason;
  }

  private async flush(): Promise<void> {
    const covered = this.notDurable;
    this.notDurable = [];
    await this.client.flush();
    for (const v of covered) v.durable = true;
  }

  /** Writes groups of concurrent writes, each followed by a flush, until something fails; returns that error. */
  async untilFailure(writesMax: number): Promise<unknown> {
    while (this.writes < writesMax) {
      const failed = await this.writeGroup(groupWrites);
      if (failed !== undefined) return failed;
      try {
        await this.flush();
      } catch (err) {
        return err;
      }
    }
    return undefined;
  }

  /** Writes `count` more and flushes; every one must succeed. */
  async succeed(count: number): Promise<void> {
    for (let i = 0; i < count; i++) await this.writeOne();
    await this.flush();
  }

  /** The daemon ran on: every answered write reads back. */
  async verifyLive(client: NbdClient, when: string): Promise<void> {
    for (const [offset, versions] of this.history) {
      const got = await client.read(offset, writeBytes);
      assert.ok(got.equals(versions.at(-1)!.data), `${when}: the last write answered at ${offset} does not read back`);
    }
  }

  /** After kill -9: the last durable write at each offset or a later one; that is the new durable state. */
  async verifyAfterCrash(client: NbdClient, when: string): Promise<void> {
    for (const [offset, versions] of this.history) {
      const got = await client.read(offset, writeBytes);
      let lastDurable = 0;
      versions.forEach((v, i) => {
        if (v.durable) lastDurable = i;
      });
      const match = versions.findIndex((v, i) => i >= lastDurable && v.data.equals(got));
      assert.ok(match >= 0, `${when}: at ${offset} neither the flushed write nor a later one (${versions.length - 1 - lastDurable} later writes)`);
      this.history.set(offset, [{ data: got, durable: true }]);
    }
    this.notDurable = [];
  }
}

/** `view-is-emergency r0`, trimmed. */
async function isEmergency(dir: string): Promise<string> {
  return (await mustMarsadm(dir, 'view-is-emergency', 'r0')).trim();
}

void test('a full log filesystem never fails a write: emergency mode, kill -9 in it loses nothing flushed, logging resumes once space is back', { timeout: testMsMax }, async (t: TestContext) => {
  const skip = rootSkipReason(['mount', 'umount', 'dd']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const seed = Number(process.env['MARS_TEST_SEED'] ?? Date.now() % 2_147_483_647);
  const random = new Random(seed);
  const outer = await tempDir('mars-enospc');
  const dir = join(outer, 'state');
  const filler = join(dir, 'filler');
  let daemon: Marsd | undefined;
  let client: NbdClient | undefined;
  const extraArgs = ['--log-rotate-bytes', String(4 * MiB)];
  try {
    await mkdir(dir);
    await mustRun('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes},mode=0700`, 'tmpfs', dir]);
    await mustMarsadm(dir, 'create-cluster', '--host', hostName, '--listen', '127.0.0.1:7777');
    const disk = await sparseFile(join(outer, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir, { extraArgs });
    await mustMarsadm(dir, 'create-resource', 'r0', disk);
    client = await connectExport(daemon, 'r0');
    const load = new Load(random, client);

    // 1. Three times the log filesystem: no write fails.
    const failed = await load.untilFailure((3 * tmpfsBytes) / writeBytes);
    assert.equal(failed, undefined, `a write failed although emergency mode should have taken it: ${String(failed)}`);
    t.diagnostic(`${load.writes} writes (${(load.writes * writeBytes) / MiB} MiB) on a ${tmpfsBytes / MiB} MiB log filesystem; seed ${seed}`);
    await load.verifyLive(client, 'after writing three times the log filesystem');
    // With no secondary, reclaim may keep up with the writes (it deletes what is written
    // back), so emergency mode may or may not have come; step 2 forces it.
    t.diagnostic(`emergency mode during the writes: ${stderrLines(daemon).some((l) => /is in emergency mode/.test(l.msg ?? '')) ? 'yes' : 'no (reclaim kept up)'}`);
    assert.equal(daemon.child.exitCode, null, 'marsd is still running');

    // 2. Held full by another file: emergency mode stays; writes and flushes still work.
    // Emergency mode deletes every log the primary holds, so first rotate and delete what
    // is written back: what emergency mode can then free is too little to leave it.
    await mustMarsadm(dir, 'cron');
    const dd = await run('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { timeoutMs: 30_000 });
    assert.match(dd.stderr, /No space left/, `dd filled the tmpfs: ${dd.stderr}`);
    await load.succeed(16);
    await waitFor('view-is-emergency r0 to say 1 on a full log filesystem', async () => (await isEmergency(dir)) === '1', 20_000, 100);
    await load.succeed(16);
    await load.verifyLive(client, 'in emergency mode');
    assert.match(await mustMarsadm(dir, 'view-disk-state', 'r0'), /EmergencyMode/);

    // 3. kill -9 in emergency mode: back in emergency mode, nothing flushed lost.
    client.destroy();
    client = undefined;
    assert.equal(await daemon.kill9(), 137);
    daemon = await startMarsd(dir, { extraArgs });
    const recovered = await rawStatus(dir, 'r0');
    assert.equal(recovered.state, 'serving', `r0 after kill -9 in emergency mode: ${recovered.failure ?? ''}`);
    assert.equal(await isEmergency(dir), '1', 'a restart in emergency mode stays in it while space is short');
    client = await connectExport(daemon, 'r0');
    load.client = client;
    await load.verifyAfterCrash(client, 'after kill -9 in emergency mode');
    await load.succeed(16);

    // 4. Space back: logging again, after a hole in the log numbering.
    await rm(filler);
    await waitFor('r0 to log again once space is back', async () => (await isEmergency(dir)) === '0', 20_000, 100);
    await load.succeed(16);
    await load.verifyLive(client, 'after leaving emergency mode');
    const logger = (await rawStatus(dir, 'r0')).logger as { holeLogNumber?: number } | null | undefined;
    assert.ok((logger?.holeLogNumber ?? 0) > 0, `a hole in the log numbering is recorded: ${JSON.stringify(logger)}`);
    await client.close();
    client = undefined;

    // 5. A clean stop and a restart keep everything.
    assert.equal(await daemon.stop(), 0, 'marsd stops cleanly');
    daemon = await startMarsd(dir, { extraArgs });
    client = await connectExport(daemon, 'r0');
    await load.verifyLive(client, 'after a restart');
    await client.close();
    client = undefined;
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
  } catch (err) {
    if (daemon !== undefined) t.diagnostic(`marsd (exit ${String(daemon.child.exitCode)}, signal ${String(daemon.child.signalCode)}) stderr (tail):\n${daemon.stderr().split('\n').slice(-15).join('\n')}`);
    throw err;
  } finally {
    client?.destroy();
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    const note = await unmountQuietly(dir);
    if (await isMountPoint(dir)) t.diagnostic(`tmpfs at ${dir} is still mounted (${note}); ${outer} is left in place`);
    else await removeDir(outer);
  }
});

/**
 * A full log filesystem while the writeback position is due. Saving the position fails,
 * which costs nothing but replay work after a crash (the device holds the data; recovery
 * from an older position is safe), so it must not take r0 out of service. The operator's
 * first move there is `marsadm log-delete`: it needs the position saved, so it meets the
 * failure, but it must answer in bounded time and leave r0 served. Once space is free
 * again the position must be saved by itself, without new writes, and log-delete and
 * writes work again.
 *
 * The position of the one write stays due until the tmpfs is full because marsd runs
 * with a persist interval (MARS_INTERVALS positionPersistIntervalMs) far longer than the
 * test, and with no reclaim or emergency stage (their thresholds at 0), which would
 * otherwise save it while dd fills the tmpfs or switch to emergency mode once it is full
 * (the test above covers that). So the state is reached by construction, and asserted,
 * not hoped for after a sleep.
 */
void test('a full log filesystem when the writeback position is due: r0 stays served, log-delete answers, and the position is persisted once space is free again', { timeout: testMsMax }, async (t: TestContext) => {
  const skip = rootSkipReason(['mount', 'umount', 'dd']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const outer = await tempDir('mars-enospc-pos');
  const dir = join(outer, 'state');
  const filler = join(dir, 'filler');
  let daemon: Marsd | undefined;
  let client: NbdClient | undefined;
  try {
    await mkdir(dir);
    await mustRun('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes},mode=0700`, 'tmpfs', dir]);
    await mustMarsadm(dir, 'create-cluster', '--host', hostName, '--listen', '127.0.0.1:7777');
    const disk = await sparseFile(join(outer, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir, { intervals: `positionPersistIntervalMs=${positionDueMs}`, extraArgs: ['--space-reclaim', '0:0', '--space-emergency', '0:0'] });
    await mustMarsadm(dir, 'create-resource', 'r0', disk);
    client = await connectExport(daemon, 'r0');
    const data = new Random(99).bytes(writeBytes);
    await client.write(0, data);
    await client.flush();
    const dd = await run('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { timeoutMs: 30_000 });
    assert.match(dd.stderr, /No space left/, `dd filled the tmpfs: ${dd.stderr}`);
    const full = await rawStatus(dir, 'r0');
    assert.ok(full.logger !== null && full.logger !== undefined && BigInt(full.logger.writtenBack.nextSeq) < BigInt(full.logger.logPosition.nextSeq), `the position is due (saved behind the log end) while the tmpfs is full: ${JSON.stringify(full.logger)}`);

    // log-delete meets the failed save, answers, and r0 stays served.
    const started = Date.now();
    const result = await adm(dir, 'log-delete', 'r0');
    t.diagnostic(`log-delete on a full filesystem: exit ${result.code} after ${Date.now() - started} ms: ${result.stdout.trim()} ${result.stderr.trim()}`);
    const failed = await rawStatus(dir, 'r0');
    assert.match(failed.logger?.positionError ?? '', /no space/i, `saving the position failed for want of space: ${JSON.stringify(failed.logger)}`);
    assert.equal(failed.state, 'serving', `r0 after log-delete on a full log filesystem: ${failed.failure ?? ''}`);
    assert.ok(stderrLines(daemon).some((l) => /log-delete r0: position not saved/.test(l.msg ?? '')), 'log-delete says that the position was not saved');
    assert.ok((await client.read(0, writeBytes)).equals(data), 'the data reads back while the log filesystem is full');

    // Space is back: the position is saved by itself, without new writes or commands.
    await rm(filler);
    await waitWrittenBack(dir, 'r0', 10_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: after space was freed the writeback position was not persisted again (no writes follow)`);
    });
    assert.equal((await rawStatus(dir, 'r0')).logger?.positionError ?? undefined, undefined, 'the failure is cleared');
    assert.equal((await mustMarsadm(dir, 'view-replay-rest', 'r0')).trim(), '0');
    await mustMarsadm(dir, 'log-delete', 'r0');
    const more = new Random(100).bytes(writeBytes);
    await client.write(writeBytes, more, { fua: true });
    assert.ok((await client.read(writeBytes, writeBytes)).equals(more), 'writes work again');
    await client.close();
    client = undefined;
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
  } catch (err) {
    if (daemon !== undefined) t.diagnostic(`marsd stderr (tail):\n${daemon.stderr().split('\n').slice(-8).join('\n')}`);
    throw err;
  } finally {
    client?.destroy();
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    const note = await unmountQuietly(dir);
    if (await isMountPoint(dir)) t.diagnostic(`tmpfs at ${dir} is still mounted (${note}); ${outer} is left in place`);
    else await removeDir(outer);
  }
});

void test('in emergency mode the primary deletes its frozen last log, so it logs again by itself on a filesystem that held only that log, with a secondary fetching at its end', { timeout: testMsMax }, async (t: TestContext) => {
  const skip = rootSkipReason(['mount', 'umount', 'dd']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const random = new Random(Number(process.env['MARS_TEST_SEED'] ?? 4242));
  const outer = await tempDir('mars-enospc');
  const dir = join(outer, 'state');
  const betaDir = join(outer, 'beta');
  let daemon: Marsd | undefined;
  let beta: Marsd | undefined;
  let client: NbdClient | undefined;
  try {
    await mkdir(dir);
    await mustRun('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes},mode=0700`, 'tmpfs', dir]);
    // Peer ports of their own: other test files listen on 127.0.0.1:7777 at the same time, and a
    // join must reach this cluster's alpha.
    const alphaPeer = `127.0.0.1:${await freePort('127.0.0.1')}`;
    const betaPeer = `127.0.0.2:${await freePort('127.0.0.2')}`;
    await mustMarsadm(dir, 'create-cluster', '--host', hostName, '--listen', alphaPeer);
    const disk = await sparseFile(join(outer, 'disk0.img'), deviceBytes);
    daemon = await startMarsd(dir); // logs rotate at 1 GiB: everything goes to log 1
    await mustMarsadm(dir, 'create-resource', 'r0', disk);
    // A secondary whose fetch stream waits at the end of log 1 holds that file open: the
    // deleted log's blocks stayed allocated and alpha could never leave emergency mode.
    await mustMarsadm(betaDir, 'join-cluster', alphaPeer, '--host', 'beta', '--listen', betaPeer, '--secret-file', join(dir, 'cluster.secret'));
    beta = await startMarsd(betaDir, { nbdHost: '127.0.0.2' });
    await mustMarsadm(betaDir, 'join-resource', 'r0', await sparseFile(join(outer, 'disk-beta.img'), deviceBytes));
    client = await connectExport(daemon, 'r0');
    const load = new Load(random, client);
    await load.succeed((8 * MiB) / writeBytes);
    await waitFor('beta to fetch everything alpha wrote', async () => (await mustMarsadm(betaDir, 'view-repl-state', 'r0')).trim() === 'Replicating' && (await mustMarsadm(betaDir, 'view-fetch-rest', 'r0')).trim() === '0', 30_000, 100);
    // Leave about 2 MiB free: the stage is emergency, and only log 1 could make room.
    const { bavail, bsize } = await statfs(dir);
    const fillerBlocks = Math.floor((bavail * bsize - 2 * MiB) / (64 * KiB));
    await mustRun('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=64k', `count=${fillerBlocks}`]);
    await waitFor('emergency mode', () => stderrLines(daemon!).some((l) => /is in emergency mode/.test(l.msg ?? '')), 20_000, 50);
    await waitFor('r0 to log again without an operator', async () => (await isEmergency(dir)) === '0', 20_000, 100);
    const logs = (await readdir(join(dir, 'resource-r0'))).filter((n) => n.startsWith('log-'));
    assert.ok(!logs.includes('log-000000001-alpha'), `the frozen log 1 is gone: ${logs.join(', ')}`);
    await load.succeed(16);
    await load.verifyLive(client, 'after logging again');
  } catch (err) {
    if (daemon !== undefined) t.diagnostic(`marsd stderr (tail):\n${daemon.stderr().split('\n').slice(-15).join('\n')}`);
    throw err;
  } finally {
    client?.destroy();
    if (daemon !== undefined) await settleWithin(daemon.kill9(), 10_000);
    if (beta !== undefined) await settleWithin(beta.kill9(), 10_000);
    const note = await unmountQuietly(dir);
    if (await isMountPoint(dir)) t.diagnostic(`tmpfs at ${dir} is still mounted (${note}); ${outer} is left in place`);
    else await removeDir(outer);
  }
});
