/**
 * The link rule of marsd's PeerManager: one metadata link per pair of hosts, the one
 * dialled by the smaller name, however the hosts learn of each other; and a link that
 * drops comes back by itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../src/core/clock.js';
import { Random } from '../../src/core/random.js';
import { systemTimers } from '../../src/net/index.js';
import { PeerManager } from '../../src/daemon/peers.js';
import { testSigningKey } from '../../src/meta/signing.js';
import { freePort, waitFor } from '../support/processes.js';

const identity = { current: { clusterId: 'c1', secret: Buffer.from('a secret of thirty-two bytes....') }, former: undefined };
const quiet = { warn: () => undefined, error: () => undefined, info: () => undefined };

async function manager(name: string, ip: string, port?: number): Promise<{ name: string; listen: string; peers: PeerManager; ups: string[] }> {
  const listen = `${ip}:${port ?? (await freePort(ip))}`;
  const ups: string[] = [];
  const peers = new PeerManager({
    self: name,
    listen,
    identity: () => identity,
    signingKey: testSigningKey(name),
    peerKey: (host) => testSigningKey(host).publicKeyText,
    tls: undefined,
    clock: systemClock,
    timers: systemTimers,
    random: new Random(name.length),
    log: quiet,
    acceptPeer: () => true,
    onFrame: () => undefined,
    onPeerUp: (peer) => ups.push(peer),
    onJoinLink: (link) => link.close(),
    onBulkLink: (link) => link.close(),
  });
  await peers.listen();
  return { name, listen, peers, ups };
}

void test('every pair of hosts settles on one link, whoever learns of whom first, and relinks after a drop', { timeout: 30_000 }, async () => {
  const hosts = [await manager('a', '127.0.0.1'), await manager('b', '127.0.0.2'), await manager('c', '127.0.0.3')];
  const [a, b, c] = hosts as [(typeof hosts)[0], (typeof hosts)[0], (typeof hosts)[0]];
  try {
    // c knows everyone (like a host that just joined); a and b know each other only.
    for (const other of [a, b]) c.peers.setHost(other.name, other.listen);
    a.peers.setHost('b', b.listen);
    b.peers.setHost('a', a.listen);
    await waitFor('c to reach a and b', () => a.peers.alive('c') && b.peers.alive('c'), 10_000);
    // Now a and b learn of c (its record arrived): a dials c too; both end up with one link.
    a.peers.setHost('c', c.listen);
    b.peers.setHost('c', c.listen);
    const settled = (): boolean => hosts.every((h) => hosts.every((o) => o === h || (h.peers.alive(o.name) && h.peers.openLinks(o.name) === 1)));
    await waitFor('one link per pair', settled, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(settled(), 'and it stays so');

    await c.peers.close(); // c goes away and comes back on the same address, knowing nobody
    await waitFor('a and b to notice', () => !a.peers.alive('c') && !b.peers.alive('c'), 10_000);
    const back = await manager('c', '127.0.0.3', Number(c.listen.split(':')[1]));
    hosts.push(back);
    await waitFor('a to dial the returning c by itself', () => a.peers.alive('c') && back.peers.alive('a'), 10_000);
  } finally {
    for (const h of hosts) await h.peers.close();
  }
});
