/**
 * The reconciler's planner: from the metadata's switches and choices and the local state,
 * the next step. Example tests for each branch, and a property: following the plan on a
 * simple model of the local resource always settles within a few steps, on a report.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nextStep, type LocalKind, type LocalState, type ResourceSpec, type Step, type Switches } from '../../src/strategy/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

const spec = (over: Partial<ResourceSpec> = {}): ResourceSpec => ({
  name: 'r1',
  member: true,
  primary: 'a',
  sizeBytes: 4096,
  device: '/dev/x',
  desired: { attach: true, fetch: true, replay: true, sync: true, force: false },
  deleted: false,
  ...over,
});
const local = (kind: LocalKind, primary: string | undefined = 'a', failure?: string): LocalState => ({ kind, primary, failure });

void test('an attached member that is primary creates, loads, starts and then reports the resource', () => {
  assert.deepEqual(nextStep('a', spec(), local('absent', undefined)), { kind: 'create', device: '/dev/x', sizeBytes: 4096, primary: 'a' });
  assert.deepEqual(nextStep('a', spec(), local('on-disk', undefined)), { kind: 'load' });
  assert.deepEqual(nextStep('a', spec(), local('stopped')), { kind: 'start' });
  assert.deepEqual(nextStep('a', spec(), local('serving')), { kind: 'report', actual: { state: 'serving', isPrimary: true } });
  assert.deepEqual(nextStep('a', spec(), local('failed', 'a', 'log corrupt')), { kind: 'report', actual: { state: 'failed', isPrimary: false, reason: 'log corrupt' } });
});

void test('a switch set to off stops a running resource and then reports it detached', () => {
  const off = spec({ desired: { attach: false, fetch: true, replay: true, sync: true, force: false } });
  assert.deepEqual(nextStep('a', off, local('serving')), { kind: 'stop' });
  assert.deepEqual(nextStep('a', off, local('recovering')), { kind: 'stop' });
  assert.deepEqual(nextStep('a', off, local('stopped')), { kind: 'report', actual: { state: 'detached', isPrimary: false } });
});

void test('a secondary creates its resource (a sync follows), applies its switches, and reports what it needs', () => {
  assert.deepEqual(nextStep('b', spec(), local('absent', undefined)), { kind: 'create', device: '/dev/x', sizeBytes: 4096, primary: 'a' });
  const running: LocalState = { kind: 'serving', primary: 'a', failure: undefined, switches: { fetch: true, replay: true, sync: true }, report: { needsLog: 3, consistent: false } };
  assert.deepEqual(nextStep('b', spec(), running), { kind: 'report', actual: { needsLog: 3, consistent: false, state: 'serving', isPrimary: false } });
  const paused = spec({ desired: { attach: true, fetch: true, replay: false, sync: true, force: false } });
  assert.deepEqual(nextStep('b', paused, running), { kind: 'switches', switches: { fetch: true, replay: false, sync: true } });
  const off = spec({ desired: { attach: false, fetch: true, replay: true, sync: true, force: false } });
  assert.deepEqual(nextStep('b', off, { ...running, kind: 'stopped' }), { kind: 'report', actual: { needsLog: 3, consistent: false, state: 'detached', isPrimary: false } });
});

void test('delete-resource stops a running resource, then removes it; a larger size resizes a running one', () => {
  const gone = spec({ deleted: true });
  assert.deepEqual(nextStep('b', gone, local('serving')), { kind: 'stop' });
  assert.deepEqual(nextStep('b', gone, local('stopped')), { kind: 'delete' });
  assert.deepEqual(nextStep('b', gone, local('absent', undefined)), { kind: 'delete' });
  assert.deepEqual(nextStep('a', spec({ sizeBytes: 8192 }), { ...local('serving'), sizeBytes: 4096 }), { kind: 'resize', sizeBytes: 8192 });
  assert.equal(nextStep('a', spec({ sizeBytes: 4096 }), { ...local('serving'), sizeBytes: 8192 }).kind, 'report', 'never shrinks');
});

void test('missing keys are reported, never guessed', () => {
  const step = nextStep('a', spec({ sizeBytes: undefined, device: undefined }), local('absent', undefined));
  assert.equal(step.kind, 'report');
  assert.match(JSON.stringify(step), /unconfigured.*data, size/);
});

void test('a new designated primary is written to the local resource; a non-member only stops', () => {
  assert.deepEqual(nextStep('a', spec({ primary: 'b' }), local('serving', 'a')), { kind: 'set-primary', primary: 'b' });
  assert.deepEqual(nextStep('a', spec({ member: false }), local('serving')), { kind: 'stop' });
  assert.deepEqual(nextStep('a', spec({ member: false }), local('stopped')), { kind: 'delete' });
  assert.deepEqual(nextStep('a', spec({ member: false }), local('absent', undefined)), { kind: 'none' });
});

void test('a switch changed while this host waits to become primary takes effect at once', () => {
  // beta is designated, still runs as a secondary of alpha, and its handover waits for its replay.
  const waiting: LocalState = { kind: 'serving', primary: 'a', failure: undefined, switches: { fetch: true, replay: false, sync: true }, handover: { ready: false, reason: 'replaying the log of a up to 3:100' } };
  assert.deepEqual(nextStep('b', spec({ primary: 'b' }), waiting), { kind: 'switches', switches: { fetch: true, replay: true, sync: true } });
  const resumed: LocalState = { ...waiting, switches: { fetch: true, replay: true, sync: true } };
  const step = nextStep('b', spec({ primary: 'b' }), resumed);
  assert.equal(step.kind === 'report' ? step.actual.reason : step.kind, 'becoming primary: replaying the log of a up to 3:100; undo: marsadm primary r1 on a; finish at once, with what b has: marsadm primary r1 --force on b');
});

/** A model of the local resource that carries out a step. */
function carryOut(state: LocalState, step: Step): LocalState {
  switch (step.kind) {
    case 'create':
      return { kind: 'serving', primary: step.primary, failure: undefined };
    case 'load':
    case 'start':
      return { ...state, kind: 'serving' };
    case 'stop':
      return { ...state, kind: 'stopped' };
    case 'set-primary':
      return { ...state, primary: step.primary };
    case 'switches':
      return { ...state, switches: step.switches };
    case 'resize':
      return { ...state, sizeBytes: step.sizeBytes };
    case 'delete':
      return { kind: 'absent', primary: undefined, failure: undefined };
    default:
      return state;
  }
}

