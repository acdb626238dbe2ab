import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeSynced, encodeSynced, type SyncedMessage } from '../../src/fetch/ack-protocol.js';
import { FetchError } from '../../src/fetch/index.js';
import { formatLogName } from '../../src/log/index.js';

const synced: fc.Arbitrary<SyncedMessage> = fc.record({
  resource: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
  logName: fc.tuple(fc.integer({ min: 1, max: 999_999_999 }), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)).map(([n, h]) => formatLogName(n, h)),
  syncedEndBytes: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
});

void test('SYNCED: the bytes of the format', () => {
  const logName = formatLogName(3, 'beta');
  const payload = encodeSynced({ resource: 'r1', logName, syncedEndBytes: 0x1_0000_0203 });
  const expected = Buffer.concat([
    Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([0x03, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]),
    Buffer.from([2]),
    Buffer.from('r1'),
    Buffer.from([logName.length]),
    Buffer.from(logName),
  ]);
  assert.deepEqual(payload, expected);
});

void test('SYNCED round-trips, and every cut, extension or flipped header byte is refused as FETCH_PROTOCOL', () => {
  fc.assert(
    fc.property(synced, fc.nat(), (m, cutSeed) => {
      const payload = encodeSynced(m);
      assert.deepEqual(decodeSynced(payload), m);
      const cut = cutSeed % payload.length;
      assert.throws(() => decodeSynced(payload.subarray(0, cut)), (e: unknown) => e instanceof FetchError && e.code === 'FETCH_PROTOCOL');
      assert.throws(() => decodeSynced(Buffer.concat([payload, Buffer.from([0])])), (e: unknown) => e instanceof FetchError && e.code === 'FETCH_PROTOCOL');
      for (const at of [0, 1, 2, 3]) {
        const bad = Buffer.from(payload);
        bad[at] = bad[at]! ^ 0x10;
        assert.throws(() => decodeSynced(bad), (e: unknown) => e instanceof FetchError && e.code === 'FETCH_PROTOCOL');
      }
    }),
    { seed: 14, numRuns: 300 },
  );
});

void test('SYNCED refuses bad names and byte counts beyond 2^53', () => {
  const good = encodeSynced({ resource: 'r1', logName: formatLogName(1, 'a'), syncedEndBytes: 5 });
  const huge = Buffer.from(good);
  huge.writeUInt32LE(0x20_0000, 12);
  assert.throws(() => decodeSynced(huge), /beyond 2\^53/);
  assert.throws(() => decodeSynced(encodeSynced({ resource: '-r', logName: formatLogName(1, 'a'), syncedEndBytes: 5 })), /bad resource name/);
  assert.throws(() => decodeSynced(encodeSynced({ resource: 'r1', logName: 'not-a-log', syncedEndBytes: 5 })), /bad log name/);
});
