import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../../src/core/random.js';
import { type Frame } from '../../src/net/frame.js';
import { PeerServer, dialPeer } from '../../src/net/peer-endpoint.js';
import type { PeerLink } from '../../src/net/peer-link.js';

const secret = Buffer.from('a cluster secret of 32 bytes....');
const dataType = 0x29;
let closing = false;

interface Received {
  readonly frames: Frame[];
  done: Promise<void>;
}

/** Collects `count` frames of a link (keeping them; the buffers of some are released as they come). */
function collect(link: PeerLink, count: number, releaseEvery: number): Received {
  const frames: Frame[] = [];
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  link.attach({
    onFrame: (frame) => {
      frames.push(frame);
      if (frames.length % releaseEvery === 0) frame.release?.();
      if (frames.length === count) finish();
    },
    onClose: (error) => {
      if (!closing) assert.fail(`link closed: ${error?.message ?? 'by the peer'}`);
    },
  });
  return { frames, done };
}

async function sendAll(link: PeerLink, payloads: readonly Buffer[]): Promise<void> {
  for (const p of payloads) {
    await link.writable();
    assert.ok(link.send(dataType, p), 'sent');
  }
}

void test('several plain TCP links read through the one shared buffer, and every frame kept stays intact', async () => {
  const accepted: PeerLink[] = [];
  let linked: () => void = () => undefined;
  const bothLinked = new Promise<void>((resolve) => (linked = resolve));
  const server = await PeerServer.listen({
    listenHost: '127.0.0.1',
    port: 0,
    auth: { secret, clusterId: 'prod', localHost: 'b' },
    onLink: (link) => {
      accepted.push(link);
      if (accepted.length === 2) linked();
    },
  });
  try {
    const dial = (channel: 'fetch' | 'sync'): Promise<PeerLink> => dialPeer({ host: '127.0.0.1', port: server.port, auth: { secret, clusterId: 'prod', localHost: 'a' }, peerHost: 'b', channel });
    const dialled = [await dial('fetch'), await dial('sync')];
    await bothLinked;
    for (const link of [...dialled, ...accepted]) assert.ok(link.sharedReadBuffer, 'plain TCP, dialled and accepted: reads go into the shared buffer');
    const rnd = new Random(21);
    const sizes = [0, 1, 19, 20, 21, 4095, 65_536, 262_144, 262_145, 1024 * 1024, 1024 * 1024 + 40];
    const plan = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => rnd.bytes(i < sizes.length ? sizes[i]! : rnd.int(1024 * 1024 + 41)));
    // Four streams at once, both directions on both links, so that reads of different sockets alternate in the buffer.
    const streams = [
      { from: accepted[0]!, to: dialled[0]!, payloads: plan(24) },
      { from: accepted[1]!, to: dialled[1]!, payloads: plan(24) },
      { from: dialled[0]!, to: accepted[0]!, payloads: plan(16) },
      { from: dialled[1]!, to: accepted[1]!, payloads: plan(16) },
    ];
    // Links carry one direction's frames per attach: pair the receivers by link.
    const receivers = new Map<PeerLink, Received>();
    for (const s of streams) receivers.set(s.to, collect(s.to, s.payloads.length, 3));
    await Promise.all(streams.map((s) => sendAll(s.from, s.payloads)));
    await Promise.all([...receivers.values()].map((r) => r.done));
    for (const s of streams) {
      const got = receivers.get(s.to)!.frames;
      assert.equal(got.length, s.payloads.length);
      got.forEach((frame, i) => {
        if ((i + 1) % 3 === 0) return; // released: its buffer may hold a later frame now
        assert.ok(frame.payload.equals(s.payloads[i]!), `frame ${i} of ${s.payloads[i]!.length} bytes is intact after every later read`);
      });
    }
    closing = true;
    for (const link of [...dialled, ...accepted]) link.close();
  } finally {
    await server.close();
  }
});
