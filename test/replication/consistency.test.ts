/**
 * The anytime consistency check against real daemons: while two NBD clients drive a seeded
 * random load against primary alpha (writes of 512 B..1 MiB at 512-byte and byte offsets,
 * trims, write-zeroes, flushes), secondary beta's disk is copied at random moments with
 * replay paused for the copy. Each copy taken after beta became consistent must equal
 * alpha's device as of some prefix of alpha's log, rebuilt from alpha's real log files
 * (test/support/prefix-checker.ts) starting from the all-zero device alpha was created on.
 * The prefixes must not go back in time, must not lie beyond the replay position beta
 * reported at the copy, and after beta has caught up the copy must be the whole log and
 * the primary's export. Each copy is checked from the prefix the copy before it matched
 * (that copy's image is the device there): one pass over the log for all copies, not
 * one per copy, and a copy that went back in time matches no prefix from there. Two deliberately damaged copies show that the checker can fail
 * here. Alpha's log is rotated between some copies, so replay and the checker cross log
 * files. No log is deleted during the test (no log-delete, no cron), so alpha's log holds
 * every record since the resource was created.
 *
 * A copy taken while beta was still InConsistent (during its sync; the view said so before
 * and after the copy) is not required to be a prefix; its check is only reported.
 *
 * Reproduce a run with CONSISTENCY_SEED=N (every assertion message names the seed). The
 * seed fixes the requests and the pauses between copies; how they interleave with the
 * daemons is real time, so the records at which copies fall differ from run to run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { Random } from '../../src/core/random.js';
import { formatLogName, parseLogName } from '../../src/log/index.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { adm } from '../support/adm.js';
import { sparseFile, waitFor } from '../support/processes.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import { checkPrefix, prefixCheckSectorBytes, readDeviceImage, type PrefixCheckResult, type PrefixPosition } from '../support/prefix-checker.js';
import { connect, firstDifference, MiB, mustAdm, randomDevice, readExport, seededBytes, startCluster, status, waitCaughtUp, type RawPos } from '../support/replication-helpers.js';

const seed = Number(process.env['CONSISTENCY_SEED'] ?? 20_240_611);
if (!Number.isSafeInteger(seed)) throw new Error(`CONSISTENCY_SEED must be an integer, not ${process.env['CONSISTENCY_SEED']}`);
const resource = 'r1';
const sizeBytes = 32 * MiB;
const sectorBytes = 512;
const blockBytes = 4096;
/**
 * Copies taken under load after beta became consistent: a few, on real files and real
 * logs; the simulator checks that every secondary is a prefix after every step of
 * hundreds of seeds (docs/simulator.md).
 */
const copiesCount = 3;
/** Seeded pause before each copy. */
const copyDelayMsMin = 100;
const copyDelayMsMax = 500;
const clientsCount = 2;
/** Requests one client keeps in flight (the server allows 64). */
const inflightPerClientMax = 4;
const preloadOpsPerClient = 40;
const syncLoadOpsPerClient = 60;
/** The load during the copies goes on until the copies are done, but no longer than this. */
const copyLoadOpsPerClientMax = 2_000;
/** pause-replay and resume-replay answer within a second or two under this load; far longer is a hang. */
const switchMsMax = 20_000;
const controlMsMax = 30_000;
const writeBytesMax = MiB;
const zeroBytesMax = 4 * MiB;
const unalignedWriteBytesMax = 64 * 1024;
/** The distinctive last write: every earlier prefix lacks its random bytes. */
const finalWriteBytes = 64 * 1024;

const withSeed = (what: string): string => `${what} (CONSISTENCY_SEED=${seed})`;

type LoadOp =
  | { kind: 'write'; offsetBytes: number; data: Buffer }
  | { kind: 'trim' | 'zeroes'; offsetBytes: number; lengthBytes: number }
  | { kind: 'flush' };

