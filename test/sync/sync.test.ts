import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { systemClock } from '../../src/core/clock.js';
import { PeerConnection, systemTimers, type PeerLink } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import { loadSyncState, SyncSourceSession, syncLimits, SyncTarget, type SyncTargetOptions } from '../../src/sync/index.js';
import { blockBytes, deviceWith, differingBlocks, endPosition, mib, mixedImages, SourceHost, sourceResource, startPosition } from './helpers.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 60_000;

interface Rig {
  readonly sourceStorage: MemStorage;
  readonly targetStorage: MemStorage;
  readonly sourceDevice: StorageFile;
  readonly target: SyncTarget;
  readonly sessions: SyncSourceSession[];
  readonly sourceLinks: PeerLink[];
  readonly host: SourceHost;
  connect(): Promise<void>;
  close(): Promise<void>;
}

async function rig(sourceImage: Buffer, targetImage: Buffer, over: Partial<SyncTargetOptions> = {}, onStart?: () => void): Promise<Rig> {
  const sourceStorage = new MemStorage();
  const targetStorage = new MemStorage();
  const sourceDevice = await deviceWith(sourceStorage, 'device', sourceImage);
  const targetDevice = await deviceWith(targetStorage, 'device', targetImage);
  const sessions: SyncSourceSession[] = [];
  const sourceLinks: PeerLink[] = [];
  const resource = sourceResource(sourceDevice, sourceImage.length);
  const host = await SourceHost.listen((link) => {
    sourceLinks.push(link);
    const started = { ...resource, startPosition: () => (onStart?.(), resource.startPosition()) };
    sessions.push(SyncSourceSession.serve(link, { resolve: (name) => (name === 'r0' ? started : undefined), digestSeed: () => 0x5eedn }));
  });
  const target = await SyncTarget.open({ resource: 'r0', device: targetDevice, storage: targetStorage, ...over });
  return {
    sourceStorage,
    targetStorage,
    sourceDevice,
    target,
    sessions,
    sourceLinks,
    host,
    connect: async () => target.attach(await host.dial()),
    close: async () => {
      await target.close();
      await host.close();
    },
  };
}

void test('after sync the target equals the source byte for byte, and only differing blocks moved', { timeout: testTimeoutMs }, async () => {
  const size = 16 * mib;
  const { source, target: targetImage } = mixedImages(1, size);
  const r = await rig(source, targetImage);
  try {
    await r.connect();
    await r.target.whenDone();
    assert.ok(r.targetStorage.image('device')!.equals(source), 'target equals source');
    const differing = differingBlocks(source, targetImage);
    const zeroBlock = Buffer.alloc(blockBytes);
    const zeroes = differing.filter((b) => source.subarray(b * blockBytes, (b + 1) * blockBytes).equals(zeroBlock)).length;
    const p = r.target.progress();
    assert.ok(differing.length > 0 && zeroes > 0 && differing.length < size / blockBytes, 'the images mix all kinds of blocks');
    assert.equal(p.dataBytes, (differing.length - zeroes) * blockBytes, 'block data moved = differing non-zero blocks');
    assert.equal(p.zeroBytes, zeroes * blockBytes, 'zero runs cover the differing zero blocks');
    assert.ok(p.receivedBytes < p.dataBytes + size / 100, 'little beyond the data itself');
    assert.equal(p.state, 'done');
    assert.equal(p.restBytes, 0);
    assert.deepEqual(p.startPosition, startPosition);
    assert.deepEqual(p.endPosition, endPosition);
    const persisted = await loadSyncState(r.targetStorage);
    assert.deepEqual(persisted, { resource: 'r0', sizeBytes: size, nextBytes: size, startPosition, endPosition, sourceHost: 'alpha' });
    assert.equal(r.sessions[0]?.dataBytesSent, p.dataBytes);
  } finally {
    await r.close();
  }
});

