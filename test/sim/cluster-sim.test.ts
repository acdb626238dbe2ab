/**
 * The cluster simulator in the normal test run: 200 seeds of the whole workload must pass;
 * the same seed must give the same run; and each deliberate bug must be found within a
 * bounded number of seeds (a simulator that never fails proves nothing).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { allFaults, describeResult, runSimulation, simOptionsDefault, type SimResult } from '../../src/sim/cluster-sim.js';
import { noMutations, type Mutations } from '../../src/sim/sim-host.js';

const seedsInTest = 200;

test(`${seedsInTest} seeds of writes, crashes, handovers, partitions, link faults, log-delete, syncs and emergency mode keep every invariant`, async () => {
  const failures: string[] = [];
  const seen = { crashes: 0, handovers: 0, forced: 0, splitBrains: 0, partitions: 0, bitRots: 0, resets: 0, corruptions: 0, flushes: 0, reads: 0, logsDeleted: 0, invalidates: 0, leaves: 0, joins: 0, syncs: 0, emergencies: 0, directWrites: 0, spacePauses: 0, syncPauses: 0, syncResumes: 0, emergencyRestarts: 0 };
  for (let seed = 1; seed <= seedsInTest; seed++) {
    const r = await runSimulation({ ...simOptionsDefault, seed });
    if (!r.ok) failures.push(`${describeResult(r)}\n    ${r.trace.slice(-8).join('\n    ')}`);
    for (const key of Object.keys(seen) as (keyof typeof seen)[]) seen[key] += r.stats[key];
  }
  assert.deepEqual(failures, [], `failing seeds (replay one with: npm run sim -- --seed S):\n${failures.join('\n')}`);
  // Not vacuous: every kind of fault happened, and forced failovers made split brains that were detected.
  for (const [key, count] of Object.entries(seen)) assert.ok(count > 0, `no ${key} in ${seedsInTest} seeds`);
});

const fullSeedsInTest = 120;

test(`${fullSeedsInTest} seeds with secondaries' log filesystems filled by another program: fetch, replay and sync wait for room, and every member converges`, async () => {
  // Before replay and sync waited for room, 9 of these seeds never converged: a sync whose state file (36, 39, 46, ...) or a replay whose position (108) found no space failed for good.
  const failures: string[] = [];
  let fills = 0;
  for (let seed = 1; seed <= fullSeedsInTest; seed++) {
    const r = await runSimulation({ ...simOptionsDefault, seed, faults: { ...allFaults, fullLogFs: true } });
    if (!r.ok) failures.push(`${describeResult(r)}\n    ${r.trace.slice(-8).join('\n    ')}`);
    fills += r.stats.fills;
  }
  assert.deepEqual(failures, [], `failing seeds (replay one with: npm run sim -- --full-log-fs --seed S):\n${failures.join('\n')}`);
  assert.ok(fills >= fullSeedsInTest, `log filesystems filled ${fills} times in ${fullSeedsInTest} seeds`);
});

test('a seed replays exactly: the same trace, statistics and virtual time', async () => {
  const strip = (r: SimResult): unknown => ({ ...r });
  const a = await runSimulation({ ...simOptionsDefault, seed: 23, traceLines: 1000 });
  const b = await runSimulation({ ...simOptionsDefault, seed: 23, traceLines: 1000 });
  assert.ok(a.trace.length > 60 && a.stats.writes > 20, 'the run did something');
  assert.deepEqual(strip(b), strip(a));
  const c = await runSimulation({ ...simOptionsDefault, seed: 24, traceLines: 1000 });
  assert.notDeepEqual(c.trace, a.trace, 'another seed is another run');
});

const mutationBound = 40;
/**
 * Mutations that show only when a crash falls in a narrow window get more seeds: shipping
 * past the durable prefix is seen only if the primary crashes between a send and its
 * fdatasync (5 of seeds 1..80 before the fetch frames changed, 2 after: 63 and 75).
 */
const mutationBounds: Partial<Record<keyof Mutations, number>> = { shipPastDurable: 100 };
const mutations: [keyof Mutations, string][] = [
  ['shipPastDurable', 'ship past the durable prefix'],
  ['skipReplaySync', 'skip the device fdatasync before a replay checkpoint'],
  ['earlyHandover', 'finish a handover before the new primary replayed to the old end'],
  ['skipDirtyMark', 'keep no dirty mark, so a restarted secondary counts as consistent below it'],
  ['deleteNeededLog', 'log-delete removes the log another member still needs'],
  ['consistentAtSyncDone', 'a synced secondary counts as consistent before replay reached the sync\'s end'],
  ['skipEmergencySync', 'a FLUSH in emergency mode answers before the direct writes are durable'],
];

for (const [key, what] of mutations) {
  const bound = mutationBounds[key] ?? mutationBound;
  test(`the simulator finds the deliberate bug "${what}" within ${bound} seeds`, async () => {
    let found: SimResult | undefined;
    for (let seed = 1; seed <= bound && found === undefined; seed++) {
      const r = await runSimulation({ ...simOptionsDefault, seed, mutations: { ...noMutations, [key]: true } });
      if (!r.ok) found = r;
    }
    assert.ok(found !== undefined, `no seed of ${bound} found it`);
    assert.match(found.failure ?? '', /not the disk after any prefix|durable only through|differs|lost|recover|still needs|no longer holds/);
  });
}

