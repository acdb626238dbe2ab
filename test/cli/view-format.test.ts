/**
 * The view of a resource as marsadm prints it: the disk and replication states of a
 * primary and of a secondary, the macros for scripts, the human lines with progress bars,
 * and the formatting of amounts and remaining time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  formatRemaining,
  formatStatus,
  formatResource,
  macroNames,
  macroValue,
  progressBar,
  remainingSeconds,
  remainingShownSMax,
  resourceView,
  viewJson,
  type PositionJson,
  type ReplicaStatusJson,
  type ResourceStatusJson,
} from '../../src/cli/view-format.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const mib = 1024 * 1024;
const gib = 1024 * mib;

function primaryStatus(state: ResourceStatusJson['state']): ResourceStatusJson {
  const position = (offsetBytes: number): PositionJson => ({
    logNumber: 3,
    logHost: 'alpha',
    offsetBytes,
    nextSeq: '10',
  });
  return {
    name: 'r1',
    sizeBytes: gib,
    devicePath: '/dev/x',
    primary: 'alpha',
    state,
    failure: state === 'failed' ? 'log-000000003-alpha: bad record at offset 4096' : null,
    logger: state === 'serving' ? { logPosition: position(8192), writtenBack: position(4096), shadowBytes: 0, writesWaiting: 0 } : null,
    logFiles: [{ name: 'log-000000003-alpha', sizeBytes: 8192 }],
    role: 'primary',
    replica: null,
  };
}

/** An attached secondary that is caught up; each test changes what it is about. */
function replica(): ReplicaStatusJson {
  return {
    consistent: true,
    switches: { fetch: true, replay: true, sync: true },
    sync: null,
    fetch: { state: 'caught-up', source: 'alpha', logName: 'log-000000003-alpha', localBytes: 8192, restBytes: 0, rateBytesPerS: 0, error: null },
    replay: { state: 'caught-up', position: { logNumber: 3, logHost: 'alpha', offsetBytes: 8192, nextSeq: '10' }, restBytes: 0, rateBytesPerS: 0, error: null },
  };
}

function secondaryStatus(change: (r: ReplicaStatusJson) => void = () => undefined, state: ResourceStatusJson['state'] = 'serving'): ResourceStatusJson {
  const rep = replica();
  change(rep);
  return {
    name: 'r1',
    sizeBytes: gib,
    devicePath: '/dev/y',
    primary: 'alpha',
    state,
    failure: null,
    logger: null,
    logFiles: [],
    role: 'secondary',
    replica: rep,
    members: [
      { host: 'beta', primary: false, diskState: 'InConsistent', replState: 'Syncing', needsLog: 3, reason: null },
      { host: 'alpha', primary: true, diskState: 'UpToDate', replState: 'Replicating', needsLog: null, reason: null },
    ],
    logDeleteHeldBy: { host: 'beta', logNumber: 3 },
  };
}

function syncing(r: ReplicaStatusJson): void {
  r.consistent = false;
  r.sync = { state: 'syncing', sizeBytes: gib, doneBytes: 339 * mib, restBytes: gib - 339 * mib, rateBytesPerS: 120 * mib, rateLimitBytesPerS: 0, error: null };
  r.fetch.rateBytesPerS = 1.2 * mib;
  r.replay = { state: 'waiting-for-sync', position: null, restBytes: 0, rateBytesPerS: 0, error: null };
}

function states(status: ResourceStatusJson, host = 'beta'): string {
  const v = resourceView(host, status);
  return `${v.diskState} ${v.replState}`;
}

test('on its primary the disk and replication states follow the resource state', () => {
  assert.equal(states(primaryStatus('serving'), 'alpha'), 'UpToDate Replicating');
  assert.equal(states(primaryStatus('recovering'), 'alpha'), 'Recovery Recovering');
  assert.equal(states(primaryStatus('failed'), 'alpha'), 'Failed Stopped');
  assert.equal(states(primaryStatus('stopped'), 'alpha'), 'Detached Stopped');
  const serving = resourceView('alpha', primaryStatus('serving'));
  assert.deepEqual([serving.role, serving.isPrimary, serving.isConsistent, serving.replayRestBytes, serving.fetchRestBytes, serving.syncRestBytes], ['Primary', true, true, 4096, 0, 0]);
  const recovering = resourceView('alpha', primaryStatus('recovering'));
  assert.deepEqual([recovering.role, recovering.isPrimary, recovering.isConsistent], ['NotYetPrimary', false, false]);
  assert.deepEqual([serving.sync, serving.fetch, serving.replay, serving.switches], [null, null, null, null]);
});

