import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import type { PeerLink } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { SyncSourceSession, SyncTarget, syncLimits } from '../../src/sync/index.js';
import { deviceWith, mib, mixedImages, SourceHost, sourceResource } from './helpers.js';

const testTimeoutMs = 60_000;

/**
 * Over real TCP the source reads ranges into buffers it reuses once the link has sent
 * them, and the target's link joins received ranges into buffers it reuses once they are
 * written: a buffer given back too early would put one range's bytes into another.
 * Every range here has bytes of its own, so any such mix-up shows in the copy.
 */
async function syncOverTcp(sourceImage: Buffer, targetImage: Buffer): Promise<{ copy: Buffer; session: SyncSourceSession }> {
  const sourceStorage = new MemStorage();
  const targetStorage = new MemStorage();
  const sourceDevice = await deviceWith(sourceStorage, 'device', sourceImage);
  const targetDevice = await deviceWith(targetStorage, 'device', targetImage);
  const resource = sourceResource(sourceDevice, sourceImage.length);
  const sessions: SyncSourceSession[] = [];
  const host = await SourceHost.listen((link: PeerLink) => {
    sessions.push(SyncSourceSession.serve(link, { resolve: (name) => (name === 'r0' ? resource : undefined) }));
  });
  const target = await SyncTarget.open({ resource: 'r0', device: targetDevice, storage: targetStorage });
  try {
    target.attach(await host.dial());
    await target.whenDone();
    assert.equal(sessions.length, 1);
    return { copy: targetStorage.image('device')!, session: sessions[0]! };
  } finally {
    await target.close();
    await host.close();
  }
}

void test('reused range buffers on both sides never mix ranges: blank target (copy mode)', { timeout: testTimeoutMs }, async () => {
  const size = 48 * mib;
  const sourceImage = new Random(61).bytes(size);
  const { copy, session } = await syncOverTcp(sourceImage, Buffer.alloc(size));
  assert.ok(copy.equals(sourceImage), 'the copy equals the source');
  assert.ok(session.buffersReused > 0, `the source reused its range buffers (${session.buffersReused} times)`);
});

void test('reused range buffers on both sides never mix ranges: mixed differences (digest mode)', { timeout: testTimeoutMs }, async () => {
  const size = 32 * mib;
  const { source, target } = mixedImages(62, size);
  const { copy, session } = await syncOverTcp(source, target);
  assert.ok(copy.equals(source), 'the copy equals the source');
  assert.ok(session.buffersReused > 0, `the source reused its range buffers (${session.buffersReused} times)`);
});

void test('after its first ranges a source reads every range into a buffer it reused', { timeout: testTimeoutMs }, async () => {
  const size = 96 * mib;
  const sourceImage = new Random(63).bytes(size);
  const { copy, session } = await syncOverTcp(sourceImage, Buffer.alloc(size));
  assert.ok(copy.equals(sourceImage), 'the copy equals the source');
  const fresh = session.rangesAnswered - session.buffersReused;
  // In use at once: the ranges read ahead and those in the link's send buffer (up to its
  // limit plus the frame that crossed it), about the target's ranges in flight.
  const inUseMax = syncLimits.rangesInFlightMax + syncLimits.sourceReadsAheadMax + 2;
  assert.ok(fresh <= inUseMax, `${fresh} of ${session.rangesAnswered} ranges read into a fresh buffer (at most ${inUseMax})`);
});