/** 512 B .. `maxBytes` in whole sectors, log-uniform: about as many small requests as large ones. */
function sectorLength(random: Random, maxBytes: number): number {
  const sectorsMax = maxBytes / sectorBytes;
  const sectors = Math.floor(2 ** ((random.uint32() / 2 ** 32) * Math.log2(sectorsMax + 1)));
  return Math.min(sectorsMax, Math.max(1, sectors)) * sectorBytes;
}

/** One request of the random load: mostly writes at 512-byte offsets, some at byte offsets, trims, write-zeroes and flushes. */
function randomOp(random: Random): LoadOp {
  const roll = random.int(100);
  if (roll < 3) return { kind: 'flush' };
  if (roll < 21) {
    const lengthBytes = sectorLength(random, zeroBytesMax);
    const offsetBytes = random.int((sizeBytes - lengthBytes) / sectorBytes + 1) * sectorBytes;
    return { kind: roll < 12 ? 'trim' : 'zeroes', offsetBytes, lengthBytes };
  }
  if (roll < 29) {
    const lengthBytes = 1 + random.int(unalignedWriteBytesMax);
    return { kind: 'write', offsetBytes: random.int(sizeBytes - lengthBytes + 1), data: seededBytes(random, lengthBytes) };
  }
  const lengthBytes = sectorLength(random, writeBytesMax);
  const offsetBytes = random.int((sizeBytes - lengthBytes) / sectorBytes + 1) * sectorBytes;
  return { kind: 'write', offsetBytes, data: seededBytes(random, lengthBytes) };
}

function issue(client: NbdClient, op: LoadOp): Promise<void> {
  switch (op.kind) {
    case 'write':
      return client.write(op.offsetBytes, op.data);
    case 'trim':
      return client.trim(op.offsetBytes, op.lengthBytes);
    case 'zeroes':
      return client.writeZeroes(op.offsetBytes, op.lengthBytes);
    case 'flush':
      return client.flush();
  }
}

