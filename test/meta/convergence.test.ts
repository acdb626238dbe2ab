import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Harness } from './harness.js';
import { compareVersions, type Entry } from '../../src/meta/entry.js';
import { desiredKey, primaryKey, resourceScope, parseKey } from '../../src/meta/keys.js';
import { clockSkewMsMax, tombstonePurgeDelayMs } from '../../src/meta/limits.js';
import { liveEntry } from '../../src/meta/entry.js';
import { Random } from '../../src/core/random.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const hosts = ['a', 'b', 'c', 'd', 'e'];
const resources: Record<string, string[]> = { r1: ['a', 'b'], r2: ['b', 'c', 'd'], r3: ['a', 'c', 'd', 'e'] };

/** Keys a host may write: its own switches, the primary of its resources, its own and a shared cluster key. */
function writableKeys(host: string): string[] {
  const keys = [`cluster/note/${host}`, 'cluster/policy'];
  for (const [r, members] of Object.entries(resources)) {
    if (members.includes(host)) keys.push(desiredKey(r, host), primaryKey(r));
  }
  return keys;
}

type Op =
  | { kind: 'set'; host: number; key: number; value: number }
  | { kind: 'delete'; host: number; key: number }
  | { kind: 'deliver'; index: number; mode: 'deliver' | 'drop' | 'duplicate' }
  | { kind: 'advance'; ms: number }
  | { kind: 'tick'; host: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('set' as const), host: fc.nat(4), key: fc.nat(10), value: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), host: fc.nat(4), key: fc.nat(10) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('deliver' as const), index: fc.nat(1000), mode: fc.constantFrom('deliver' as const, 'drop' as const, 'duplicate' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.nat(3000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('tick' as const), host: fc.nat(4) }) },
);

/** The dumb model: for each key, the newest version any host wrote. */
class Model {
  readonly newest = new Map<string, Entry>();
  record(key: string, entry: Entry | undefined): void {
    if (entry === undefined) return;
    const before = this.newest.get(key);
    if (before === undefined || compareVersions(before, entry) < 0) this.newest.set(key, entry);
  }
  visible(key: string): unknown {
    const e = this.newest.get(key);
    return e === undefined || e.deleted ? undefined : e.value;
  }
}

function run(h: Harness, model: Model, ops: readonly Op[]): void {
  for (const op of ops) {
    if (op.kind === 'deliver') h.take(op.index, op.mode);
    else if (op.kind === 'advance') h.clock.advance(op.ms);
    else if (op.kind === 'tick') h.apply(hosts[op.host]!, h.node(hosts[op.host]!).tick());
    else {
      const host = hosts[op.host]!;
      const keys = writableKeys(host);
      const key = keys[op.key % keys.length]!;
      const node = h.node(host);
      h.apply(host, op.kind === 'set' ? node.set(key, op.value) : node.delete(key));
      model.record(key, node.entry(key));
    }
  }
}

/** Every member of a key's scope shows the model's value. */
function checkModel(h: Harness, model: Model): void {
  for (const key of model.newest.keys()) {
    const resource = parseKey(key)?.resource;
    const holders = resource === undefined ? hosts : resources[resource]!;
    for (const host of holders) assert.deepEqual(h.node(host).get(key), model.visible(key), `${key} on ${host}`);
  }
  for (const r of Object.keys(resources)) {
    for (const host of hosts) if (!resources[r]!.includes(host)) assert.equal(h.node(host).digest(resourceScope(r)), 0n, `${host} holds no keys of ${r}`);
  }
}

void test('any order, duplication or loss-then-retry of deliveries converges to the newest write of every key', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), fc.nat(1000), (ops, seed) => {
      const h = new Harness(hosts, resources, seed);
      h.bootstrap();
      h.converge();
      const model = new Model();
      run(h, model, ops);
      h.converge();
      assert.ok(h.converged());
      checkModel(h, model);
    }),
    { seed: fcSeed, numRuns: 60 },
  );
});

/** Deletes every live key the model knows, each by a host allowed to write it. */
function deleteAll(h: Harness, model: Model): void {
  for (const key of [...model.newest.keys()]) {
    if (model.visible(key) === undefined) continue;
    const info = parseKey(key)!;
    const writer = info.owner ?? (info.resource === undefined ? 'a' : resources[info.resource]![0]!);
    const node = h.node(writer);
    h.apply(writer, node.delete(key));
    model.record(key, node.entry(key));
  }
}

void test('tombstones never resurrect a key: delete all, purge, then replay stale and duplicated messages', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), fc.nat(1000), (ops, seed) => {
      const h = new Harness(hosts, resources, seed);
      h.bootstrap();
      h.converge();
      const model = new Model();
      run(h, model, ops);
      h.converge();
      const beforeDeletes = h.history.length;
      h.clock.advance(1000);
      deleteAll(h, model);
      h.converge();
      // Long enough for seen-by sets to complete and every tombstone to be purged.
      for (let i = 0; i < 4 + tombstonePurgeDelayMs / 5000; i++) {
        h.clock.advance(5000);
        h.tickAll();
        h.settle();
      }
      for (const node of h.nodes.values()) for (const scope of node.scopes()) for (const e of node.exportScope(scope).values()) assert.equal(e.deleted, false, 'all tombstones purged');
      // A random half of the messages sent before the deletes arrive once more, shuffled.
      const stale = h.history.slice(0, beforeDeletes);
      const random = new Random(seed);
      for (let i = stale.length - 1; i > 0; i--) {
        const j = random.int(i + 1);
        [stale[i], stale[j]] = [stale[j]!, stale[i]!];
      }
      for (const item of stale) if (random.chance(0.5)) h.deliver(item);
      h.settle();
      h.converge();
      checkModel(h, model);
    }),
    { seed: fcSeed, numRuns: 30 },
  );
});

void test('far-future stamps are refused and clamp the clock; near-future ones are taken', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10 * clockSkewMsMax }), (aheadMs) => {
      const h = new Harness(['a', 'b'], { r1: ['a', 'b'] }, 1);
      h.bootstrap();
      h.converge();
      const node = h.node('a');
      const stamp = BigInt(h.clock.nowMs() + aheadMs) * 1000n;
      const ready = node.receive('b', { type: 'push', sentLamport: stamp, entries: [{ key: primaryKey('r1'), entry: liveEntry('b', stamp, 'b') }] });
      const limit = BigInt(h.clock.nowMs() + clockSkewMsMax) * 1000n;
      assert.ok(node.lamportNow() <= limit);
      if (stamp > limit) {
        assert.equal(ready.rejected[0]?.code, 'META_CLOCK_SKEW');
        assert.equal(node.get(primaryKey('r1')), undefined);
      } else {
        assert.equal(node.get(primaryKey('r1')), 'b');
        // The next local write is newer than what was taken.
        h.apply('a', node.set(primaryKey('r1'), 'a'));
        assert.equal(node.get(primaryKey('r1')), 'a');
      }
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});