test('the human view of a serving primary keeps its state line and writeback bar', () => {
  const text = formatResource(resourceView('alpha', primaryStatus('serving')));
  const lines = text.split('\n');
  assert.equal(lines[1], 'r1 UpToDate Replicating Primary alpha');
  assert.ok(lines.some((l) => l.startsWith('    writeback: [') && l.endsWith('rest 4.00 KiB')), text);
  assert.ok(!text.includes('sync:') && !text.includes('fetch:'), text);
});

test('a secondary that is switched off, failed or not attached is Detached or Failed', () => {
  assert.equal(states(secondaryStatus(undefined, 'stopped')), 'Detached Stopped');
  assert.equal(states(secondaryStatus(undefined, 'failed')), 'Failed Failed');
  assert.equal(states({ ...secondaryStatus(), replica: null }), 'Detached Stopped');
  const older = secondaryStatus();
  delete older.replica;
  assert.equal(states(older), 'Detached Stopped', 'an older answer without replica');
  const view = resourceView('beta', { ...secondaryStatus(), replica: null });
  assert.deepEqual([view.role, view.isPrimary, view.isConsistent, view.fetchRestBytes, view.replayRestBytes, view.syncRestBytes], ['Secondary', false, false, null, 0, 0]);
  assert.equal(macroValue(view, 'fetch-rest'), 'unknown', 'a script waiting for 0 must not pass on a detached secondary');
  assert.match(formatResource(view), /detached: no replica runs here/);
});

test('a secondary disk is InConsistent until consistent, then UpToDate only when fetch and replay are caught up', () => {
  assert.equal(states(secondaryStatus(syncing)), 'InConsistent Syncing');
  assert.equal(states(secondaryStatus()), 'UpToDate Replicating');
  assert.equal(states(secondaryStatus((r) => (r.fetch.restBytes = 1))), 'OutDated Replicating');
  assert.equal(states(secondaryStatus((r) => (r.replay.restBytes = 1))), 'OutDated Replicating');
  assert.equal(states(secondaryStatus((r) => (r.fetch.state = 'fetching'))), 'OutDated Replicating');
});

