import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MarsError } from '../../src/core/errors.js';
import {
  chainFrom,
  compareChains,
  decodeChain,
  emptyChain,
  encodeChain,
  entryAt,
  extendChain,
  extendChainOnce,
  lastVersion,
  parseVersion,
  versionDigest,
  type VersionChain,
  type VersionLink,
} from '../../src/replay/version-chain.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

/** Link data without numbers: (origin, length) per log; numbers are given when the chain is built. */
const linkData = fc.record({ origin: fc.constantFrom('alpha', 'beta', 'gamma'), lengthBytes: fc.nat({ max: 1 << 30 }) });
const linkList = (maxLength: number) => fc.array(linkData, { maxLength });

function build(links: readonly { origin: string; lengthBytes: number }[], firstNumber = 1, base: VersionChain = emptyChain): VersionChain {
  let chain = base;
  links.forEach((l, i) => (chain = extendChain(chain, { logNumber: firstNumber + i, ...l })));
  return chain;
}

void test("a version has the original's form: digest,log-N-ORIGIN,length:previous-digest", () => {
  const one = extendChain(emptyChain, { logNumber: 1, origin: 'alpha', lengthBytes: 1234 });
  const two = extendChain(one, { logNumber: 2, origin: 'beta', lengthBytes: 0 });
  const [v1, v2] = two.entries;
  assert.equal(v1!.version, `${v1!.digest},log-000000001-alpha,1234:`);
  assert.equal(v2!.version, `${v2!.digest},log-000000002-beta,0:${v1!.digest}`);
  assert.equal(v1!.digest, versionDigest({ logNumber: 1, origin: 'alpha', lengthBytes: 1234 }, ''));
  assert.equal(v2!.digest, versionDigest({ logNumber: 2, origin: 'beta', lengthBytes: 0 }, v1!.version));
  // Frozen: SHA-256 of "1,alpha,1234:".
  assert.equal(v1!.digest, '4ce3ec514fa3bc75394cc39abd39f120c81e03bafc15dded181ad29bedc9a941');
  assert.deepEqual(parseVersion(v2!.version), { ...v2!, previousDigest: v1!.digest });
  assert.equal(parseVersion('nonsense'), undefined);
});

