/**
 * The pure diff behind `marsadm events`: create, change and destroy lines, progress
 * throttled except when an amount reaches or leaves 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diffLines, diffState, formatLine, progressIntervalMs, type EventObject } from '../../src/cli/event-lines.js';

const progress = (replayRest: number): EventObject => ({ object: 'progress', fields: { name: 'r0', 'sync-percent': 100, 'sync-rest': 0, 'fetch-rest': 0, 'replay-rest': replayRest } });
const member = (peer: string, role: string): EventObject => ({ object: 'member', fields: { name: 'r0', peer, role } });

void test('members that appear, change and go become create, change and destroy lines', () => {
  const state = diffState([member('alpha', 'Primary'), member('beta', 'Secondary')], 0);
  const lines = diffLines(state, [member('alpha', 'Secondary'), member('gamma', 'Secondary')], 10).map((l) => formatLine(l, false));
  assert.deepEqual(lines, ['change member name:r0 peer:alpha role:Secondary', 'create member name:r0 peer:gamma role:Secondary', 'destroy member name:r0 peer:beta role:Secondary']);
  assert.deepEqual(diffLines(state, [member('alpha', 'Secondary'), member('gamma', 'Secondary')], 20), [], 'nothing changed, nothing printed');
});

void test('progress prints at most once per interval, but at once when an amount reaches 0', () => {
  const state = diffState([progress(0)], 0);
  assert.equal(diffLines(state, [progress(500)], 100).length, 1, 'leaving 0 shows at once');
  assert.equal(diffLines(state, [progress(400)], 200).length, 0, 'throttled');
  assert.equal(diffLines(state, [progress(300)], 100 + progressIntervalMs).length, 1, 'after the interval');
  assert.equal(diffLines(state, [progress(0)], 150 + progressIntervalMs).length, 1, 'reaching 0 shows at once');
  assert.equal(formatLine({ type: 'change', object: progress(0) }, true), '{"type":"change","object":"progress","name":"r0","sync-percent":100,"sync-rest":0,"fetch-rest":0,"replay-rest":0}');
});

void test('an unknown fetch-rest prints unknown (null in JSON), and becoming known shows at once', () => {
  const unknown: EventObject = { object: 'progress', fields: { ...progress(0).fields, 'fetch-rest': null } };
  assert.equal(formatLine({ type: 'exists', object: unknown }, false), 'exists progress name:r0 sync-percent:100 sync-rest:0 fetch-rest:unknown replay-rest:0');
  assert.equal(formatLine({ type: 'exists', object: unknown }, true), '{"type":"exists","object":"progress","name":"r0","sync-percent":100,"sync-rest":0,"fetch-rest":null,"replay-rest":0}');
  const state = diffState([unknown], 0);
  assert.equal(diffLines(state, [progress(0)], 10).length, 1, 'unknown to 0 (caught up) is not throttled');
});