void test('following the plan settles within five steps, whatever the switches and the local state', () => {
  const kinds: LocalKind[] = ['absent', 'on-disk', 'recovering', 'serving', 'failed', 'stopped'];
  fc.assert(
    fc.property(
      fc.record({
        member: fc.boolean(),
        attach: fc.boolean(),
        primary: fc.constantFrom('a', 'b', undefined),
        kind: fc.constantFrom(...kinds),
        localPrimary: fc.constantFrom('a', 'b', undefined),
        wanted: fc.record({ fetch: fc.boolean(), replay: fc.boolean(), sync: fc.boolean() }),
        deleted: fc.boolean(),
        applied: fc.option(fc.record({ fetch: fc.boolean(), replay: fc.boolean(), sync: fc.boolean() }), { nil: undefined }),
      }),
      (c) => {
        const s = spec({ member: c.member, primary: c.primary, desired: { attach: c.attach, ...c.wanted, force: false }, deleted: c.deleted });
        const switches: Switches | undefined = c.applied;
        let state: LocalState = { kind: c.kind, primary: c.localPrimary, failure: undefined, ...(switches === undefined ? {} : { switches }) };
        for (let i = 0; i < 5; i++) {
          const step = nextStep('a', s, state);
          // delete ends the membership: nothing is left to plan
          if (step.kind === 'report' || step.kind === 'none' || step.kind === 'delete') return;
          state = carryOut(state, step);
        }
        assert.fail(`did not settle: ${JSON.stringify(c)}`);
      },
    ),
    { seed: fcSeed, numRuns: 500 },
  );
});