void test('a chain survives its text codec, and the codec refuses any altered version', () => {
  fc.assert(
    fc.property(linkList(12), fc.nat(), fc.nat({ max: 1000 }), (links, which, delta) => {
      const chain = build(links);
      assert.deepEqual(decodeChain(encodeChain(chain), 'version-chain'), chain);
      if (links.length === 0) return;
      const i = which % links.length;
      const json = JSON.parse(encodeChain(chain).toString()) as { versions: string[] };
      const parsed = parseVersion(json.versions[i]!)!;
      json.versions[i] = json.versions[i]!.replace(`,${parsed.lengthBytes}:`, `,${parsed.lengthBytes + 1 + delta}:`);
      assert.throws(() => decodeChain(Buffer.from(JSON.stringify(json)), 'version-chain'), (err: unknown) => err instanceof MarsError && err.code === 'BAD_STATE_DIR');
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('a chain extends only by the next log number', () => {
  const chain = build([{ origin: 'alpha', lengthBytes: 5 }]);
  assert.throws(() => extendChain(chain, { logNumber: 3, origin: 'alpha', lengthBytes: 1 }), /cannot follow/);
  assert.throws(() => extendChain(chain, { logNumber: 1, origin: 'alpha', lengthBytes: 1 }), /cannot follow/);
  assert.throws(() => extendChain(chain, { logNumber: 2, origin: 'bad/host', lengthBytes: 1 }), /bad log/);
});

void test('recording a complete log twice is harmless; recording a different one for the same number is refused', () => {
  const chain = build([{ origin: 'alpha', lengthBytes: 5 }, { origin: 'alpha', lengthBytes: 6 }]);
  assert.equal(extendChainOnce(chain, { logNumber: 2, origin: 'alpha', lengthBytes: 6 }), chain);
  assert.equal(extendChainOnce(chain, { logNumber: 3, origin: 'beta', lengthBytes: 1 }).entries.length, 3);
  assert.throws(() => extendChainOnce(chain, { logNumber: 1, origin: 'alpha', lengthBytes: 4 }), /not alpha of 4/);
});

void test('two chains with a common history then different logs diverge exactly at the first different log', () => {
  fc.assert(
    fc.property(linkList(20), linkData, linkData, linkList(10), linkList(10), (common, aFirst, bFirst, aRest, bRest) => {
      fc.pre(aFirst.origin !== bFirst.origin || aFirst.lengthBytes !== bFirst.lengthBytes);
      const a = build([...common, aFirst, ...aRest]);
      const b = build([...common, bFirst, ...bRest]);
      const at = common.length + 1;
      const result = compareChains(a, b);
      assert.equal(result.relation, 'diverged');
      assert.equal(result.atLogNumber, at);
      // The linear model: every later log differs too, even with the same (origin, length).
      for (let n = at; n <= Math.min(a.entries.length, b.entries.length); n++) assert.notEqual(entryAt(a, n)!.digest, entryAt(b, n)!.digest);
      assert.equal(compareChains(b, a).relation, 'diverged');
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('a chain that is a prefix of another is behind it, not diverged', () => {
  fc.assert(
    fc.property(linkList(15), linkList(10), (common, more) => {
      const a = build(common);
      const b = build([...common, ...more]);
      const result = compareChains(a, b);
      if (more.length === 0) assert.deepEqual(result, { relation: 'equal' });
      else assert.deepEqual(result, { relation: 'a-behind', commonLogNumber: common.length });
      const reverse = compareChains(b, a);
      if (more.length > 0) assert.deepEqual(reverse, { relation: 'b-behind', commonLogNumber: common.length });
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('a chain that starts later (after sync or logdelete) compares by the logs both cover', () => {
  fc.assert(
    fc.property(linkList(10), fc.array(linkData, { minLength: 1, maxLength: 10 }), linkData, (before, after, other) => {
      const full = build([...before, ...after]);
      const late = build(after, before.length + 1, chainFrom(lastVersion(build(before))));
      assert.deepEqual(decodeChain(encodeChain(late), 'late'), late);
      assert.deepEqual(compareChains(late, full), { relation: 'equal' });
      const longer = extendChain(full, { logNumber: before.length + after.length + 1, ...other });
      assert.deepEqual(compareChains(late, longer), { relation: 'a-behind', commonLogNumber: before.length + after.length });
      // The same later links on another history: diverged at the first log both cover.
      fc.pre(before.length > 0);
      const otherBase = build([{ ...before[0]!, lengthBytes: before[0]!.lengthBytes + 1 }, ...before.slice(1)]);
      const alien = build(after, before.length + 1, chainFrom(lastVersion(otherBase)));
      const result = compareChains(alien, full);
      assert.ok(result.relation === 'diverged' && result.atLogNumber === before.length + 1);
    }),
    { seed: fcSeed, numRuns: 200 },
  );
});

void test('empty chains are behind every chain, chains without common logs are unrelated unless one continues the other', () => {
  const a = build([{ origin: 'alpha', lengthBytes: 1 }, { origin: 'alpha', lengthBytes: 2 }]);
  assert.deepEqual(compareChains(emptyChain, a), { relation: 'a-behind', commonLogNumber: 0 });
  assert.deepEqual(compareChains(a, emptyChain), { relation: 'b-behind', commonLogNumber: 0 });
  assert.deepEqual(compareChains(emptyChain, emptyChain), { relation: 'equal' });
  const next: VersionLink = { logNumber: 3, origin: 'beta', lengthBytes: 7 };
  const continuation = extendChain(chainFrom(lastVersion(a)), next);
  assert.deepEqual(compareChains(a, continuation), { relation: 'a-behind', commonLogNumber: 2 });
  const stranger = extendChain(chainFrom(lastVersion(build([{ origin: 'gamma', lengthBytes: 1 }, { origin: 'gamma', lengthBytes: 2 }]))), next);
  assert.deepEqual(compareChains(a, stranger), { relation: 'unrelated' });
});
