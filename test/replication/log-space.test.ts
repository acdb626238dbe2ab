/**
 * Log space across members, with real daemons: alpha (the primary) has its state
 * directory on a 48 MiB tmpfs, its device and the others' state elsewhere.
 *
 * - A dead secondary and writes of three times the log space: every write succeeds and
 *   reads back, alpha goes through emergency mode and logs again after a hole; the
 *   secondary, back, stops before the hole, consistent (its device is a prefix of its
 *   log copies applied to what it had), and after invalidate equals alpha byte for byte.
 * - A secondary behind (pause-fetch): reclaim deletes only logs it has fetched, in order;
 *   no emergency; it catches up afterwards and equals alpha.
 * - A secondary on a small log filesystem: it deletes the copies it has replayed and
 *   pauses fetch when low; the primary never notices, and the secondary ends equal to it.
 * - leave-resource --host: refused for an unknown host, the primary and a live host;
 *   accepted for a dead one, which releases its hold so log-delete frees the logs; the
 *   dead host, restarted, leaves the resource by itself (its directory goes) and can join
 *   it again.
 *
 * Needs root (mount); skipped otherwise.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { checkPrefix } from '../support/prefix-checker.js';
import { rootSkipReason, stderrLines } from '../support/daemon-helpers.js';
import { adm } from '../support/adm.js';
import { sparseFile, waitFor } from '../support/processes.js';
import { start } from '../support/cluster-helpers.js';
import { kill9, setSwitch, view } from '../support/roles-helpers.js';
import { assertSameAsPrimary, connect, mustAdm, randomDevice, readDevice, readExport, status, waitCaughtUp } from '../support/replication-helpers.js';
import { EmergencySampler, MiB, WriteLoad, resourceDirOf, seededRandom, startSmallCluster, stopSmallCluster } from '../support/space-helpers.js';

const tmpfsBytes = 48 * MiB;
const deviceBytes = 32 * MiB;
const rotate = ['--log-rotate-bytes', String(4 * MiB)];
const testMsMax = 240_000;

void test('a dead secondary and writes of three times the log space: no write fails, a hole, the secondary stays consistent and resyncs with invalidate', { timeout: testMsMax }, async (t: TestContext) => {
  const skip = rootSkipReason(['mount', 'umount']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const { random, seed } = seededRandom();
  const c = await startSmallCluster('mars-space-dead', ['alpha', 'beta'], tmpfsBytes, rotate);
  const [alpha, beta] = c.hosts as [NonNullable<(typeof c.hosts)[0]>, NonNullable<(typeof c.hosts)[0]>];
  let sampler: EmergencySampler | undefined;
  try {
    const alphaDisk = await sparseFile(join(c.root, 'disk-alpha.img'), deviceBytes);
    const betaDisk = await randomDevice(join(c.root, 'disk-beta.img'), deviceBytes, seed);
    await mustAdm(alpha, 'create-resource', 'r0', alphaDisk);
    await mustAdm(beta, 'join-resource', 'r0', betaDisk);
    const client = await connect(alpha, 'r0');
    const load = new WriteLoad(random, client, deviceBytes);
    await load.write(4 * MiB);
    await waitCaughtUp(alpha, beta, 'r0');
    // beta fetches more but does not replay it: its device is stable, its copies hold what follows.
    await setSwitch(beta, 'r0', 'replay', false);
    await load.write(2 * MiB);
    await waitFor('beta to fetch what alpha wrote', async () => (await status(beta, 'r0')).replica?.fetch.restBytes === 0 && (await status(beta, 'r0')).replica?.fetch.state === 'caught-up', 30_000, 100);
    const before = await status(beta, 'r0');
    const from = before.replica!.replay.position!;
    const image0 = await readDevice(betaDisk, deviceBytes);
    await kill9(beta);

    sampler = new EmergencySampler(alpha, 'r0');
    await load.write(3 * tmpfsBytes);
    t.diagnostic(`${load.writes} writes of 256 KiB, all answered; seed ${seed}`);
    await load.verify(client, 'after three times the log space');
    const alphaLog = stderrLines(alpha.daemon!).map((l) => l.msg ?? '');
    assert.ok(sampler.everEmergency || alphaLog.some((m) => /is in emergency mode/.test(m)), 'alpha never went into emergency mode');
    // Whether a stage message still names beta's hold depends on timing: emergency mode
    // deletes every log, after which beta holds nothing back. view names beta in any case.
    assert.ok(alphaLog.some((m) => /log space: stage (warn|reclaim|emergency) /.test(m)), 'the daemon log says which stage log space reached');
    assert.match(await mustAdm(alpha, 'view', 'r0'), /beta Secondary .*unreachable for \d+ s/);
    assert.match(await mustAdm(alpha, 'view', 'r0'), /space: .* free of 48\.00 MiB/);
    await waitFor('alpha to log again', async () => (await view(alpha, 'is-emergency', 'r0')) === '0', 30_000, 100);
    sampler.stop();
    const alphaStatus = (await status(alpha, 'r0')) as { logger?: { holeLogNumber?: number } | null };
    const hole = alphaStatus.logger?.holeLogNumber ?? 0;
    assert.ok(hole > 0, 'a hole in the log numbering');

    // beta returns: it replays what it has, stops before the hole, consistent and outdated.
    await start(beta);
    await setSwitch(beta, 'r0', 'replay', true);
    await waitFor('beta to stop at the hole', async () => (await view(beta, 'repl-state', 'r0')) === 'StoppedAtHole', 30_000, 200);
    await waitFor('beta to replay everything it holds', async () => {
      const r = (await status(beta, 'r0')).replica;
      return r?.replay.restBytes === 0 && (r.replay.state === 'caught-up' || r.replay.state === 'idle');
    }, 30_000, 100);
    assert.equal(await view(beta, 'is-consistent', 'r0'), '1');
    assert.equal(await view(beta, 'disk-state', 'r0'), 'OutDated');
    const handover = await adm(beta.dir, 'primary', 'r0');
    assert.equal(handover.code, 1, `a planned handover to a host before the hole must be refused: ${handover.stdout}`);
    assert.match(handover.stderr, /stopped before the hole at log \d+/);
    assert.equal(await view(alpha, 'is-primary', 'r0'), '1', 'alpha still serves');
    const snapshot = await readDevice(betaDisk, deviceBytes);
    const verdict = await checkPrefix({ logDir: resourceDirOf(beta, 'r0'), host: 'alpha', initial: image0, snapshot, sizeBytes: deviceBytes, from: { logNumber: from.logNumber, offsetBytes: from.offsetBytes } });
    assert.ok(verdict.ok, `beta is not a prefix of alpha's history: ${verdict.ok ? '' : verdict.detail}`);
    t.diagnostic(`beta at the hole: ${verdict.detail}`);

    // invalidate: a fast full sync makes beta equal to alpha.
    await mustAdm(beta, 'invalidate', 'r0');
    await waitCaughtUp(alpha, beta, 'r0', 90_000);
    assert.equal(await view(beta, 'repl-state', 'r0'), 'Replicating');
    await assertSameAsPrimary(await readExport(client, deviceBytes), beta, betaDisk, 'after invalidate');
    await client.close();
  } finally {
    sampler?.stop();
    const note = await stopSmallCluster(c);
    if (note !== undefined) t.diagnostic(note);
  }
});

void test('a secondary behind: reclaim deletes only what it has fetched, in order, and it catches up afterwards', { timeout: testMsMax }, async (t: TestContext) => {
  const skip = rootSkipReason(['mount', 'umount']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const { random, seed } = seededRandom();
  const c = await startSmallCluster('mars-space-behind', ['alpha', 'beta'], tmpfsBytes, rotate);
  const [alpha, beta] = c.hosts as [NonNullable<(typeof c.hosts)[0]>, NonNullable<(typeof c.hosts)[0]>];
  let sampler: EmergencySampler | undefined;
  let watcher: ReturnType<typeof setInterval> | undefined;
  try {
    const alphaDisk = await sparseFile(join(c.root, 'disk-alpha.img'), deviceBytes);
    const betaDisk = await randomDevice(join(c.root, 'disk-beta.img'), deviceBytes, seed);
    await mustAdm(alpha, 'create-resource', 'r0', alphaDisk);
    await mustAdm(beta, 'join-resource', 'r0', betaDisk);
    const client = await connect(alpha, 'r0');
    const load = new WriteLoad(random, client, deviceBytes);
    await load.write(24 * MiB);
    await waitCaughtUp(alpha, beta, 'r0', 60_000);
    await mustAdm(beta, 'pause-fetch', 'r0');
    const fetchedName = (await status(beta, 'r0')).replica!.fetch.logName!;
    const fetched = Number(fetchedName.slice(4, 13));
    // Continuously: every log from the one beta fetches on stays on alpha, and deletion goes from the oldest.
    const problems: string[] = [];
    let firstKept = 0;
    watcher = setInterval(() => {
      void status(alpha, 'r0')
        .then((s) => {
          const numbers = s.logFiles.map((f) => Number(f.name.slice(4, 13)));
          const lowest = Math.min(...numbers);
          if (lowest > fetched) problems.push(`log ${fetched}, which beta needs, was deleted (alpha holds ${numbers.join(' ')})`);
          if (lowest < firstKept) problems.push(`logs reappeared: ${numbers.join(' ')}`);
          firstKept = lowest;
          numbers.forEach((n, i) => {
            if (i > 0 && n !== numbers[i - 1]! + 1) problems.push(`deletion left a gap: ${numbers.join(' ')}`);
          });
        })
        .catch(() => undefined);
    }, 100);
    sampler = new EmergencySampler(alpha, 'r0');
    // 24 + 10 MiB of logs: below the reclaim threshold (16.8 MiB free of 48), well above the emergency one (9.6 MiB).
    await load.write(10 * MiB);
    await waitFor('reclaim to delete logs beta has fetched', async () => (await status(alpha, 'r0')).logFiles.every((f) => Number(f.name.slice(4, 13)) >= fetched), 30_000, 100);
    clearInterval(watcher);
    watcher = undefined;
    assert.deepEqual(problems, []);
    assert.equal(sampler.everEmergency, false, 'a secondary behind must not push the primary into emergency mode while reclaim has room');
    assert.ok((await status(alpha, 'r0')).logFiles.some((f) => Number(f.name.slice(4, 13)) === fetched), `log ${fetched} is still there for beta`);
    await mustAdm(beta, 'resume-fetch', 'r0');
    await waitCaughtUp(alpha, beta, 'r0', 60_000);
    await assertSameAsPrimary(await readExport(client, deviceBytes), beta, betaDisk, 'after catching up');
    await client.close();
  } finally {
    if (watcher !== undefined) clearInterval(watcher);
    sampler?.stop();
    const note = await stopSmallCluster(c);
    if (note !== undefined) t.diagnostic(note);
  }
});

void test('leave-resource --host removes a dead member: refused for bad hosts, releases its hold, and the dead host leaves by itself', { timeout: testMsMax }, async (t: TestContext) => {
  const skip = rootSkipReason(['mount', 'umount']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const { random, seed } = seededRandom();
  const c = await startSmallCluster('mars-space-leave', ['alpha', 'beta', 'gamma'], tmpfsBytes, rotate);
  const [alpha, beta, gamma] = c.hosts as [NonNullable<(typeof c.hosts)[0]>, NonNullable<(typeof c.hosts)[0]>, NonNullable<(typeof c.hosts)[0]>];
  try {
    await mustAdm(alpha, 'create-resource', 'r0', await sparseFile(join(c.root, 'disk-alpha.img'), deviceBytes));
    await mustAdm(beta, 'join-resource', 'r0', await randomDevice(join(c.root, 'disk-beta.img'), deviceBytes, seed));
    await mustAdm(gamma, 'join-resource', 'r0', await sparseFile(join(c.root, 'disk-gamma.img'), deviceBytes));
    const client = await connect(alpha, 'r0');
    const load = new WriteLoad(random, client, deviceBytes);
    await load.write(2 * MiB);
    await waitCaughtUp(alpha, beta, 'r0');
    await kill9(beta);
    await load.write(10 * MiB);
    await waitCaughtUp(alpha, gamma, 'r0');
    await mustAdm(alpha, 'log-rotate', 'r0');
    const held = await mustAdm(alpha, 'log-delete', 'r0');
    assert.match(held, /no log file can be deleted yet/, 'the dead beta holds the logs');
    assert.match(await mustAdm(alpha, 'view', 'r0'), /log-delete held back by beta/);

    const refused = async (host: typeof alpha, args: string[], pattern: RegExp): Promise<void> => {
      const r = await adm(host.dir, 'leave-resource', 'r0', ...args);
      assert.equal(r.code, 1, `leave-resource r0 ${args.join(' ')} on ${host.name} must fail: ${r.stdout}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.match(r.stderr, pattern);
    };
    await refused(alpha, ['--host', 'nosuch'], /nosuch is not a member of resource r0/);
    await refused(gamma, ['--host', 'alpha'], /alpha is the primary of r0/);
    await refused(alpha, ['--host', 'gamma'], /gamma is alive/);
    await mustAdm(alpha, 'leave-resource', 'r0', '--host', 'beta');
    await waitFor('beta to be gone from the members on alpha', async () => !(await status(alpha, 'r0')).members.some((m) => m.host === 'beta'), 10_000, 100);
    const before = (await status(alpha, 'r0')).logFiles.length;
    const deleted = await mustAdm(alpha, 'log-delete', 'r0');
    assert.match(deleted, /deleted log-/, `the hold is released: ${deleted}`);
    assert.ok((await status(alpha, 'r0')).logFiles.length < before);

    // beta comes back: it learns it was removed and leaves r0 by itself; its directory goes (its device stays).
    await start(beta);
    await waitFor('beta to leave r0 by itself', async () => (await adm(beta.dir, 'view', 'r0')).code !== 0 && !existsSync(resourceDirOf(beta, 'r0')), 30_000, 200);
    const betaLog = stderrLines(beta.daemon!);
    assert.ok(betaLog.some((l) => /beta was removed from r0 by another member/.test(l.msg ?? '')), 'beta says why it left');
    assert.deepEqual(betaLog.filter((l) => (l.level ?? 0) >= 50).map((l) => l.msg), [], 'no error while beta leaves');
    await load.write(1 * MiB);
    await waitCaughtUp(alpha, gamma, 'r0');
    assert.ok(!(await status(alpha, 'r0')).members.some((m) => m.host === 'beta'));
    // join-resource makes it a member again (its old removal no longer counts), with a sync.
    await mustAdm(beta, 'join-resource', 'r0', join(c.root, 'disk-beta.img'));
    await waitCaughtUp(alpha, beta, 'r0');
    assert.ok((await status(alpha, 'r0')).members.some((m) => m.host === 'beta'), 'beta is a member again on alpha');
    await client.close();
  } finally {
    const note = await stopSmallCluster(c);
    if (note !== undefined) t.diagnostic(note);
  }
});

/**
 * Beta (its log directory on a small tmpfs) fetches while its replay is off, until fetch
 * pauses for lack of room; `pausedFor` checks why. Then replay runs again: beta deletes
 * what it replayed, catches up, and alpha never notices.
 */