test('a secondary that has not heard from its primary says its fetch-rest is unknown: never 0, never UpToDate', () => {
  // Restarted while its primary is unreachable: the copy is there, how far the primary has gone is not known.
  const status = secondaryStatus((r) => ((r.fetch.state = 'source-unreachable'), (r.fetch.restBytes = null), (r.fetch.rateBytesPerS = 5 * mib), (r.fetch.lastContactS = null)));
  const view = resourceView('beta', status);
  assert.equal(view.fetchRestBytes, null);
  assert.equal(view.fetch?.restBytes, null);
  assert.equal(view.fetch.remainingS, null, 'no remaining time for an unknown rest');
  assert.equal(macroValue(view, 'fetch-rest'), 'unknown');
  assert.equal(macroValue(view, 'disk-state'), 'OutDated');
  assert.equal(macroValue(view, 'repl-state'), 'PrimaryUnreachable');
  const json = JSON.parse(JSON.stringify(viewJson('beta', [view], new Date(0)))) as { schemaVersion: number; resources: { fetchRestBytes: unknown; fetch: { restBytes: unknown } }[] };
  assert.equal(json.schemaVersion, 5);
  assert.equal(json.resources[0]!.fetchRestBytes, null, '--json says null');
  assert.equal(json.resources[0]!.fetch.restBytes, null);
  const fetchLine = formatResource(view).split('\n').find((l) => l.startsWith('    fetch:'));
  assert.equal(fetchLine, '    fetch:  log-000000003-alpha  rest unknown  rate 5.00 MiB/s  source-unreachable from alpha  never reached');
  // Fetch running, the list not answered yet: still no bar and no remaining time.
  const asking = resourceView('beta', secondaryStatus((r) => ((r.fetch.state = 'fetching'), (r.fetch.restBytes = null), (r.fetch.rateBytesPerS = mib))));
  assert.equal(macroValue(asking, 'disk-state'), 'OutDated');
  assert.doesNotMatch(formatResource(asking), /remaining|\[/, formatResource(asking));
  // Even a caught-up word does not turn an unknown rest into UpToDate.
  assert.equal(macroValue(resourceView('beta', secondaryStatus((r) => (r.fetch.restBytes = null))), 'disk-state'), 'OutDated');
});

test('a member that does not know its fetch-rest reads "fetch unknown" in the members line, its lag left out', () => {
  const status = secondaryStatus();
  status.members = [
    { host: 'alpha', primary: true, diskState: 'UpToDate', replState: 'Replicating', needsLog: null, reason: null },
    { host: 'gamma', primary: false, diskState: 'OutDated', replState: 'PrimaryUnreachable', needsLog: 3, reason: null, fetchLagBytes: null, replayLagBytes: 0, lagS: null },
    { host: 'delta', primary: false, diskState: 'OutDated', replState: 'Replicating', needsLog: 3, reason: null, fetchLagBytes: 2 * mib, replayLagBytes: 0, lagS: 3 },
  ];
  const text = formatResource(resourceView('beta', status));
  assert.match(text, /gamma Secondary OutDated PrimaryUnreachable \(lag: fetch unknown, replay 0 B, needs log 3\)/, text);
  assert.match(text, /delta Secondary OutDated Replicating \(lag: 3 s, fetch 2\.00 MiB, replay 0 B, needs log 3\)/, text);
});

test('the replication state of a secondary is the first rule that applies', () => {
  const cases: [string, (r: ReplicaStatusJson) => void][] = [
    ['Syncing', syncing],
    ['PausedSync', (r) => (syncing(r), r.sync && (r.sync.state = 'paused'))],
    ['PausedSync', (r) => (syncing(r), (r.switches.sync = false), (r.fetch.state = 'failed'))],
    ['Syncing', (r) => (syncing(r), r.sync && (r.sync.state = 'source-unreachable'))],
    ['Failed', (r) => (r.fetch.state = 'failed')],
    ['Failed', (r) => ((r.replay.state = 'failed'), (r.switches.fetch = false))],
    ['Failed', (r) => (r.sync = { state: 'failed', sizeBytes: gib, doneBytes: 0, restBytes: gib, rateBytesPerS: 0, rateLimitBytesPerS: 0, error: 'EIO' })],
    ['PausedFetch', (r) => ((r.switches.fetch = false), (r.fetch.state = 'paused-no-space'))],
    ['PausedFetch', (r) => (r.fetch.state = 'paused')],
    ['NoSpace', (r) => ((r.fetch.state = 'paused-no-space'), (r.switches.replay = false))],
    ['NoSpace', (r) => ((r.fetch.state = 'caught-up'), (r.replay.state = 'paused-no-space'))],
    ['PrimaryUnreachable', (r) => ((r.fetch.state = 'source-unreachable'), (r.replay.state = 'paused'))],
    ['PausedReplay', (r) => (r.switches.replay = false)],
    ['PausedReplay', (r) => (r.replay.state = 'paused')],
    ['Replicating', (r) => (r.sync = { state: 'done', sizeBytes: gib, doneBytes: gib, restBytes: 0, rateBytesPerS: 0, rateLimitBytesPerS: 0, error: null })],
  ];
  for (const [expected, change] of cases) assert.equal(resourceView('beta', secondaryStatus(change)).replState, expected, change.toString());
});

test('the macros of a syncing secondary report its role, consistency and amounts', () => {
  const view = resourceView('beta', secondaryStatus((r) => (syncing(r), (r.fetch.restBytes = 5000), (r.replay.restBytes = 700))));
  const values = Object.fromEntries(macroNames.map((m) => [m, macroValue(view, m)]));
  assert.deepEqual(values, {
    role: 'Secondary',
    primarynode: 'alpha',
    'is-primary': '0',
    'is-consistent': '0',
    'is-split-brain': '0',
    'fetch-rest': '5000',
    'replay-rest': '700',
    'sync-rest': String(gib - 339 * mib),
    'disk-state': 'InConsistent',
    'repl-state': 'Syncing',
    'is-emergency': '0',
    space: '0',
  });
  const done = resourceView('beta', secondaryStatus((r) => (r.sync = { state: 'done', sizeBytes: gib, doneBytes: gib, restBytes: 5, rateBytesPerS: 0, rateLimitBytesPerS: 0, error: null })));
  assert.equal(macroValue(done, 'sync-rest'), '0', 'a done sync leaves nothing');
  assert.equal(macroValue(done, 'is-consistent'), '1');
});

test('the human view of a syncing secondary shows the sync bar, fetch, replay, members and the log-delete holder', () => {
  const text = formatResource(resourceView('beta', secondaryStatus(syncing)));
  assert.equal(
    text,
    [
      '--------- resource r1  size 1.00 GiB  primary alpha',
      'r1 InConsistent Syncing Secondary beta',
      '    sync:   [=========>....................] 33.10%  339.00 MiB of 1.00 GiB  rate 120.00 MiB/s  remaining 00:00:06',
      '    fetch:  log-000000003-alpha  rest 0 B  rate 1.20 MiB/s  caught-up from alpha',
      '    replay: waiting for sync',
      '    members: alpha Primary UpToDate Replicating; beta Secondary InConsistent Syncing (needs log 3)',
      '    log-delete held back by beta (needs log 3)',
    ].join('\n'),
  );
});

test('fetch and replay show a bar, the rest, the rate and the remaining time while behind, and their errors', () => {
  const text = formatResource(
    resourceView(
      'beta',
      secondaryStatus((r) => {
        Object.assign(r.fetch, { state: 'fetching', localBytes: 3 * mib, restBytes: mib, rateBytesPerS: 0.5 * mib, error: null });
        Object.assign(r.replay, { state: 'failed', restBytes: 2 * mib, rateBytesPerS: 0, error: 'LOG_SEQ_GAP: log 4 does not continue log 3' });
      }),
    ),
  );
  const fetch = text.split('\n').find((l) => l.startsWith('    fetch:'));
  assert.equal(fetch, '    fetch:  [======================>.......] 75.00%  log-000000003-alpha  rest 1.00 MiB  rate 512.00 KiB/s  remaining 00:00:02  fetching from alpha');
  const replay = text.split('\n').find((l) => l.startsWith('    replay:'));
  assert.equal(replay, '    replay: [=========>....................] 33.33%  at log-000000003-alpha offset 8192  rest 2.00 MiB  rate 0 B/s  failed  error: LOG_SEQ_GAP: log 4 does not continue log 3');
  assert.match(text, /^r1 OutDated Failed Secondary beta$/m);
});

test('a switch turned off before the state follows says so on its line', () => {
  const text = formatResource(resourceView('beta', secondaryStatus((r) => (r.switches.fetch = false))));
  assert.match(text, /fetch: {2}.*caught-up from alpha {2}pause requested$/m);
});

test('many members get a line each', () => {
  const status = secondaryStatus();
  status.members = ['e', 'd', 'c', 'b', 'a'].map((host) => ({ host, primary: host === 'a', diskState: null, replState: null, needsLog: null, reason: host === 'c' ? 'unreachable' : null }));
  const lines = formatResource(resourceView('beta', status)).split('\n');
  const at = lines.indexOf('    members:');
  assert.deepEqual(lines.slice(at + 1, at + 6), ['        a Primary ? ?', '        b Secondary ? ?', '        c Secondary ? ? (unreachable)', '        d Secondary ? ?', '        e Secondary ? ?']);
});

test('the JSON view of a secondary has exactly the documented fields', () => {
  const view = JSON.parse(JSON.stringify(resourceView('beta', secondaryStatus(syncing)))) as Record<string, unknown>;
  assert.deepEqual(Object.keys(view), [
    'resource', 'host', 'sizeBytes', 'role', 'primarynode', 'isPrimary', 'isConsistent', 'isSplitBrain', 'splitBrain', 'laterSplitBrains', 'diskState', 'replState',
    'fetchRestBytes', 'replayRestBytes', 'syncRestBytes', 'logBytes', 'logFiles',
    'switches', 'sync', 'fetch', 'replay', 'members', 'logDeleteHeldBy', 'isEmergency', 'emergency', 'syncMode', 'isFallenBack', 'stoppedAtHole', 'space', 'noSecondaryReplicating',
  ]);
  assert.deepEqual(view['sync'], { state: 'syncing', sizeBytes: gib, doneBytes: 339 * mib, restBytes: gib - 339 * mib, rateBytesPerS: 120 * mib, rateLimitBytesPerS: 0, remainingS: 6, error: null, compression: null });
  assert.deepEqual(Object.keys(view['fetch'] as object), ['state', 'source', 'logName', 'localBytes', 'restBytes', 'rateBytesPerS', 'remainingS', 'error', 'lastContactS', 'compression', 'connections']);
  assert.deepEqual(Object.keys(view['replay'] as object), ['state', 'position', 'restBytes', 'rateBytesPerS', 'remainingS', 'error']);
  assert.deepEqual((view['members'] as { host: string }[]).map((m) => m.host), ['alpha', 'beta'], 'sorted by host');
});

test('remaining time is hh:mm:ss rounded up, --:--:-- when unknown, and capped', () => {
  assert.equal(formatRemaining(0), '00:00:00');
  assert.equal(formatRemaining(0.2), '00:00:01');
  assert.equal(formatRemaining(3661), '01:01:01');
  assert.equal(formatRemaining(100 * 3600), '100:00:00');
  assert.equal(formatRemaining(null), '--:--:--');
  assert.equal(formatRemaining(Number.NaN), '--:--:--');
  assert.equal(formatRemaining(1e12), '>9999:59:59');
  assert.equal(remainingSeconds(0, 0), 0);
  assert.equal(remainingSeconds(10, 0), null);
  assert.equal(remainingSeconds(10, 3), 4);
});

test('a progress bar rounds its percentage down: 100.00% only when done, and no float artefacts', () => {
  assert.equal(progressBar(29, 100, 10), '[==>.......] 29.00%');
  assert.equal(progressBar(1.7976931348623057e308, Number.MAX_VALUE, 10), '[=========>] 99.99%');
  assert.equal(progressBar(5, 5, 4), '[===>] 100.00%');
  assert.equal(progressBar(0, 0, 4), '[===>] 100.00%', 'nothing to do is done');
  assert.equal(progressBar(Number.NaN, 10, 4), '[....] 0.00%');
  assert.throws(() => progressBar(1, 2, 0), RangeError);
});

test('a progress bar keeps its width and a percentage within 0..100 for any inputs', () => {
  const amount = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, -1, Number.NaN, Infinity, -Infinity));
  fc.assert(
    fc.property(amount, amount, fc.integer({ min: 1, max: 120 }), (done, total, width) => {
      const match = /^\[([=>.]*)\] (\d+\.\d\d)%$/.exec(progressBar(done, total, width));
      assert.ok(match !== null, progressBar(done, total, width));
      assert.equal(match[1]!.length, width);
      assert.match(match[1]!, /^=*>?\.*$/);
      const percent = Number(match[2]);
      assert.ok(percent >= 0 && percent <= 100, String(percent));
      if (total > 0 && done >= 0 && done < total) assert.ok(percent < 100, 'not complete is below 100%');
    }),
    { seed: fcSeed },
  );
});

