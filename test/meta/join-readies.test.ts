import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetaShell } from '../../src/daemon/meta-shell.js';
import { dataKey, desiredKey, resourceScope } from '../../src/meta/keys.js';
import { joinReadies, type Ready } from '../../src/meta/index.js';
import type { MetaStore } from '../../src/meta/index.js';
import { Harness } from './harness.js';

void test('several local changes joined into one Ready persist each scope once, with every send in order', async () => {
  const h = new Harness(['alpha', 'beta'], { r0: ['alpha', 'beta'] }, 3);
  h.bootstrap();
  const beta = h.node('beta');
  const readies: Ready[] = [beta.set(dataKey('r0', 'beta'), '/dev/vdb'), beta.set(desiredKey('r0', 'beta'), { attach: true })];
  const joined = joinReadies(readies);
  assert.deepEqual(joined.persist, [resourceScope('r0')], 'both keys are of one scope, written once');
  assert.deepEqual(
    joined.send.map((s) => s.to),
    readies.flatMap((r) => r.send.map((s) => s.to)),
  );
  assert.deepEqual([...joined.changed].sort(), [dataKey('r0', 'beta'), desiredKey('r0', 'beta')].sort());

  const saves: string[] = [];
  const sent: string[] = [];
  const store = {
    save: (scope: string) => {
      saves.push(scope);
      return Promise.resolve();
    },
  } as unknown as MetaStore;
  const shell = new MetaShell({
    node: beta,
    store,
    send: (to) => (sent.push(to), true),
    onChanged: () => undefined,
    onRejected: () => undefined,
    onPersistError: () => undefined,
  });
  await shell.apply(joined);
  assert.deepEqual(saves, [resourceScope('r0')], 'one durable write for both keys');
  assert.equal(sent.length, joined.send.length, 'every send carried out after the write');
});
