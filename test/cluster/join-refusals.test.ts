/**
 * join-cluster says what went wrong: a secret file too short to be a cluster secret is
 * refused before any connection, and a member's port that is busy is reported as busy,
 * never as a secret that does not match.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { MarsError } from '../../src/core/errors.js';
import { joinCluster } from '../../src/daemon/join-cluster.js';
import { PeerServer } from '../../src/net/peer-endpoint.js';
import { pendingHandshakesMax } from '../../src/net/limits.js';
import { removeDir, tempDir } from '../support/processes.js';

const joinerIp = '127.0.0.3';

void test('join-cluster refuses a secret file shorter than 32 bytes with one line, before connecting', async () => {
  const root = await tempDir('mars-join-short');
  try {
    const file = join(root, 'short.secret');
    await writeFile(file, `${'ab'.repeat(16)}\n`);
    const error = await joinCluster({ dir: join(root, 'dir'), peer: '127.0.0.1:1', host: 'new', listen: `${joinerIp}:7777`, secretFile: file, tls: undefined }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof MarsError);
    assert.equal(error.code, 'EINVAL');
    assert.equal(error.message, `${file} holds a secret of 16 bytes; a cluster secret has at least 32 (create-cluster writes 32 random bytes)`);
  } finally {
    await removeDir(root);
  }
});

void test('join-cluster to a member whose handshake places are taken says it is busy, not that the secret is wrong', { timeout: 30_000 }, async () => {
  const root = await tempDir('mars-join-busy');
  const secret = Buffer.alloc(32, 7);
  const server = await PeerServer.listen({ listenHost: '127.0.0.1', port: 0, auth: { secret, clusterId: 'prod', localHost: 'b' }, onLink: (link) => link.close() });
  const idle: Socket[] = [];
  try {
    // As many idle connections as there are places at all, from the joiner's own address.
    await Promise.all(
      Array.from({ length: pendingHandshakesMax }, () => new Promise<void>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: server.port, localAddress: joinerIp });
        idle.push(socket);
        socket.on('error', () => resolve());
        socket.on('connect', () => resolve());
      })),
    );
    const file = join(root, 'cluster.secret');
    await writeFile(file, `${secret.toString('hex')}\n`);
    const error = await joinCluster({ dir: join(root, 'dir'), peer: `127.0.0.1:${server.port}`, host: 'new', listen: `${joinerIp}:7777`, secretFile: file, tls: undefined }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof MarsError, String(error));
    assert.equal(error.code, 'PEER_BUSY', error.message);
    assert.doesNotMatch(error.message, /secret/);
    assert.match(error.message, /busy/);
  } finally {
    for (const socket of idle) socket.destroy();
    await server.close();
    await removeDir(root);
  }
});
