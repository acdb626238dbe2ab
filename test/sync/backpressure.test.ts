import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import { SyncSourceSession, SyncTarget, syncLimits } from '../../src/sync/index.js';
import { deviceWith, MemLink, mib, settle, sourceResource } from './helpers.js';
import { waitFor } from '../support/wait.js';

/** A link end whose send buffer is "full" until the test says otherwise. */
class BlockedLink extends MemLink {
  blocked = true;
  private waiters: (() => void)[] = [];
  override writable(): Promise<void> {
    if (!this.blocked) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  release(): void {
    this.blocked = false;
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Counts the bytes read from a device. */
function counting(device: StorageFile): { file: StorageFile; readBytes: () => number } {
  let readBytes = 0;
  const file: StorageFile = {
    name: device.name,
    read: async (target, position) => {
      const n = await device.read(target, position);
      readBytes += n;
      return n;
    },
    write: (data, position) => device.write(data, position),
    writeBatch: (jobs) => device.writeBatch(jobs),
    sync: () => device.sync(),
    size: () => device.size(),
    truncate: (n) => device.truncate(n),
    close: () => device.close(),
  };
  return { file, readBytes: () => readBytes };
}

void test('a source whose link cannot take more sends nothing and reads only a bounded amount ahead', { timeout: 20_000 }, async () => {
  const size = 32 * mib;
  const storage = new MemStorage();
  const source = counting(await deviceWith(storage, 'source', new Random(61).bytes(size)));
  const targetDevice = await deviceWith(storage, 'target', Buffer.alloc(size));
  const sourceEnd = new BlockedLink('beta');
  const targetEnd = new MemLink('alpha');
  sourceEnd.other = targetEnd;
  targetEnd.other = sourceEnd;
  const session = SyncSourceSession.serve(sourceEnd, { resolve: () => sourceResource(source.file, size) });
  const target = await SyncTarget.open({ resource: 'r0', device: targetDevice, storage, copyMode: false });
  target.attach(targetEnd);
  await waitFor('the target has asked for every range it may', () => target.progress().rangesCompared === syncLimits.rangesInFlightMax, 10_000, 2);
  await settle(50);
  const framesBefore = sourceEnd.sentFrames;
  assert.equal(framesBefore, 1, 'only ACCEPT went out (it does not wait for room)');
  assert.ok(source.readBytes() <= syncLimits.sourceReadsAheadMax * syncLimits.rangeBytesMax, `read ${source.readBytes()} bytes ahead`);
  assert.equal(session.dataBytesSent, 0);
  sourceEnd.release();
  await target.whenDone();
  assert.ok(storage.image('target')!.equals(storage.image('source')!));
  assert.equal(source.readBytes(), size, 'every byte read once');
});