async function secondaryOnSmallFilesystem(t: TestContext, prefix: string, betaArgs: string[], writeBytes: number, pausedFor: RegExp): Promise<void> {
  const skip = rootSkipReason(['mount', 'umount']);
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const { random, seed } = seededRandom();
  const c = await startSmallCluster(prefix, ['alpha', 'beta'], tmpfsBytes, rotate, betaArgs, [1]);
  const [alpha, beta] = c.hosts as [NonNullable<(typeof c.hosts)[0]>, NonNullable<(typeof c.hosts)[0]>];
  let sampler: EmergencySampler | undefined;
  try {
    const alphaDisk = await sparseFile(join(c.root, 'disk-alpha.img'), deviceBytes);
    const betaDisk = await randomDevice(join(c.root, 'disk-beta.img'), deviceBytes, seed);
    await mustAdm(alpha, 'create-resource', 'r0', alphaDisk);
    await mustAdm(beta, 'join-resource', 'r0', betaDisk);
    const client = await connect(alpha, 'r0');
    const load = new WriteLoad(random, client, deviceBytes);
    await load.write(1 * MiB);
    await waitCaughtUp(alpha, beta, 'r0');
    sampler = new EmergencySampler(alpha, 'r0');
    // A slow replayer for a while: fetched copies pile up on beta's small filesystem.
    await setSwitch(beta, 'r0', 'replay', false);
    await load.write(writeBytes);
    await waitFor('beta to pause fetch for lack of room', async () => (await status(beta, 'r0')).replica?.fetch.state === 'paused-no-space', 30_000, 100);
    const paused = (await status(beta, 'r0')).replica?.fetch;
    assert.match(paused?.error ?? '(no error)', pausedFor, `why fetch paused: ${JSON.stringify(paused)}`);
    await setSwitch(beta, 'r0', 'replay', true);
    await load.write(tmpfsBytes);
    await waitCaughtUp(alpha, beta, 'r0', 90_000);
    assert.equal(sampler.everEmergency, false, 'the primary never went into emergency mode for a secondary');
    const betaLogs = (await status(beta, 'r0')).logFiles.map((f) => Number(f.name.slice(4, 13)));
    assert.ok(Math.min(...betaLogs) > 1, `beta deleted the copies it replayed: ${betaLogs.join(' ')}`);
    await load.verify(client, 'on alpha');
    await assertSameAsPrimary(await readExport(client, deviceBytes), beta, betaDisk, 'after beta caught up');
    await client.close();
  } finally {
    sampler?.stop();
    const note = await stopSmallCluster(c);
    if (note !== undefined) t.diagnostic(note);
  }
}

void test('a secondary on a small log filesystem deletes what it replayed and pauses fetch when low, and the primary never notices', { timeout: testMsMax }, async (t: TestContext) => {
  // Its space monitor (emergency stage) or the state reserve, whichever comes first.
  await secondaryOnSmallFilesystem(t, 'mars-space-secondary', rotate, 40 * MiB, /log space|no space left|kept for replay's state files/);
});

void test('a secondary whose fetch fills its log filesystem stops at the state reserve: replay can still save its state, and catches up', { timeout: testMsMax }, async (t: TestContext) => {
  // No emergency stage on beta: nothing pauses fetch before the filesystem is full but the
  // state reserve. Without it fetch took the last block, replay could not save its dirty mark,
  // and beta never caught up.
  await secondaryOnSmallFilesystem(t, 'mars-space-reserve', [...rotate, '--space-emergency', '0:0'], tmpfsBytes, /the last \d+ are kept for replay's state files/);
});