void test('a device whose size is not a multiple of 4 KiB is synced to its last byte, with and without copy mode', { timeout: testTimeoutMs }, async () => {
  const size = 9 * mib + 1000;
  const sourceImage = new Random(51).bytes(size);
  const targetImage = Buffer.from(sourceImage);
  targetImage[size - 1] = (targetImage[size - 1]! + 1) & 0xff; // only the short last block differs
  for (const [name, target] of [['compared', targetImage], ['copied', Buffer.alloc(size)]] as const) {
    const r = await rig(sourceImage, target);
    try {
      await r.connect();
      await r.target.whenDone();
      assert.ok(r.targetStorage.image('device')!.equals(sourceImage), `${name}: target equals source`);
      if (name === 'compared') assert.equal(r.target.progress().dataBytes, 1000, 'only the short last block moved');
    } finally {
      await r.close();
    }
  }
});

void test('two identical disks move less than 2 % of the device over the network', { timeout: testTimeoutMs }, async () => {
  const size = 32 * mib;
  const image = new Random(2).bytes(size);
  const r = await rig(image, Buffer.from(image));
  try {
    await r.connect();
    await r.target.whenDone();
    const p = r.target.progress();
    const moved = p.sentBytes + p.receivedBytes;
    assert.equal(p.dataBytes + p.zeroBytes, 0);
    assert.ok(moved < 0.02 * size, `moved ${moved} bytes of ${size}`);
    assert.equal(moved, r.sessions[0]!.sentBytes + r.sessions[0]!.receivedBytes, 'both ends count the same bytes');
    assert.ok(r.targetStorage.image('device')!.equals(image));
  } finally {
    await r.close();
  }
});

void test('onto a blank disk most ranges go as plain copies, and the copy is exact', { timeout: testTimeoutMs }, async () => {
  const size = 64 * mib;
  const sourceImage = new Random(31).bytes(size);
  sourceImage.fill(0, 20 * mib, 21 * mib); // a zero region travels as zero runs, copied or not
  const r = await rig(sourceImage, Buffer.alloc(size));
  try {
    await r.connect();
    await r.target.whenDone();
    assert.ok(r.targetStorage.image('device')!.equals(sourceImage), 'target equals source');
    const p = r.target.progress();
    assert.equal(p.rangesCompared + p.rangesCopied, size / syncLimits.rangeBytesMax);
    assert.ok(p.rangesCopied >= p.rangesCompared, `${p.rangesCopied} ranges copied, ${p.rangesCompared} compared`);
    assert.ok(p.rangesCompared >= syncLimits.copyModeAfterRanges, 'after comparing the first ones');
    assert.equal(p.dataBytes, size - mib);
  } finally {
    await r.close();
  }
});

void test('copy mode ends when the disks turn alike, at a bounded cost', { timeout: testTimeoutMs }, async () => {
  const size = 64 * mib;
  const sourceImage = new Random(32).bytes(size);
  const targetImage = Buffer.concat([Buffer.alloc(16 * mib), sourceImage.subarray(16 * mib)]);
  const costMax = (syncLimits.copyModeProbeRanges + syncLimits.rangesInFlightMax) * syncLimits.rangeBytesMax;
  for (const copyMode of [true, false]) {
    const r = await rig(sourceImage, targetImage, { copyMode });
    try {
      await r.connect();
      await r.target.whenDone();
      assert.ok(r.targetStorage.image('device')!.equals(sourceImage), 'target equals source');
      const p = r.target.progress();
      if (copyMode) assert.ok(p.dataBytes >= 16 * mib && p.dataBytes <= 16 * mib + costMax, `${p.dataBytes} bytes moved`);
      else assert.equal(p.dataBytes, 16 * mib, 'without copy mode exactly the differing blocks');
      assert.ok(p.rangesCompared >= 48, 'the alike part is compared, not copied');
    } finally {
      await r.close();
    }
  }
});

