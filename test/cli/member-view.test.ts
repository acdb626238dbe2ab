/**
 * What view and status say of the other members, between two real daemons: a paused
 * secondary reads PausedReplay from the primary's side (with its switch and lag), and the
 * primary says loudly that no secondary replicates; a killed primary reads Unknown
 * Unreachable from the survivor's side, with what it last said and since when. The JSON
 * carries its schema version and time.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { marsadm, waitFor } from '../support/processes.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import { MiB, mustAdm, randomDevice, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { kill9, writeSome } from '../support/roles-helpers.js';
import { Random } from '../../src/core/random.js';
import { callDaemon } from '../../src/control/client.js';

interface MemberJson {
  host: string;
  diskState: string | null;
  replState: string | null;
  lastDiskState?: string | null;
  reachable?: boolean;
  lastSeenAt?: string;
  switches?: { fetch: boolean; replay: boolean; sync: boolean } | null;
  fetchLagBytes?: number | null;
  lagS?: number | null;
}

async function viewJson(host: TestHost): Promise<{ schemaVersion: number; generatedAt: string; resources: { members: MemberJson[] }[] }> {
  return JSON.parse(await mustAdm(host, 'view', 'r1', '--json')) as { schemaVersion: number; generatedAt: string; resources: { members: MemberJson[] }[] };
}

async function memberSeenBy(host: TestHost, member: string): Promise<MemberJson | undefined> {
  return (await viewJson(host)).resources[0]?.members.find((m) => m.host === member);
}

/**
 * The same member as the daemon answers `view` over the control socket: what the polls
 * ask, without a marsadm process per poll (the checks after each poll read marsadm's).
 */
async function memberPolled(host: TestHost, member: string): Promise<MemberJson | undefined> {
  const answer = (await callDaemon(join(host.dir, 'control.sock'), 'view', { name: 'r1' }, 30_000)) as { resources: { name: string; members: MemberJson[] }[] };
  return answer.resources.find((r) => r.name === 'r1')?.members.find((m) => m.host === member);
}

void describe('the member list tells the truth', { timeout: 120_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const alpha = (): TestHost => hosts[0]!;
  const beta = (): TestHost => hosts[1]!;

  before(async () => {
    ({ root, hosts } = await startCluster('mars-mview', 2));
    for (const h of hosts) await randomDevice(join(root, `${h.name}.img`), 4 * MiB, h.name.length);
    await mustAdm(alpha(), 'create-resource', 'r1', join(root, 'alpha.img'));
    await mustAdm(beta(), 'join-resource', 'r1', join(root, 'beta.img'));
    await waitCaughtUp(alpha(), beta(), 'r1', 60_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('a paused secondary reads PausedReplay on the primary, which warns that no secondary replicates', async () => {
    await waitFor('alpha to see beta replicating', async () => (await memberPolled(alpha(), 'beta'))?.replState === 'Replicating', 20_000, 100);
    await mustAdm(beta(), 'pause-replay', 'r1');
    await waitFor('alpha to see beta paused', async () => (await memberPolled(alpha(), 'beta'))?.replState === 'PausedReplay', 20_000, 100);
    const seen = await memberSeenBy(alpha(), 'beta');
    assert.ok(seen !== undefined);
    assert.deepEqual(seen.switches, { fetch: true, replay: false, sync: true });
    assert.equal(seen.reachable, true);
    assert.equal(typeof seen.fetchLagBytes, 'number');
    // Writes beta does not replay: its lag in seconds grows, as beta reads it from the stamps in its copy.
    await writeSome(alpha(), 'r1', 4 * MiB, 10, new Random(5));
    await waitFor('alpha to see beta 2 s or more behind', async () => ((await memberPolled(alpha(), 'beta'))?.lagS ?? 0) >= 2, 20_000, 200);
    assert.match(await mustAdm(alpha(), 'view', 'r1'), /beta Secondary OutDated PausedReplay \(lag: \d+ s, fetch 0 B, replay [1-9][^,]*, paused: replay/);
    assert.match(await mustAdm(alpha(), 'status', 'r1'), /beta Secondary OutDated PausedReplay \(lag: \d+ s, /);
    const text = await mustAdm(alpha(), 'view', 'r1');
    assert.match(text, /beta Secondary \S+ PausedReplay \([^)]*paused: replay/);
    assert.match(text, /^ {4}WARNING: no secondary replicates r1: beta PausedReplay$/m);
    const overview = await mustAdm(beta(), 'status', 'r1');
    assert.match(overview, /^r1 size 4\.00 MiB primary alpha \(seen from beta\)\n {2}alpha Primary UpToDate Replicating[^\n]*\n {2}beta Secondary \S+ PausedReplay[^\n]*\[this host\]\n$/);
    await mustAdm(beta(), 'resume-replay', 'r1');
    await waitFor('alpha to see beta replicating again', async () => (await memberPolled(alpha(), 'beta'))?.replState === 'Replicating', 20_000, 100);
    await waitFor('alpha to see beta without lag', async () => (await memberPolled(alpha(), 'beta'))?.lagS === 0, 20_000, 200);
    assert.match(await mustAdm(alpha(), 'view', 'r1'), /beta Secondary UpToDate Replicating \(lag: 0 s, fetch 0 B, replay 0 B/);
    assert.doesNotMatch(await mustAdm(alpha(), 'view', 'r1'), /WARNING/);
  });

  void test('view --json carries its schema version and time', async () => {
    const before = Date.now();
    const v = await viewJson(alpha());
    assert.equal(v.schemaVersion, 5);
    assert.ok(Date.parse(v.generatedAt) >= before - 1000 && Date.parse(v.generatedAt) <= Date.now() + 1000, v.generatedAt);
  });

  void test('a killed primary reads Unknown Unreachable on the survivor, with what it last said and since when', async () => {
    await kill9(alpha());
    await waitFor('beta to see alpha unreachable', async () => (await memberPolled(beta(), 'alpha'))?.reachable === false, 20_000, 100);
    const seen = await memberSeenBy(beta(), 'alpha');
    assert.equal(`${seen?.diskState} ${seen?.replState}`, 'Unknown Unreachable');
    assert.equal(seen?.lastDiskState, 'UpToDate');
    const text = await mustAdm(beta(), 'view', 'r1');
    assert.match(text, /alpha Primary Unknown Unreachable \(unreachable since \d{4}-\d\d-\d\dT[\d:.]+Z; stale: it last said UpToDate Replicating, \d+ s ago/);
    const refused = await marsadm(beta().dir, 'status', 'r1');
    assert.equal(refused.code, 0);
  });
});
