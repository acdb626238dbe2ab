import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from './harness.js';
import { Random } from '../../src/core/random.js';
import { MetaNode } from '../../src/meta/meta-node.js';
import { dataKey, desiredKey, hostKey } from '../../src/meta/keys.js';
import { hostRecordValue, parseHostRecord } from '../../src/meta/host-record.js';
import { canonicalJson, type JsonValue } from '../../src/meta/json-value.js';
import { liveEntry, tombstone, type Entry } from '../../src/meta/entry.js';
import { signEntry, testSigningKey } from '../../src/meta/signing.js';
import type { KeyedEntry, PushMessage } from '../../src/meta/messages.js';

// Three members; m is a member holding the secret that turns against the others.
const hosts = ['alpha', 'beta', 'm'];
const resources = { r2: ['alpha', 'beta', 'm'] };

function cluster(): Harness {
  const h = new Harness(hosts, resources, 7);
  h.bootstrap();
  h.converge();
  return h;
}

/** A version of `key` claiming `owner` as writer, newer than anything stored, signed by m (or not at all). */
function forged(h: Harness, key: string, owner: string, value: JsonValue, sign: 'm' | 'none' = 'm'): KeyedEntry {
  const lamport = h.node('m').lamportNow() + 1_000n;
  const entry: Entry = liveEntry(canonicalJson(value)!, lamport, owner);
  return { key, entry: sign === 'none' ? entry : signEntry(key, entry, testSigningKey('m')) };
}

/** m sends a push straight to `to`, as a member may. */
function push(h: Harness, to: string, entries: KeyedEntry[]): void {
  const message: PushMessage = { type: 'push', sentLamport: h.node('m').stamp(), entries };
  h.apply('m', { persist: [], send: [{ to, message }], changed: [], rejected: [] });
  h.settle();
}

function snapshotOf(h: Harness, host: string): string {
  return JSON.stringify(h.node(host).keys().map((k) => [k, h.node(host).get(k)]));
}

void test('a member that forges another host\'s record is refused and logged, and the record stays', () => {
  const h = cluster();
  const before = h.node('alpha').get(hostKey('beta'));
  const mKey = testSigningKey('m').publicKeyText;
  // Signed by m, unsigned, and carrying m's own key (a pin change): all three are refused.
  push(h, 'alpha', [forged(h, hostKey('beta'), 'beta', { address: 'm:7777', resources: ['r2'], signKey: mKey })]);
  push(h, 'alpha', [forged(h, hostKey('beta'), 'beta', { address: 'm:7777', resources: ['r2'] }, 'none')]);
  assert.deepEqual(h.node('alpha').get(hostKey('beta')), before);
  assert.equal(parseHostRecord(h.node('alpha').get(hostKey('beta'))!).address, 'beta:7777');
  const refused = h.rejections.filter((r) => r.peer === 'm' && r.code === 'META_BAD_SIGNATURE');
  assert.equal(refused.length, 2, JSON.stringify(h.rejections));
  assert.match(refused[0]!.detail, /cluster\/host\/beta/);
  h.converge();
  assert.deepEqual(h.node('beta').get(hostKey('beta')), before, 'nothing spread to the victim either');
});

void test('a forged device path and a forged switch are refused by the victim and by everyone else', () => {
  const h = cluster();
  const beforeBeta = snapshotOf(h, 'beta');
  const beforeAlpha = snapshotOf(h, 'alpha');
  const forgedEntries = [forged(h, dataKey('r2', 'beta'), 'beta', '/some/file'), forged(h, desiredKey('r2', 'beta'), 'beta', { attach: true }), forged(h, desiredKey('r2', 'alpha'), 'alpha', { attach: false })];
  push(h, 'beta', forgedEntries);
  push(h, 'alpha', forgedEntries);
  assert.equal(h.rejections.filter((r) => r.peer === 'm' && r.code === 'META_BAD_SIGNATURE').length, 6, JSON.stringify(h.rejections));
  h.converge();
  assert.equal(snapshotOf(h, 'beta'), beforeBeta);
  assert.equal(snapshotOf(h, 'alpha'), beforeAlpha);
  assert.equal(h.node('beta').get(dataKey('r2', 'beta')), undefined);
  assert.equal(h.node('alpha').get(desiredKey('r2', 'alpha')), undefined);
});

void test('a host takes no newer version of its own keys, not even one that carries its signature', () => {
  const h = cluster();
  h.apply('alpha', h.node('alpha').set(desiredKey('r2', 'alpha'), { attach: true }));
  h.settle();
  // A replayed copy signed by alpha but with a value alpha never wrote cannot exist; a
  // version alpha did not write is refused whatever it carries.
  const key = desiredKey('r2', 'alpha');
  const lamport = h.node('m').lamportNow() + 1_000n;
  const replay = signEntry(key, liveEntry(canonicalJson({ attach: false })!, lamport, 'alpha'), testSigningKey('alpha'));
  push(h, 'alpha', [{ key, entry: replay }]);
  assert.deepEqual(h.node('alpha').get(key), { attach: true });
  assert.ok(h.rejections.some((r) => r.code === 'META_BAD_SIGNATURE' && /own key/.test(r.detail)));
});

