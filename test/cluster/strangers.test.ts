/**
 * Only members talk. A join with a wrong secret, a join under a name already taken,
 * garbage, a bad checksum, an oversized frame, another cluster id and a host claiming
 * another host's name are refused before anything reaches the metadata store, logged
 * with the peer's address, and the daemon carries on. A corrupt metadata file stops
 * marsd at start, naming the file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { encodeFrame, frameHeaderBytes, FrameType, dialPeer } from '../../src/net/index.js';
import { encodeHello } from '../../src/net/handshake.js';
import { readSecretFile } from '../../src/daemon/identity.js';
import { adm } from '../support/adm.js';
import { marsdPath, run, tempDir, removeDir, waitFor } from '../support/processes.js';
import { stderrLines } from '../support/daemon-helpers.js';
import { cleanup, clusterRoot, createCluster, joinCluster, metaFile, must, newHost, start, viewHosts, waitHosts, type TestHost } from '../support/cluster-helpers.js';

const strangerIp = '127.0.0.9';

/** Connects from the stranger's address, writes `bytes`, and resolves once the member closes the connection. */
function sendRaw(to: TestHost, bytes: Buffer): Promise<void> {
  const [host, port] = to.listen.split(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: host!, port: Number(port), localAddress: strangerIp });
    const timer = setTimeout(() => reject(new Error('the member kept a stranger connected')), 15_000);
    socket.on('connect', () => socket.write(bytes));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function refusalsFrom(host: TestHost, code: string): Record<string, unknown>[] {
  return stderrLines(host.daemon!).filter((l) => l['code'] === code && String(l['peer']).startsWith(`${strangerIp}:`));
}

void describe('strangers are refused', { timeout: 120_000 }, () => {
  let root = '';
  let h1: TestHost;
  let h2: TestHost;

  before(async () => {
    root = await clusterRoot('mars-strangers');
    h1 = await newHost(root, 'h1', '127.0.0.1');
    h2 = await newHost(root, 'h2', '127.0.0.2');
    await createCluster(h1);
    await start(h1);
    assert.equal((await joinCluster(h2, h1)).code, 0);
    await start(h2);
    await waitHosts(h1, { h1: 'alive', h2: 'alive' });
  });

  after(async () => {
    await cleanup(root, [h1, h2]);
  });

  void test('join-cluster with a wrong secret exits 1 with the reason and leaves no trace', async () => {
    const h3 = await newHost(root, 'h3', '127.0.0.3');
    const wrong = join(root, 'wrong.secret');
    await writeFile(wrong, `${'ab'.repeat(32)}\n`);
    const before = await readFile(join(h1.dir, 'meta', 'cluster.json'), 'utf8');
    const r = await adm(h3.dir, 'join-cluster', h1.listen, '--host', 'h3', '--listen', h3.listen, '--secret-file', wrong);
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim(), /^marsadm: join refused: .*wrong\.secret does not hold the secret of the cluster at 127\.0\.0\.1:\d+/);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    await assert.rejects(readFile(join(h3.dir, 'host.json')), /ENOENT/, 'nothing written to DIR');
    assert.deepEqual((await viewHosts(h1)).map((l) => l.name), ['h1', 'h2']);
    assert.equal(await readFile(join(h1.dir, 'meta', 'cluster.json'), 'utf8'), before, 'nothing stored on the member');
    // The name as a key or a value, not as two letters that a base64 key or signature may hold.
    assert.doesNotMatch(JSON.stringify(await metaFile(h1, 'cluster.json')), /cluster\/host\/h3"|"h3"/);
  });

  void test('join-cluster under a name already in the cluster is refused', async () => {
    const other = await newHost(root, 'other', '127.0.0.3');
    const r = await adm(other.dir, 'join-cluster', h1.listen, '--host', 'h2', '--listen', other.listen, '--secret-file', join(h1.dir, 'cluster.secret'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already has a host named h2/);
  });

  void test('garbage, a bad checksum and an oversized frame are dropped and logged once with the address', async () => {
    for (let i = 0; i < 3; i++) await sendRaw(h1, Buffer.from('GET / HTTP/1.1\r\nHost: mars\r\n\r\n'));
    const hello = encodeHello({ channel: 'meta', nonce: Buffer.alloc(32, 7), clusterId: 'x', from: 'evil', to: 'h1' });
    const flipped = encodeFrame(FrameType.helloInitiator, hello);
    flipped[flipped.length - 1]! ^= 0x01;
    await sendRaw(h2, flipped);
    const header = Buffer.alloc(frameHeaderBytes);
    header.write('MARS', 0, 'ascii');
    header.writeUInt8(1, 4);
    header.writeUInt8(FrameType.helloInitiator, 5);
    header.writeUInt32LE(64 * 1024 * 1024, 8);
    header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
    await sendRaw(h1, header);
    await waitFor('the refusals to be logged', () => refusalsFrom(h1, 'FRAME_TOO_LARGE').length === 1 && refusalsFrom(h2, 'FRAME_CORRUPT').length === 1, 5_000);
    assert.equal(refusalsFrom(h1, 'FRAME_CORRUPT').length, 1, 'three garbage connections from one address: one line');
  });

  void test('another cluster id and a host claiming another host name are refused; the daemon carries on', async () => {
    const secret = await readSecretFile(join(h1.dir, 'cluster.secret'));
    const clusterId = (JSON.parse(await readFile(join(h1.dir, 'host.json'), 'utf8')) as { clusterId: string }).clusterId;
    const [host, port] = h1.listen.split(':');
    const dial = (localHost: string, id: string): Promise<unknown> =>
      dialPeer({ host: host!, port: Number(port), localAddress: strangerIp, auth: { secret, clusterId: id, localHost }, peerHost: 'h1', channel: 'meta' });
    await assert.rejects(dial('stranger', 'another-cluster'), (err: { code?: string }) => err.code === 'CLUSTER_MISMATCH');
    await assert.rejects(dial('h2', clusterId), (err: { code?: string }) => err.code === 'HOST_MISMATCH');
    await waitFor('the refusals to be logged', () => refusalsFrom(h1, 'CLUSTER_MISMATCH').length === 1 && refusalsFrom(h1, 'HOST_MISMATCH').length === 1, 5_000);
    assert.deepEqual((await viewHosts(h1)).map((l) => `${l.name} ${l.state}`), ['h1 alive', 'h2 alive']);
    assert.equal(JSON.stringify(await metaFile(h1, 'cluster.json')).includes('stranger'), false);
    await must(adm(h2.dir, 'wait-cluster', '--timeout', '10'), 'wait-cluster');
  });
});

void test('marsd refuses to start on a corrupt metadata file and names it', { timeout: 60_000 }, async () => {
  const root = await tempDir('mars-meta-corrupt');
  const h1 = await newHost(root, 'h1', '127.0.0.1');
  try {
    await createCluster(h1);
    await start(h1);
    assert.equal(await h1.daemon!.stop(), 0);
    h1.daemon = undefined;
    const file = join(h1.dir, 'meta', 'cluster.json');
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x04;
    await writeFile(file, bytes);
    const r = await run(process.execPath, [marsdPath, '--dir', h1.dir, '--nbd', '127.0.0.1:0'], { timeoutMs: 20_000 });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(r.stderr.startsWith(`marsd: metadata file ${file} is corrupt`), r.stderr);
  } finally {
    await removeDir(root);
  }
});
