/**
 * The logger's written-back position is what a restart starts from: at open it is the
 * start it was given, and it must be saved as such. Otherwise log-delete (which keeps the
 * logs from the written-back position on) removes the log the saved position still names,
 * and a crash before the first writeback leaves a primary that cannot recover.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { ManualClock } from '../../src/core/clock.js';
import { Logger } from '../../src/logger/logger.js';
import { recover } from '../../src/logger/recovery.js';
import { loadPosition, savePosition, type ReplayPosition } from '../../src/replay/position.js';
import { listLogFiles } from '../../src/log/index.js';
import { logsToDelete } from '../../src/strategy/index.js';

const deviceBytes = 16 * 1024;

test('a logger opened after a handover saves its start; log-delete then a crash still recover', async () => {
  const logs = new MemStorage();
  const deviceDisk = new MemStorage();
  const device = await deviceDisk.open('device', 'create');
  await device.write(Buffer.alloc(deviceBytes), 0);
  await device.sync();
  // The new primary replayed the old one's log 1 to its end (here empty) and saved that.
  await (await logs.open('log-000000001-beta', 'create')).close();
  await logs.syncDir();
  const replayed: ReplayPosition = { logNumber: 1, logHost: 'beta', offsetBytes: 0, nextSeq: 1n };
  await savePosition(logs, 'alpha', replayed);
  const start: ReplayPosition = { logNumber: 2, logHost: 'alpha', offsetBytes: 0, nextSeq: 1n };
  const logger = await Logger.open({ storage: logs, device, sizeBytes: deviceBytes, host: 'alpha', clock: new ManualClock(0), start });
  assert.deepEqual(await loadPosition(logs, 'alpha'), logger.writtenBackPosition, 'the saved position is the written-back one');
  await logger.drain();
  for (const f of logsToDelete(await listLogFiles(logs), logger.writtenBackPosition.logNumber)) await logs.remove(f.name);
  assert.deepEqual((await listLogFiles(logs)).map((f) => f.name), ['log-000000002-alpha'], 'log 1 went');
  await logger.close();
  const from = await loadPosition(logs, 'alpha');
  assert.ok(from !== undefined);
  const report = await recover({ storage: logs, device, deviceSizeBytes: deviceBytes, host: 'alpha', from });
  assert.equal(report.start.logNumber, 2);
});