void test('while the source keeps writing, the target differs only in blocks written after the sync started', { timeout: testTimeoutMs }, async () => {
  const size = 32 * mib;
  const random = new Random(3);
  const sourceImage = random.bytes(size);
  const flags = { started: false };
  const r = await rig(sourceImage, Buffer.alloc(size), { rangesInFlight: 2 }, () => (flags.started = true));
  const writtenAfterStart = new Set<number>();
  const writesPerTurn = 16;
  let writes = 0;
  const writer = (async () => {
    while (r.target.state !== 'done' && r.target.state !== 'failed') {
      for (let i = 0; i < writesPerTurn; i++) {
        const block = random.int(size / blockBytes);
        const wasStarted = flags.started;
        await r.sourceDevice.write(random.bytes(blockBytes), block * blockBytes);
        if (wasStarted) writtenAfterStart.add(block);
        writes++;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  try {
    await r.connect();
    await r.target.whenDone();
    await writer;
    const differing = differingBlocks(r.sourceStorage.image('device')!, r.targetStorage.image('device')!);
    console.log(`# ${writes} writes, ${writtenAfterStart.size} blocks written after the start, ${differing.length} differ after sync`);
    assert.ok(writes > 100 && writtenAfterStart.size > 100, `the source was written during the sync (${writes} writes)`);
    for (const block of differing) assert.ok(writtenAfterStart.has(block), `block ${block} differs but was not written after the start`);
    assert.deepEqual(r.target.progress().startPosition, startPosition, 'the start position to replay from is recorded');
  } finally {
    await r.close();
  }
});

void test('a disconnect mid-sync resumes from the persisted progress and ends equal', { timeout: testTimeoutMs }, async () => {
  const size = 32 * mib;
  const sourceImage = new Random(4).bytes(size);
  const r = await rig(sourceImage, Buffer.alloc(size), { persistBytes: 2 * mib });
  try {
    await r.connect();
    await waitFor('8 MiB copied', () => r.target.progress().doneBytes >= 8 * mib, 10_000, 2);
    r.sourceLinks[0]!.close(); // the connection drops under the target
    await waitFor('the target notices', () => r.target.state === 'source-unreachable', 10_000, 2);
    await r.target.pause(); // waits for the teardown: writes settled, progress persisted
    r.target.resume();
    const persisted = await loadSyncState(r.targetStorage);
    assert.ok(persisted !== undefined && persisted.nextBytes >= 8 * mib && persisted.nextBytes < size, 'progress persisted');
    assert.equal(persisted.nextBytes, r.target.progress().doneBytes);
    await r.connect();
    await r.target.whenDone();
    assert.ok(r.targetStorage.image('device')!.equals(sourceImage), 'target equals source');
    assert.equal(r.sessions.length, 2);
    assert.equal(r.sessions[1]!.dataBytesSent, size - persisted.nextBytes, 'the second session sent only what was left');
    assert.equal(r.target.progress().sessions, 2);
  } finally {
    await r.close();
  }
});

void test('a session with another source host (a new primary) starts the copy again: blocks of the old history do not stay', { timeout: testTimeoutMs }, async () => {
  const size = 16 * mib;
  const oldImage = new Random(41).bytes(size);
  // The new primary's device lacks some of the old one's writes (a forced failover): every
  // 8th block of the first half differs.
  const newImage = Buffer.from(oldImage);
  const lost = new Random(42);
  for (let b = 0; b < size / blockBytes / 2; b += 8) lost.fill(newImage.subarray(b * blockBytes, (b + 1) * blockBytes));
  const newStart = { logNumber: 9, logHost: 'gamma', offsetBytes: 0, nextSeq: 500n };
  const newEnd = { logNumber: 9, logHost: 'gamma', offsetBytes: 65536, nextSeq: 600n };
  const r = await rig(oldImage, Buffer.alloc(size), { persistBytes: 2 * mib });
  const newDevice = await deviceWith(new MemStorage(), 'device', newImage);
  const newSessions: SyncSourceSession[] = [];
  const gamma = await SourceHost.listen((link) => {
    const resource = { ...sourceResource(newDevice, size), startPosition: () => newStart, endPosition: () => newEnd };
    newSessions.push(SyncSourceSession.serve(link, { resolve: (name) => (name === 'r0' ? resource : undefined), digestSeed: () => 0x5eedn }));
  }, 'gamma');
  const changes: { from: string | undefined; to: string; discardedBytes: number }[] = [];
  try {
    await r.connect();
    await waitFor('8 MiB copied from alpha', () => r.target.progress().doneBytes >= 8 * mib, 10_000, 2);
    r.sourceLinks[0]!.close();
    await waitFor('the target notices', () => r.target.state === 'source-unreachable', 10_000, 2);
    await r.target.pause();
    r.target.resume();
    const before = await loadSyncState(r.targetStorage);
    assert.equal(before?.sourceHost, 'alpha');
    assert.ok(before.nextBytes >= 8 * mib, 'progress from alpha persisted');
    // The target's options are fixed at open: a restarted target with a listener sees the change.
    await r.target.close();
    const target = await SyncTarget.open({ resource: 'r0', device: await r.targetStorage.open('device', 'write'), storage: r.targetStorage, onSourceChanged: (c) => changes.push(c) });
    try {
      target.attach(await gamma.dial());
      await target.whenDone();
      assert.ok(r.targetStorage.image('device')!.equals(newImage), 'the copy equals the new source, not a mix of both histories');
      assert.deepEqual(changes, [{ from: 'alpha', to: 'gamma', discardedBytes: before.nextBytes }]);
      const p = target.progress();
      assert.equal(p.sourceChanges, 1);
      assert.deepEqual(p.startPosition, newStart, "the new source's start position: replay starts in its history");
      assert.deepEqual(await loadSyncState(r.targetStorage), { resource: 'r0', sizeBytes: size, nextBytes: size, startPosition: newStart, endPosition: newEnd, sourceHost: 'gamma' });
      assert.ok(newSessions[0]!.dataBytesSent < size - 4 * mib, `the copied prefix was compared, mostly not sent again (${newSessions[0]!.dataBytesSent} bytes sent)`);
    } finally {
      await target.close();
    }
  } finally {
    await r.close();
    await gamma.close();
  }
});

void test('wired to a PeerConnection, the target resumes by itself after the link drops', { timeout: testTimeoutMs }, async () => {
  const size = 32 * mib;
  const sourceImage = new Random(41).bytes(size);
  const r = await rig(sourceImage, Buffer.alloc(size), { persistBytes: 4 * mib });
  const connection = new PeerConnection({
    name: 'alpha (sync)',
    dial: () => r.host.dial(),
    clock: systemClock,
    timers: systemTimers,
    random: new Random(42),
    onOpen: (link) => r.target.linkOpened(link),
    onFrame: (frame) => r.target.frameReceived(frame),
    onClose: (error) => r.target.linkClosed(error),
  });
  try {
    connection.start();
    await waitFor('8 MiB copied', () => r.target.progress().doneBytes >= 8 * mib, 10_000, 2);
    r.sourceLinks[0]!.close();
    await r.target.whenDone();
    assert.ok(r.targetStorage.image('device')!.equals(sourceImage), 'target equals source');
    assert.equal(r.target.progress().sessions, 2);
    assert.ok(r.sessions[1]!.dataBytesSent < size, 'the second link resumed');
  } finally {
    connection.stop();
    await r.close();
  }
});

void test('a target killed mid-sync (power loss) is restarted over the same storage and resumes', { timeout: testTimeoutMs }, async () => {
  const size = 32 * mib;
  const sourceImage = new Random(5).bytes(size);
  const r = await rig(sourceImage, new Random(6).bytes(size), { persistBytes: 2 * mib });
  try {
    await r.connect();
    await waitFor('a persisted progress of 8 MiB', () => r.target.progress().doneBytes >= 10 * mib, 10_000, 2);
    const before = await loadSyncState(r.targetStorage);
    assert.ok(before !== undefined && before.nextBytes >= 2 * mib);
    r.targetStorage.crash(new Random(7)); // unsynced device writes are (partly) lost
    for (const link of r.sourceLinks) link.close(); // the dead process's socket closes
    await waitFor('the old target gives up', () => r.target.state !== 'syncing', 10_000, 2);
    const restarted = await SyncTarget.open({ resource: 'r0', device: await r.targetStorage.open('device', 'write'), storage: r.targetStorage, persistBytes: 2 * mib });
    const resumedAt = restarted.progress().doneBytes;
    assert.ok(resumedAt >= before.nextBytes && resumedAt < size, `resumes at ${resumedAt}`);
    assert.deepEqual(restarted.progress().startPosition, startPosition, 'the first start position is kept');
    restarted.attach(await r.host.dial());
    await restarted.whenDone();
    assert.ok(r.targetStorage.image('device')!.equals(sourceImage), 'target equals source');
    assert.ok(r.sessions[1]!.dataBytesSent <= size - resumedAt);
    await restarted.close();
  } finally {
    await r.close();
  }
});

void test('a restarted target whose sync is done is done at once and needs no source', { timeout: testTimeoutMs }, async () => {
  const image = new Random(8).bytes(2 * mib);
  const r = await rig(image, Buffer.alloc(image.length));
  try {
    await r.connect();
    await r.target.whenDone();
    const again = await SyncTarget.open({ resource: 'r0', device: await r.targetStorage.open('device', 'write'), storage: r.targetStorage });
    assert.equal(again.state, 'done');
    await again.whenDone();
    assert.deepEqual(again.progress().endPosition, endPosition);
  } finally {
    await r.close();
  }
});

void test('while paused no bytes move and the device does not change; resume finishes the sync', { timeout: testTimeoutMs }, async () => {
  const size = 32 * mib;
  const sourceImage = new Random(9).bytes(size);
  const r = await rig(sourceImage, Buffer.alloc(size));
  try {
    await r.connect();
    await waitFor('4 MiB copied', () => r.target.progress().doneBytes >= 4 * mib, 10_000, 2);
    await r.target.pause();
    assert.equal(r.target.state, 'paused');
    const image = r.targetStorage.image('device')!;
    const p = r.target.progress();
    const sourceSent = r.sessions[0]!.sentBytes;
    await new Promise((resolve) => setTimeout(resolve, 300));
    const q = r.target.progress();
    assert.equal(q.receivedBytes, p.receivedBytes, 'nothing received while paused');
    assert.equal(q.sentBytes, p.sentBytes, 'nothing sent while paused');
    assert.equal(r.sessions[0]!.sentBytes, sourceSent, 'the source sent nothing');
    assert.ok(r.targetStorage.image('device')!.equals(image), 'the device did not change');
    assert.ok(q.doneBytes < size, 'not done yet');
    assert.equal((await loadSyncState(r.targetStorage))?.nextBytes, q.doneBytes, 'pause persisted the progress');
    r.target.resume();
    assert.equal(r.target.state, 'syncing');
    await r.target.whenDone();
    assert.ok(r.targetStorage.image('device')!.equals(sourceImage));
  } finally {
    await r.close();
  }
});

void test('devices of different sizes are refused and the target fails with SYNC_SIZE_MISMATCH', { timeout: testTimeoutMs }, async () => {
  const r = await rig(Buffer.alloc(2 * mib, 1), Buffer.alloc(2 * mib));
  const small = await SyncTarget.open({ resource: 'r0', device: await r.targetStorage.open('device', 'write'), storage: r.targetStorage, sizeBytes: mib, stateFileName: 'other' });
  try {
    small.attach(await r.host.dial());
    await assert.rejects(small.whenDone(), { code: 'SYNC_SIZE_MISMATCH' });
    assert.equal(small.state, 'failed');
    assert.ok(r.targetStorage.image('device')!.equals(Buffer.alloc(2 * mib)), 'nothing written');
  } finally {
    await small.close();
    await r.close();
  }
});

void test('a source that does not serve the resource refuses, and the target waits to reconnect', { timeout: testTimeoutMs }, async () => {
  const r = await rig(Buffer.alloc(mib, 1), Buffer.alloc(mib));
  const other = await SyncTarget.open({ resource: 'r9', device: await r.targetStorage.open('device', 'write'), storage: r.targetStorage });
  try {
    other.attach(await r.host.dial());
    await waitFor('refused', () => other.progress().lastError !== undefined, 10_000, 2);
    assert.equal(other.progress().lastError?.code, 'SYNC_REFUSED');
    assert.equal(other.state, 'source-unreachable');
  } finally {
    await other.close();
    await r.close();
  }
});
