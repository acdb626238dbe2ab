import { test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../src/core/clock.js';
import { Random } from '../../src/core/random.js';
import { testSigningKey } from '../../src/meta/signing.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { MetaNode, MetaStore, decodeMetaMessage, encodeMetaMessage, hostKey, hostRecordValue, primaryKey, type Ready } from '../../src/meta/index.js';
import { FrameType, PeerServer, dialPeer, type PeerLink } from '../../src/net/index.js';
import { waitFor } from '../support/wait.js';

const secret = Buffer.from('a cluster secret of 32 bytes....');

/** The shape of the daemon's wiring: frames to the core, its Ready carried out in order. */
class Host {
  readonly store = new MetaStore(new MemStorage());
  readonly links = new Map<string, PeerLink>();
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly node: MetaNode) {}

  /** Persist, then send: one Ready after another. */
  carryOut(ready: Ready): Promise<void> {
    this.chain = this.chain.then(async () => {
      await this.store.persist(this.node, ready.persist);
      for (const { to, message } of ready.send) this.links.get(to)?.send(FrameType.meta, encodeMetaMessage(message));
    });
    return this.chain;
  }

  adopt(link: PeerLink): void {
    this.links.set(link.peerHost, link);
    link.attach({
      onFrame: (frame) => void this.carryOut(this.node.receive(link.peerHost, decodeMetaMessage(frame.payload))),
      onClose: () => this.links.delete(link.peerHost),
    });
    void this.carryOut(this.node.peerConnected(link.peerHost));
  }
}

void test('two metadata cores converge over an authenticated TCP link', async () => {
  const a = new Host(new MetaNode({ host: 'a', clock: systemClock, random: new Random(1), signingKey: testSigningKey('a') }));
  const b = new Host(new MetaNode({ host: 'b', clock: systemClock, random: new Random(2), signingKey: testSigningKey('b') }));
  await a.carryOut(a.node.set(hostKey('a'), hostRecordValue({ address: '127.0.0.1:0', resources: ['r1'] })));
  await b.carryOut(b.node.set(hostKey('b'), hostRecordValue({ address: '127.0.0.1:0', resources: ['r1'] })));
  const server = await PeerServer.listen({ listenHost: '127.0.0.1', port: 0, auth: { secret, clusterId: 'prod', localHost: 'b' }, onLink: (link) => b.adopt(link) });
  try {
    a.adopt(await dialPeer({ host: '127.0.0.1', port: server.port, auth: { secret, clusterId: 'prod', localHost: 'a' }, peerHost: 'b', channel: 'meta' }));
    await waitFor('both hosts to know both', () => a.node.hosts().length === 2 && b.node.hosts().length === 2, 2_000, 10);
    await a.carryOut(a.node.set(primaryKey('r1'), 'a'));
    await waitFor('b to learn the primary', () => b.node.get(primaryKey('r1')) === 'a', 2_000, 10);
    const { snapshot } = await b.store.load();
    assert.equal(snapshot.get('resource/r1')?.get(primaryKey('r1'))?.value, 'a', 'persisted on b');
  } finally {
    for (const link of [...a.links.values(), ...b.links.values()]) link.close();
    await server.close();
  }
});