void test('an older version of its own key that a peer relays is dropped without a refusal; a forged older one is refused', () => {
  const h = cluster();
  const key = desiredKey('r2', 'alpha');
  h.apply('alpha', h.node('alpha').set(key, { attach: true }));
  h.settle();
  const old = h.node('alpha').entry(key)!;
  h.apply('alpha', h.node('alpha').set(key, { attach: false }));
  // beta has not heard of the newer version yet and relays the one it holds.
  push(h, 'alpha', [{ key, entry: old }]);
  assert.deepEqual(h.node('alpha').get(key), { attach: false });
  assert.equal(h.rejections.length, 0, JSON.stringify(h.rejections));
  const older = signEntry(key, liveEntry(canonicalJson({ attach: true })!, old.lamport - 1n, 'alpha'), testSigningKey('m'));
  push(h, 'alpha', [{ key, entry: older }]);
  assert.deepEqual(h.node('alpha').get(key), { attach: false });
  assert.ok(h.rejections.some((r) => r.code === 'META_BAD_SIGNATURE' && /own key/.test(r.detail)));
});

void test('a forged tombstone of another host\'s record or keys is refused', () => {
  const h = cluster();
  h.apply('beta', h.node('beta').set(desiredKey('r2', 'beta'), { attach: true }));
  h.settle();
  const lamport = h.node('m').lamportNow() + 1_000n;
  const gone = (key: string, owner: string): KeyedEntry => ({ key, entry: signEntry(key, tombstone(lamport, owner, [owner]), testSigningKey('m')) });
  push(h, 'alpha', [gone(hostKey('beta'), 'beta'), gone(desiredKey('r2', 'beta'), 'beta')]);
  assert.ok(h.node('alpha').get(hostKey('beta')) !== undefined);
  assert.deepEqual(h.node('alpha').get(desiredKey('r2', 'beta')), { attach: true });
});

void test('a new name is pinned on first sight: a later record of that name under another key is refused', () => {
  const h = cluster();
  const zeta = testSigningKey('zeta');
  const record = canonicalJson(hostRecordValue({ address: 'zeta:7777', resources: [], signKey: zeta.publicKeyText }))!;
  const lamport = h.node('m').lamportNow() + 1_000n;
  push(h, 'alpha', [{ key: hostKey('zeta'), entry: signEntry(hostKey('zeta'), liveEntry(record, lamport, 'zeta'), zeta) }]);
  assert.equal(h.node('alpha').pinnedKey('zeta'), zeta.publicKeyText);
  const other = testSigningKey('zeta', 1);
  const taken = canonicalJson(hostRecordValue({ address: 'm:7777', resources: [], signKey: other.publicKeyText }))!;
  push(h, 'alpha', [{ key: hostKey('zeta'), entry: signEntry(hostKey('zeta'), liveEntry(taken, lamport + 10n, 'zeta'), other) }]);
  assert.equal(parseHostRecord(h.node('alpha').get(hostKey('zeta'))!).address, 'zeta:7777');
  assert.equal(h.node('alpha').pinnedKey('zeta'), zeta.publicKeyText);
});

void test('a host\'s own record always carries its key, and its owned entries their signatures', () => {
  const h = cluster();
  for (const host of hosts) {
    assert.equal(parseHostRecord(h.node('alpha').get(hostKey(host))!).signKey, testSigningKey(host).publicKeyText);
    assert.match(h.node('alpha').entry(hostKey(host))!.sig ?? '', /==$/);
  }
});

void test('metadata from before host keys is signed again by its owner at start, with fresh stamps', () => {
  const h = cluster();
  const a = h.node('alpha');
  // A stored copy as an older version wrote it: no signature, a record without a key.
  const unsigned = new Map(a.exportScope('cluster'));
  const old = unsigned.get(hostKey('alpha'))!;
  unsigned.set(hostKey('alpha'), liveEntry(canonicalJson({ address: 'alpha:7777', resources: ['r2'] })!, old.lamport, 'alpha'));
  const restarted = new MetaNode({ host: 'alpha', clock: h.clock, random: new Random(5), signingKey: testSigningKey('alpha'), snapshot: new Map([['cluster', unsigned]]) });
  const ready = restarted.signOwnEntries();
  assert.ok(ready.persist.includes('cluster'));
  const entry = restarted.entry(hostKey('alpha'))!;
  assert.ok(entry.lamport > old.lamport);
  assert.equal(parseHostRecord(entry.value).signKey, testSigningKey('alpha').publicKeyText);
  // Beta takes the re-signed record; nothing is left to sign.
  h.nodes.set('alpha', restarted);
  h.apply('alpha', ready);
  h.settle();
  assert.deepEqual(h.node('beta').get(hostKey('alpha')), entry.value);
  assert.deepEqual(restarted.signOwnEntries().send, []);
});
