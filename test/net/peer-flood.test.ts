/**
 * Idle connections to the peer port, from one address or from many, do not lock members
 * or a joining host out: per-address limits, a short handshake deadline and places kept
 * for known hosts' addresses. Refusals are logged once per address and reason, with a
 * count of what was left out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PeerServer, dialPeer, joinPeer, type TlsOptions } from '../../src/net/peer-endpoint.js';
import type { PeerLink } from '../../src/net/peer-link.js';
import type { PeerLog } from '../../src/net/refusal-log.js';
import { pendingHandshakesPerAddressMax } from '../../src/net/limits.js';

const secret = Buffer.from('a cluster secret of 32 bytes....');
const memberIp = '127.0.0.2';
const joinerIp = '127.0.0.3';
const idleConnections = 200;

function selfSignedCert(): TlsOptions | string {
  const dir = mkdtempSync(join(tmpdir(), 'mars-flood-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=mars-test'], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } catch (err) {
    return `openssl is not available: ${(err as Error).message}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Opens `count` connections that never send a byte of the handshake, from the given
 * addresses in turn (with `tls`, after finishing the TLS handshake where the server lets
 * them); resolves once all are connected or refused.
 */
async function idle(port: number, count: number, addresses: readonly string[], tls: boolean): Promise<Socket[]> {
  const sockets: Socket[] = [];
  await Promise.all(
    Array.from({ length: count }, (_, i) => new Promise<void>((resolve) => {
      const localAddress = addresses[i % addresses.length]!;
      const from = { localAddress }; // tls.connect passes it on to the TCP socket
      const socket = tls ? tlsConnect({ host: '127.0.0.1', port, ...from, rejectUnauthorized: false }) : connect({ host: '127.0.0.1', port, localAddress });
      sockets.push(socket);
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.on(tls ? 'secureConnect' : 'connect', () => resolve());
    })),
  );
  return sockets;
}

async function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function flood(addresses: readonly string[], tls: TlsOptions | undefined, alsoJoin: boolean): Promise<{ lines: { fields: Record<string, unknown>; message: string }[] }> {
  const lines: { fields: Record<string, unknown>; message: string }[] = [];
  const log: PeerLog = { warn: (fields, message) => lines.push({ fields, message }) };
  const links: PeerLink[] = [];
  const server = await PeerServer.listen({
    listenHost: '127.0.0.1',
    port: 0,
    ...(tls === undefined ? {} : { tls }),
    auth: { secret, clusterId: 'prod', localHost: 'b' },
    log,
    isKnownAddress: (ip) => ip === memberIp,
    onLink: (link) => links.push(link),
  });
  const sockets = await idle(server.port, idleConnections, addresses, tls !== undefined);
  try {
    const tlsOption = tls === undefined ? {} : { tls };
    const member = await within('a member reconnects', 3_000, dialPeer({ host: '127.0.0.1', port: server.port, localAddress: memberIp, auth: { secret, clusterId: 'prod', localHost: 'a' }, peerHost: 'b', channel: 'meta', ...tlsOption }));
    assert.equal(member.peerHost, 'b');
    member.close();
    if (alsoJoin) {
      const joiner = await within('a new host joins', 3_000, joinPeer({ host: '127.0.0.1', port: server.port, localAddress: joinerIp, secret, localHost: 'new', ...tlsOption }));
      assert.equal(joiner.info.clusterId, 'prod');
      joiner.close();
    }
  } finally {
    for (const socket of sockets) socket.destroy();
    for (const link of links) link.close();
    await server.close();
  }
  return { lines };
}

void test(`${idleConnections} idle connections from one address stop neither a member's reconnect nor a join; the refusals make one log line`, { timeout: 30_000 }, async () => {
  const { lines } = await flood(['127.0.0.9'], undefined, true);
  const busy = lines.filter((l) => l.fields['code'] === 'PEER_BUSY');
  assert.equal(busy.length, 1, JSON.stringify(lines.slice(0, 5)));
  assert.match(busy[0]!.message, new RegExp(`${pendingHandshakesPerAddressMax} handshakes from 127\\.0\\.0\\.9`));
});

void test(`${idleConnections} idle connections from fifty addresses do not stop a member's reconnect`, { timeout: 30_000 }, async () => {
  const addresses = Array.from({ length: 50 }, (_, i) => `127.0.1.${i + 1}`);
  const { lines } = await flood(addresses, undefined, false);
  assert.ok(lines.some((l) => l.fields['code'] === 'PEER_BUSY' && /kept for known hosts/.test(l.message)));
});

const tlsOptions = selfSignedCert();

void test(`with TLS, ${idleConnections} idle connections (TLS done, no handshake after it) stop neither a member nor a join`, { timeout: 30_000, skip: typeof tlsOptions === 'string' ? tlsOptions : false }, async () => {
  await flood(['127.0.0.9'], tlsOptions as TlsOptions, true);
  await flood(Array.from({ length: 50 }, (_, i) => `127.0.1.${i + 1}`), tlsOptions as TlsOptions, false);
});