test('remaining time reads back as the seconds rounded up, for any non-negative input', () => {
  fc.assert(
    fc.property(fc.oneof(fc.double({ min: 0, noNaN: true }), fc.integer({ min: 0, max: remainingShownSMax })), (seconds) => {
      const text = formatRemaining(seconds);
      if (Math.ceil(seconds) > remainingShownSMax) {
        assert.equal(text, '>9999:59:59');
        return;
      }
      const match = /^(\d{2,4}):([0-5]\d):([0-5]\d)$/.exec(text);
      assert.ok(match !== null, text);
      assert.equal(Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]), Math.ceil(seconds));
    }),
    { seed: fcSeed },
  );
});

test('a primary in emergency mode shows EmergencyMode, says so in a line and in view-is-emergency', () => {
  const status: ResourceStatusJson = {
    ...primaryStatus('serving'),
    emergency: { active: true, hole: 0, reason: 'the log filesystem has 1 of 48 MiB free' },
    space: { sizeBytes: 48 * mib, freeBytes: 1 * mib, stage: 'emergency', thresholds: { warnBytes: 24 * mib, reclaimBytes: 16 * mib, emergencyBytes: 9 * mib, hysteresisBytes: 4 * mib } },
  };
  const v = resourceView('alpha', status);
  assert.equal(`${v.diskState} ${v.replState}`, 'EmergencyMode NotLogging');
  assert.equal(macroValue(v, 'is-emergency'), '1');
  assert.equal(macroValue(v, 'space'), String(mib));
  const text = formatResource(v);
  assert.match(text, /space: 1\.00 MiB free of 48\.00 MiB \(2\.1%\) {2}stage emergency/);
  assert.match(text, /EMERGENCY MODE: not logging/);
  assert.equal(macroValue(resourceView('alpha', primaryStatus('serving')), 'is-emergency'), '0');
});