/** Issues seeded random requests with a bounded number in flight until `opsMax` or `stop()`; returns how many. */
async function runLoad(client: NbdClient, random: Random, opsMax: number, stop: () => boolean = () => false): Promise<number> {
  const inflight = new Set<Promise<void>>();
  let failure: Error | undefined;
  let ops = 0;
  for (; ops < opsMax && !stop() && failure === undefined; ops++) {
    const op = randomOp(random);
    const request: Promise<void> = issue(client, op).then(
      () => void inflight.delete(request),
      (err: unknown) => {
        inflight.delete(request);
        failure ??= new Error(withSeed(`load request ${op.kind} ${'offsetBytes' in op ? op.offsetBytes : ''} failed: ${(err as Error).message}`));
      },
    );
    inflight.add(request);
    if (inflight.size >= inflightPerClientMax) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  if (failure !== undefined) throw failure;
  return ops;
}

/** Runs the load from every client at once; resolves with the requests issued. */
async function runLoads(clients: readonly NbdClient[], randoms: readonly Random[], opsMax: number, stop?: () => boolean): Promise<number> {
  const counts = await Promise.all(clients.map((c, i) => runLoad(c, randoms[i]!, opsMax, stop)));
  return counts.reduce((a, b) => a + b, 0);
}

/** A copy of the secondary's disk and what its daemon said when it was taken. */
interface DeviceCopy {
  readonly label: string;
  readonly image: Buffer;
  /** Beta's replay position (its applied records end just before `nextSeq`). */
  readonly position: RawPos;
  readonly consistent: boolean;
}

/** A prefix of alpha's log that a copy was found to equal: the device there, and where the next record starts. */
interface VerifiedPrefix {
  readonly label: string;
  readonly image: Buffer | 'zero';
  /** Just after the prefix; undefined for the empty prefix (the start of alpha's first log). */
  readonly at: PrefixPosition | undefined;
  /** Records from the start of alpha's log up to here. */
  readonly prefixRecords: number;
}

const emptyPrefix: VerifiedPrefix = { label: 'the start', image: 'zero', at: undefined, prefixRecords: 0 };

const describePos = (p: RawPos): string => `${formatLogName(p.logNumber, p.logHost)}@${p.offsetBytes} nextSeq ${p.nextSeq}`;

/** Records up to a replay position (the logger's first seq is 1). */
const recordsBefore = (p: RawPos): number => Number(p.nextSeq) - 1;

void describe('a secondary copied at any moment equals the primary as of a prefix of its log', { timeout: 240_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  let clients: NbdClient[] = [];
  const randoms = Array.from({ length: clientsCount }, (_, i) => new Random(seed * 7 + i + 1));
  const moments = new Random(seed ^ 0x5eed);
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;
  const device = (h: TestHost): string => join(root, `${h.name}.img`);
  const logDir = (): string => join(alpha().dir, `resource-${resource}`);
  /** Whether `snapshot` is the device after some prefix at or after `base` (the counts in the result are from `base` on). */
  const check = (snapshot: Buffer, base: VerifiedPrefix = emptyPrefix): Promise<PrefixCheckResult> => {
    const from = base.at === undefined ? undefined : { logNumber: parseLogName(base.at.logName)!.logNumber, offsetBytes: base.at.offsetBytes };
    return checkPrefix({ logDir: logDir(), host: 'alpha', initial: base.image, snapshot, sizeBytes, ...(from === undefined ? {} : { from }) });
  };
  const copies: DeviceCopy[] = [];
  /** The prefix each copy of `copies` equals, in the same order. */
  const verified: VerifiedPrefix[] = [];
  let inconsistentImage: Buffer | undefined;
  let finalCopy: DeviceCopy | undefined;
  let finalWrite = { offsetBytes: 0, lengthBytes: 0 };

  /** `marsadm pause-replay` or `resume-replay` on `host`, failing with the replay status if it hangs. */
  async function switchReplay(host: TestHost, command: 'pause-replay' | 'resume-replay'): Promise<void> {
    // What the marsadm command sends, straight over the control socket (no process per copy).
    const on = command === 'resume-replay';
    await callDaemon(join(host.dir, 'control.sock'), 'switch', { name: resource, switch: 'replay', on }, switchMsMax).catch(async (err: unknown) => {
      const replay = (await status(host, resource)).replica?.replay;
      throw new Error(withSeed(`${command} on ${host.name}: ${(err as Error).message.trim()}; replay now: ${JSON.stringify(replay)}`));
    });
  }

  /** pause-replay, read beta's disk, check that replay did not move meanwhile, resume-replay. */
  async function copyBeta(label: string): Promise<DeviceCopy> {
    await switchReplay(beta(), 'pause-replay');
    try {
      const paused = (await status(beta(), resource)).replica;
      assert.ok(paused !== null && paused !== undefined, withSeed(`${label}: beta has no replica status`));
      assert.equal(paused.replay.state, 'paused', withSeed(`${label}: replay after pause-replay: ${JSON.stringify(paused.replay)}`));
      const position = paused.replay.position;
      assert.ok(position !== null, withSeed(`${label}: no replay position`));
      const image = await readDeviceImage(device(beta()), sizeBytes);
      const afterCopy = (await status(beta(), resource)).replica;
      assert.deepEqual(afterCopy?.replay.position, position, withSeed(`${label}: replay moved during the copy`));
      return { label, image, position, consistent: paused.consistent };
    } finally {
      await switchReplay(beta(), 'resume-replay');
    }
  }

  before(async () => {
    ({ root, hosts } = await startCluster('mars-consistency', 2));
    await sparseFile(device(alpha()), sizeBytes);
    await randomDevice(device(beta()), sizeBytes, seed);
    await mustAdm(alpha(), 'create-resource', resource, device(alpha()));
    for (let i = 0; i < clientsCount; i++) clients.push(await connect(alpha(), resource));
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    clients = [];
    await cleanup(root, hosts);
  });

  void test('a secondary that joins under load becomes consistent; a copy taken while InConsistent is exempt', async (t) => {
    const startedMs = Date.now();
    await runLoads(clients, randoms, preloadOpsPerClient);
    await mustAdm(beta(), 'join-resource', resource, device(beta()));
    const joinedMs = Date.now();
    const load = runLoads(clients, randoms, syncLoadOpsPerClient);
    // A copy while InConsistent need not be any prefix; keep one only if the flag said 0 before and after it.
    const inconsistent = async (): Promise<boolean> => (await status(beta(), resource)).replica?.consistent !== true;
    if (await inconsistent()) {
      const image = await readDeviceImage(device(beta()), sizeBytes);
      if (await inconsistent()) inconsistentImage = image;
    }
    await load;
    await waitFor('beta to become consistent', async () => !(await inconsistent()), 60_000, 100);
    t.diagnostic(`preload ${joinedMs - startedMs} ms; join to consistent ${Date.now() - joinedMs} ms; ${inconsistentImage === undefined ? 'no copy while InConsistent' : 'a copy taken while InConsistent'}`);
    assert.equal((await adm(beta().dir, 'view-is-consistent', resource)).stdout.trim(), '1', withSeed('view-is-consistent once consistent'));
  });

  void test('every copy taken under a random write load with replay paused equals the primary as of a prefix of its log', async (t) => {
    const startedMs = Date.now();
    let copying = true;
    const takeCopies = async (): Promise<void> => {
      try {
        for (let i = 0; i < copiesCount; i++) {
          await new Promise((r) => setTimeout(r, copyDelayMsMin + moments.int(copyDelayMsMax - copyDelayMsMin)));
          // Now and then a new log file, so that replay and the checker cross rotations.
          if (i % 2 === 1) await callDaemon(join(alpha().dir, 'control.sock'), 'log-rotate', { name: resource }, controlMsMax);
          copies.push(await copyBeta(`copy ${i} at ${Date.now() - startedMs} ms`));
        }
      } finally {
        copying = false;
      }
    };
    const [ops] = await Promise.all([runLoads(clients, randoms, copyLoadOpsPerClientMax, () => !copying), takeCopies()]);
    t.diagnostic(`${ops} requests in ${Date.now() - startedMs} ms during ${copies.length} copies (seed ${seed})`);
    assert.ok(ops > copiesCount * 10, withSeed(`the load ran during the copies: ${ops} requests`));

    let previous = emptyPrefix;
    for (const copy of copies) {
      assert.ok(copy.consistent, withSeed(`${copy.label}: beta was consistent`));
      // From the prefix of the copy before: a copy that went back in time matches none from there.
      const result = await check(copy.image, previous);
      assert.ok(result.ok, withSeed(`${copy.label} (replay at ${describePos(copy.position)}) is no prefix at or after the prefix ${previous.prefixRecords} of ${previous.label}: ${result.detail}`));
      const prefixRecords = previous.prefixRecords + result.prefixRecords;
      t.diagnostic(`${copy.label}: replay at ${describePos(copy.position)}; prefix ${prefixRecords}: ${result.detail}`);
      assert.ok(prefixRecords <= recordsBefore(copy.position), withSeed(`${copy.label}: prefix ${prefixRecords} lies beyond the replay position ${describePos(copy.position)}`));
      previous = { label: copy.label, image: copy.image, at: result.at, prefixRecords };
      verified.push(previous);
    }
    if (inconsistentImage !== undefined) t.diagnostic(`the copy taken while InConsistent (not required to be a prefix): ${(await check(inconsistentImage)).detail}`);
  });

  void test('after catching up, a copy is the whole log and equals the primary export', async (t) => {
    const random = new Random(seed ^ 0xf1a1);
    finalWrite = { offsetBytes: random.int((sizeBytes - finalWriteBytes) / sectorBytes + 1) * sectorBytes, lengthBytes: finalWriteBytes };
    await clients[0]!.write(finalWrite.offsetBytes, random.bytes(finalWrite.lengthBytes));
    await clients[0]!.flush();
    const logEnd = (await status(alpha(), resource)).logger!.logPosition;
    await waitCaughtUp(alpha(), beta(), resource);
    finalCopy = await copyBeta('the copy after catching up');
    const exported = await readExport(clients[0]!, sizeBytes);
    const differs = firstDifference(exported, finalCopy.image);
    assert.equal(differs, undefined, withSeed(`beta's disk differs from alpha's export at byte ${differs}`));
    const base = verified.at(-1);
    assert.ok(base !== undefined, withSeed('the copies of the test before'));
    const result = await check(finalCopy.image, base);
    assert.ok(result.ok, withSeed(result.detail));
    t.diagnostic(`${result.detail}; alpha's log ends at ${describePos(logEnd)}`);
    assert.equal(base.prefixRecords + result.prefixRecords, recordsBefore(logEnd), withSeed('the copy is the image after every record'));
    assert.deepEqual(result.at, { logName: formatLogName(logEnd.logNumber, logEnd.logHost), offsetBytes: logEnd.offsetBytes }, withSeed('the prefix ends where the log ends'));
  });

  void test('the checker rejects a copy with one flipped byte and a copy that has the newest write but misses an older one', async () => {
    const random = new Random(seed ^ 0xbad);
    const victimIndex = random.int(copies.length);
    const victim = copies[victimIndex];
    assert.ok(victim !== undefined && finalCopy !== undefined && verified.length === copies.length, withSeed('copies from the earlier tests'));

    const flipped = Buffer.from(victim.image);
    const flipAtBytes = random.int(sizeBytes);
    flipped[flipAtBytes] = flipped[flipAtBytes]! ^ 0x5a;
    // From the prefix before the victim's, as the victim itself was checked.
    const one = await check(flipped, verified[victimIndex - 1] ?? emptyPrefix);
    assert.ok(!one.ok, withSeed(`${victim.label} with byte ${flipAtBytes} flipped passed: ${one.detail}`));
    assert.equal(one.closest.differingSectors, 1, withSeed(one.detail));
    assert.equal(one.closest.firstDifferingOffsetBytes, flipAtBytes - (flipAtBytes % prefixCheckSectorBytes), withSeed(one.detail));

    // The final image with one 4 KiB block (outside the final write) as an early copy had it:
    // only the whole log has the final write, and the whole log has the newer block.
    const early = copies[0]!.image;
    const final = finalCopy.image;
    const outsideFinalWrite = (at: number): boolean => at + blockBytes <= finalWrite.offsetBytes || at >= finalWrite.offsetBytes + finalWrite.lengthBytes;
    let blockAtBytes = -1;
    for (let at = 0; at < sizeBytes && blockAtBytes < 0; at += blockBytes) {
      if (outsideFinalWrite(at) && early.compare(final, at, at + blockBytes, at, at + blockBytes) !== 0) blockAtBytes = at;
    }
    assert.ok(blockAtBytes >= 0, withSeed('the first copy and the final image differ outside the final write'));
    const mixed = Buffer.from(final);
    early.copy(mixed, blockAtBytes, blockAtBytes, blockAtBytes + blockBytes);
    // From the first copy's prefix: every later prefix has the newer block, only the whole log the final write.
    const two = await check(mixed, verified[0]);
    assert.ok(!two.ok, withSeed(`the final image with the block at ${blockAtBytes} from ${copies[0]!.label} passed: ${two.detail}`));
    assert.ok(two.closest.firstDifferingOffsetBytes >= blockAtBytes && two.closest.firstDifferingOffsetBytes < blockAtBytes + blockBytes, withSeed(two.detail));
    assert.equal(two.closest.prefixRecords, two.recordsTotal, withSeed(`the closest prefix is the whole log: ${two.detail}`));
  });
});
