import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import type { Frame, PeerLink } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { decodeSyncMessage, encodeSyncMessage, SyncFrameType, SyncSourceSession, SyncTarget, syncLimits, type SyncFailure, type SyncMessage } from '../../src/sync/index.js';
import { deviceWith, mib, SourceHost, sourceResource, startPosition } from './helpers.js';
import { waitFor } from '../support/wait.js';

const testTimeoutMs = 20_000;
const size = 4 * mib;
const rangeBytes = syncLimits.rangeBytesMax;

/** The test's end of a link: frames queued, closing observed. */
class Peer {
  private readonly frames: Frame[] = [];
  private readonly waiters: (() => void)[] = [];
  closedWith: { error: MarsError | undefined } | undefined;

  constructor(readonly link: PeerLink) {
    link.attach({
      onFrame: (frame) => {
        this.frames.push(frame);
        this.wake();
      },
      onClose: (error) => {
        this.closedWith = { error };
        this.wake();
      },
    });
  }

  async next(): Promise<SyncMessage> {
    while (this.frames.length === 0) {
      if (this.closedWith !== undefined) throw new Error('closed while waiting for a frame');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return decodeSyncMessage(this.frames.shift()!);
  }

  send(message: SyncMessage): void {
    const frame = encodeSyncMessage(message);
    assert.ok(this.link.send(frame.type, frame.payload));
  }

  sendRaw(type: number, payload: Buffer): void {
    assert.ok(this.link.send(type, payload));
  }

  async closed(): Promise<void> {
    await waitFor('the link closes', () => this.closedWith !== undefined, 10_000, 2);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

type Misbehaviour = (peer: Peer, asked: Extract<SyncMessage, { kind: 'digests' }>) => void;

/** A target syncing from a fake source that answers the first DIGESTS with `misbehave`. */
async function targetFacing(misbehave: Misbehaviour): Promise<{ error: SyncFailure | undefined; before: Buffer; after: Buffer; state: string }> {
  const storage = new MemStorage();
  const before = new Random(11).bytes(size);
  const device = await deviceWith(storage, 'device', before);
  let peer: Peer | undefined;
  const host = await SourceHost.listen((link) => (peer = new Peer(link)));
  const target = await SyncTarget.open({ resource: 'r0', device, storage, rangesInFlight: 1 });
  try {
    target.attach(await host.dial());
    await waitFor('the fake source has its link', () => peer !== undefined, 10_000, 2);
    const p = peer!;
    assert.equal((await p.next()).kind, 'start');
    p.send({ kind: 'accept', sizeBytes: size, digestSeed: 1n, startPosition });
    const asked = await p.next();
    assert.ok(asked.kind === 'digests' && asked.offsetBytes === 0);
    misbehave(p, asked);
    await p.closed();
    await waitFor('the target notices', () => target.state !== 'syncing', 10_000, 2);
    const state = target.state;
    await target.pause(); // settles the teardown
    return { error: target.progress().lastError, before, after: storage.image('device')!, state };
  } finally {
    await target.close();
    await host.close();
  }
}

const block = Buffer.alloc(syncLimits.blockBytes, 0xab);
const targetCases: [string, Misbehaviour][] = [
  ['blocks beyond the range being answered', (p) => p.send({ kind: 'blocks', offsetBytes: rangeBytes, data: block })],
  ['blocks past the end of the device', (p) => p.send({ kind: 'blocks', offsetBytes: size, data: block })],
  ['a zero run past the end of the device', (p) => p.send({ kind: 'zeroes', offsetBytes: size - 4096, lengthBytes: 8192 })],
  ['a run that overlaps the previous one', (p) => {
    p.send({ kind: 'blocks', offsetBytes: 0, data: Buffer.concat([block, block]) });
    p.send({ kind: 'blocks', offsetBytes: 4096, data: block });
  }],
  ['RANGE_DONE that disagrees with the runs sent', (p) => {
    p.send({ kind: 'blocks', offsetBytes: 0, data: Buffer.concat([block, block]) });
    p.send({ kind: 'range-done', offsetBytes: 0, blocks: 256, differingBlocks: 1 });
  }],
  ['RANGE_DONE for a range not asked for', (p) => p.send({ kind: 'range-done', offsetBytes: rangeBytes, blocks: 256, differingBlocks: 0 })],
  ['an unknown message type', (p) => p.sendRaw(0x3f, Buffer.alloc(8))],
  ['a message only a target sends', (p, asked) => p.send(asked)],
  ['a truncated BLOCKS message', (p) => p.sendRaw(SyncFrameType.blocks, Buffer.alloc(5))],
  ['a BLOCKS message at an unaligned offset', (p) => p.send({ kind: 'blocks', offsetBytes: 100, data: block })],
];

for (const [name, misbehave] of targetCases) {
  void test(`a target refuses ${name} from the source: SYNC_BAD_MESSAGE, link closed, nothing written`, { timeout: testTimeoutMs }, async () => {
    const r = await targetFacing(misbehave);
    assert.equal(r.error?.code, 'SYNC_BAD_MESSAGE');
    assert.ok(r.after.equals(r.before), 'the device is unchanged');
    assert.equal(r.state, 'source-unreachable', 'the daemon will reconnect');
  });
}

/** A real source facing a fake target that sends `frames` (after START and its ACCEPT if `start`). */
async function sourceFacing(start: boolean, send: (peer: Peer) => void): Promise<{ reply: SyncMessage | undefined; error: SyncFailure | undefined }> {
  const storage = new MemStorage();
  const device = await deviceWith(storage, 'device', new Random(12).bytes(size));
  let session: SyncSourceSession | undefined;
  let ended: { error: SyncFailure | undefined } | undefined;
  const host = await SourceHost.listen((link) => {
    session = SyncSourceSession.serve(link, { resolve: () => sourceResource(device, size), onEnd: (_s, error) => (ended = { error }) });
  });
  try {
    const peer = new Peer(await host.dial());
    if (start) {
      peer.send({ kind: 'start', resource: 'r0', sizeBytes: size, resumeFromBytes: 0 });
      assert.equal((await peer.next()).kind, 'accept');
    }
    send(peer);
    const reply = await peer.next().catch(() => undefined);
    await peer.closed();
    await waitFor('the session ends', () => ended !== undefined, 10_000, 2);
    assert.ok(session?.ended);
    return { reply, error: ended?.error };
  } finally {
    await host.close();
  }
}

function digestsPayload(offsetBytes: number, blocks: number, digestCount: number): Buffer {
  const payload = Buffer.alloc(12 + 8 * digestCount);
  payload.writeBigUInt64LE(BigInt(offsetBytes), 0);
  payload.writeUInt16LE(blocks, 8);
  return payload;
}

const sourceCases: [string, boolean, (p: Peer) => void][] = [
  ['DIGESTS with a wrong digest length', true, (p) => p.sendRaw(SyncFrameType.digests, digestsPayload(0, 4, 3))],
  ['DIGESTS for a range past the end', true, (p) => p.sendRaw(SyncFrameType.digests, digestsPayload(size, 1, 1))],
  ['DIGESTS whose blocks run past the end', true, (p) => p.sendRaw(SyncFrameType.digests, digestsPayload(size - 4096, 2, 2))],
  ['DIGESTS for more than a range', true, (p) => p.sendRaw(SyncFrameType.digests, digestsPayload(0, 257, 257))],
  ['DIGESTS before START', false, (p) => p.sendRaw(SyncFrameType.digests, digestsPayload(0, 1, 1))],
  ['an unknown message type', true, (p) => p.sendRaw(0x3f, Buffer.alloc(0))],
  ['a fetch frame on the sync channel', true, (p) => p.sendRaw(0x20, Buffer.alloc(4))],
  ['START twice', true, (p) => p.send({ kind: 'start', resource: 'r0', sizeBytes: size, resumeFromBytes: 0 })],
  ['FINISH before every range was answered', false, (p) => p.send({ kind: 'finish' })],
  ['START of another protocol version', false, (p) => {
    const frame = encodeSyncMessage({ kind: 'start', resource: 'r0', sizeBytes: size, resumeFromBytes: 0 });
    frame.payload.writeUInt8(2, 0);
    p.sendRaw(frame.type, frame.payload);
  }],
];

for (const [name, start, send] of sourceCases) {
  void test(`a source answers ${name} with ERROR and closes the link`, { timeout: testTimeoutMs }, async () => {
    const r = await sourceFacing(start, send);
    assert.deepEqual(r.reply?.kind === 'error' ? r.reply.reason : r.reply, 'badMessage');
    assert.equal(r.error?.code, 'SYNC_BAD_MESSAGE');
  });
}

void test('a source refuses a resource it does not serve, and devices of another size', { timeout: testTimeoutMs }, async () => {
  const storage = new MemStorage();
  const device = await deviceWith(storage, 'device', Buffer.alloc(size));
  const host = await SourceHost.listen((link) => SyncSourceSession.serve(link, { resolve: (name) => (name === 'r0' ? sourceResource(device, size) : undefined) }));
  try {
    const unknown = new Peer(await host.dial());
    unknown.send({ kind: 'start', resource: 'r1', sizeBytes: size, resumeFromBytes: 0 });
    assert.deepEqual(await unknown.next(), { kind: 'error', reason: 'unknownResource', text: 'resource r1 is not served here' });
    await unknown.closed();
    const smaller = new Peer(await host.dial());
    smaller.send({ kind: 'start', resource: 'r0', sizeBytes: size - 4096, resumeFromBytes: 0 });
    const reply = await smaller.next();
    assert.ok(reply.kind === 'error' && reply.reason === 'sizeMismatch');
    await smaller.closed();
  } finally {
    await host.close();
  }
});

void test('a source that cannot give a start position now answers busy', { timeout: testTimeoutMs }, async () => {
  const storage = new MemStorage();
  const device = await deviceWith(storage, 'device', Buffer.alloc(size));
  const notReady = { ...sourceResource(device, size), startPosition: (): never => { throw new Error('recovery is still running'); } };
  const host = await SourceHost.listen((link) => SyncSourceSession.serve(link, { resolve: () => notReady }));
  try {
    const peer = new Peer(await host.dial());
    peer.send({ kind: 'start', resource: 'r0', sizeBytes: size, resumeFromBytes: 0 });
    const reply = await peer.next();
    assert.ok(reply.kind === 'error' && reply.reason === 'busy' && reply.text.includes('recovery is still running'));
    await peer.closed();
  } finally {
    await host.close();
  }
});