test('a secondary stops at the hole of an emergency: consistent, outdated, and it says what to do', () => {
  const primaryInEmergency = secondaryStatus();
  primaryInEmergency.members = [
    { host: 'alpha', primary: true, diskState: 'EmergencyMode', replState: 'Replicating', needsLog: 3, reason: null, emergency: true, hole: null },
    { host: 'beta', primary: false, diskState: 'Consistent', replState: 'Replicating', needsLog: 3, reason: null },
  ];
  const during = resourceView('beta', primaryInEmergency);
  assert.equal(`${during.diskState} ${during.replState}`, 'OutDated StoppedAtHole');
  assert.equal(during.stoppedAtHole, 4);
  assert.match(formatResource(during), /hole: .* marsadm invalidate r1 resyncs it/);
  const after = secondaryStatus();
  after.members = [{ host: 'alpha', primary: true, diskState: 'UpToDate', replState: 'Replicating', needsLog: 5, reason: null, emergency: false, hole: 4 }];
  assert.equal(states(after), 'OutDated StoppedAtHole');
  const resynced = secondaryStatus((r) => {
    r.replay.position = { logNumber: 5, logHost: 'alpha', offsetBytes: 0, nextSeq: '10' };
  });
  resynced.members = after.members;
  assert.equal(states(resynced), 'UpToDate Replicating', 'past the hole (after invalidate) it replicates again');
});