test('without faults the workload still runs and converges (the checkers see the plain path)', async () => {
  const faults = { ...allFaults, crash: false, partition: false, netFaults: false, bitRot: false, handover: false, pause: false, logDelete: false, membership: false, emergency: false };
  const r = await runSimulation({ ...simOptionsDefault, seed: 7, faults });
  assert.ok(r.ok, describeResult(r));
  assert.ok(r.stats.writes > 20);
});

test('npm run sim: one line per failing seed, a summary, exit 1; one seed prints the same every time', () => {
  const sim = (args: string[]): { status: number | null; stdout: string } => {
    const p = spawnSync(process.execPath, ['dist/src/sim/sim-main.js', ...args], { encoding: 'utf8' });
    return { status: p.status, stdout: p.stdout };
  };
  const bad = sim(['--seeds', '3', '--from', '3', '--mutation', 'early-handover']);
  assert.equal(bad.status, 1);
  const lines = bad.stdout.trim().split('\n');
  assert.match(lines.at(-1)!, /^3 seeds from 3: [1-3] failed/);
  for (const line of lines.slice(0, -1)) assert.match(line, /^seed (3|4|5): FAIL at step \d+: /);
  const one = sim(['--seed', '5', '--mutation', 'early-handover']);
  assert.equal(one.status, 1);
  assert.match(one.stdout, /last events before the failure:\n {2}\d+\.\d{3}s #\d+ /);
  assert.equal(sim(['--seed', '5', '--mutation', 'early-handover']).stdout, one.stdout);
  assert.equal(sim(['--seeds', '2', '--steps', '20']).status, 0);
  assert.equal(sim(['--hosts', '1']).status, 2);
});

/**
 * Seeds that found real bugs, with what they found (the workload of this version; the
 * 200-seed run covers them too, but a change of the workload may move them there).
 */
const regressions: [number, string][] = [
  [142, 'log-delete on a primary freshly started after a handover removed the log its saved position named'],
  [117, 'replay took a copy that fetch created between two looks for a rival history (FETCH_DIVERGED)'],
  [95, 'fetch with no copy yet skipped the log replay starts in when the source lacked it, and waited for ever'],
];
for (const [seed, what] of regressions) {
  test(`seed ${seed} passes: ${what}`, async () => {
    const r = await runSimulation({ ...simOptionsDefault, seed });
    assert.ok(r.ok, `${describeResult(r)}\n    ${r.trace.slice(-8).join('\n    ')}`);
  });
}

/**
 * Seeds of this workload that failed before a fix of the daemon's core and pass after it;
 * each also shows that the run met the case (a statistic), so that a workload change that
 * moves the case elsewhere is noticed rather than passing vacuously. Seeds 3 and 8 took
 * the places of 98 and 44 when the schedules moved (replay's idle checkpoint in the
 * background, fetch's DATA checksums and ring views): 98 and 44 still pass but no longer
 * meet their cases.
 */
const fixed: { seed: number; hosts: number; steps: number; what: string; met: (r: SimResult) => boolean }[] = [
  { seed: 54, hosts: 3, steps: 120, what: '--force on a member that stopped before the old primary\'s hole: the old primary\'s copies beyond the new primary\'s log are another history (invalidate), not a source behind', met: (r) => r.stats.forced > 0 && r.stats.offHistory > 0 },
  { seed: 137, hosts: 3, steps: 120, what: '--force below the log numbers other members hold: those members are told they hold another history', met: (r) => r.stats.forced > 0 && r.stats.offHistory > 0 },
  { seed: 3, hosts: 4, steps: 200, what: 'a member whose sync was done, not yet replayed to its end, at a --force: its end went off the history; it says so (not consistent) and is invalidated', met: (r) => r.stats.offHistory > 0 },
  { seed: 8, hosts: 4, steps: 200, what: 'a member whose sync began again from a new source at a later log drops the copies of the earlier start and fetches from the new one (it kept fetching from a copy of a log the primary no longer held)', met: (r) => r.stats.syncStartsAgain > 0 },
  { seed: 7, hosts: 4, steps: 200, what: 'a primary that crashed in emergency mode comes back as a secondary after a --force elsewhere: off the history, nothing replayed onto its direct writes', met: (r) => r.stats.offHistory > 0 && r.stats.emergencies > 0 },
];
for (const f of fixed) {
  test(`seed ${f.seed} (--hosts ${f.hosts} --steps ${f.steps}) passes: ${f.what}`, async () => {
    const r = await runSimulation({ ...simOptionsDefault, seed: f.seed, hosts: f.hosts, steps: f.steps });
    assert.ok(r.ok, `${describeResult(r)}\n    ${r.trace.slice(-8).join('\n    ')}`);
    assert.ok(f.met(r), `the run no longer meets the case: ${describeResult(r)}`);
  });
}
