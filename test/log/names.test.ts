import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { formatLogName, listLogFiles, logNumberMax, parseLogName } from '../../src/log/names.js';
import { fcSeed } from './helpers.js';

void test('a log file name has a 9-digit number and the host', () => {
  assert.equal(formatLogName(1, 'alpha'), 'log-000000001-alpha');
  assert.equal(formatLogName(logNumberMax, 'a.b-c_d'), 'log-999999999-a.b-c_d');
  assert.deepEqual(parseLogName('log-000000042-host-1'), { name: 'log-000000042-host-1', logNumber: 42, host: 'host-1' });
});

void test('every valid log number and host survives format and parse', () => {
  const host = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: logNumberMax }), host, (logNumber, name) => {
      const parsed = parseLogName(formatLogName(logNumber, name));
      assert.deepEqual(parsed, { name: formatLogName(logNumber, name), logNumber, host: name });
    }),
    { seed: fcSeed, numRuns: 300 },
  );
});

void test('bad log numbers and hosts are refused with EINVAL', () => {
  for (const [logNumber, host] of [
    [0, 'a'],
    [logNumberMax + 1, 'a'],
    [1.5, 'a'],
    [1, ''],
    [1, 'a/b'],
    [1, 'x'.repeat(65)],
    [1, 'ünï'],
  ] as const) {
    assert.throws(() => formatLogName(logNumber, host), { code: 'EINVAL' });
  }
});

void test('names that are not log files do not parse', () => {
  for (const name of ['log-1-a', 'log-000000000-a', 'log-000000001-', 'log-000000001', 'xlog-000000001-a', 'log-000000001-a/b', 'replay-a', 'log-0000000001-a']) {
    assert.equal(parseLogName(name), undefined, name);
  }
});

void test('listing returns the log files in log order and ignores other files', async () => {
  const storage = new MemStorage();
  for (const name of ['log-000000010-a', 'replay-a', 'log-000000002-b', 'log-000000002-a', '.tmp', 'log-000000001-z']) {
    await storage.writeAtomic(name, Buffer.alloc(0));
  }
  const logs = await listLogFiles(storage);
  assert.deepEqual(
    logs.map((l) => l.name),
    ['log-000000001-z', 'log-000000002-a', 'log-000000002-b', 'log-000000010-a'],
  );
});