test('a member that holds logs back and is unreachable is named with the amount and what removes it', () => {
  const status = secondaryStatus();
  status.members = [
    { host: 'alpha', primary: true, diskState: 'UpToDate', replState: 'Replicating', needsLog: 5, reason: null },
    {
      host: 'gamma',
      primary: false,
      diskState: 'Unknown',
      replState: 'Unreachable',
      lastDiskState: 'OutDated',
      lastReplState: 'Replicating',
      reachable: false,
      lastSeenAt: '2026-01-01T12:00:00.000Z',
      indicatorAgeS: 705,
      needsLog: 2,
      reason: null,
      heldBackBytes: 3 * mib,
      unreachableS: 700,
      dead: true,
    },
  ];
  assert.match(
    formatResource(resourceView('beta', status)),
    /gamma Secondary Unknown Unreachable \(unreachable since 2026-01-01T12:00:00\.000Z; stale: it last said OutDated Replicating, 705 s ago, needs log 2, holds 3\.00 MiB of log back, unreachable for 700 s, counted as dead: leave-resource r1 --host gamma removes it\)/,
  );
});

test('every split brain is named in view and status, earliest first, each with its commands', () => {
  const first = { atLog: 7, atOffsetBytes: 0, sides: [{ origin: 'alpha', hosts: ['alpha'], lossBytes: 700 }, { origin: 'beta', hosts: ['beta', 'gamma'], lossBytes: 1500 }], undecided: [], reports: [] };
  const later = { atLog: 10, atOffsetBytes: 0, sides: [{ origin: 'beta', hosts: ['beta'], lossBytes: 900 }, { origin: 'gamma', hosts: ['gamma'], lossBytes: 60 }], undecided: [], reports: [] };
  const v = resourceView('beta', { ...secondaryStatus(), splitBrain: first, laterSplitBrains: [later] });
  const text = formatResource(v);
  const splits = text.split('\n').filter((l) => l.includes('SPLIT BRAIN'));
  assert.deepEqual(splits.map((l) => l.trim().split(':')[0]), ['SPLIT BRAIN at log 7', 'SPLIT BRAIN at log 10']);
  assert.match(text, /to keep the history of gamma \(the other side loses 900 B\): on beta: marsadm invalidate r1$/m);
  assert.deepEqual(formatStatus(v).split('\n').filter((l) => l.includes('SPLIT BRAIN')).map((l) => l.trim()), ['SPLIT BRAIN at log 7: marsadm view r1 says how to resolve it', 'SPLIT BRAIN at log 10: marsadm view r1 says how to resolve it']);
});
