import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { MarsError } from '../../src/core/errors.js';
import { encodeFrame, FrameType, frameHeaderBytes, type Frame } from '../../src/net/frame.js';
import { encodeHello } from '../../src/net/handshake.js';
import { PeerServer, dialPeer, type DialOptions, type PeerServerOptions, type TlsOptions } from '../../src/net/peer-endpoint.js';
import type { PeerLink } from '../../src/net/peer-link.js';
import type { PeerLog } from '../../src/net/refusal-log.js';

const secret = Buffer.from('a cluster secret of 32 bytes....');

interface Logged {
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

class CaptureLog implements PeerLog {
  readonly lines: Logged[] = [];
  private waiters: (() => void)[] = [];
  warn(fields: Record<string, unknown>, message: string): void {
    this.lines.push({ fields, message });
    for (const w of this.waiters.splice(0)) w();
  }
  async next(): Promise<Logged> {
    const count = this.lines.length;
    while (this.lines.length === count) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.lines[count]!;
  }
}

interface Started {
  readonly server: PeerServer;
  readonly links: PeerLink[];
  readonly log: CaptureLog;
  readonly linked: Promise<PeerLink>;
}

async function startServer(over: Partial<PeerServerOptions> = {}): Promise<Started> {
  const links: PeerLink[] = [];
  const log = new CaptureLog();
  let resolveLinked: (link: PeerLink) => void = () => undefined;
  const linked = new Promise<PeerLink>((resolve) => (resolveLinked = resolve));
  const server = await PeerServer.listen({
    listenHost: '127.0.0.1',
    port: 0,
    auth: { secret, clusterId: 'prod', localHost: 'b' },
    log,
    onLink: (link) => {
      links.push(link);
      resolveLinked(link);
    },
    ...over,
  });
  return { server, links, log, linked };
}

function dialOptions(port: number, over: Partial<DialOptions> = {}): DialOptions {
  return { host: '127.0.0.1', port, auth: { secret, clusterId: 'prod', localHost: 'a' }, peerHost: 'b', channel: 'meta', ...over };
}

function nextFrame(link: PeerLink, frames: Frame[]): Promise<Frame> {
  return new Promise((resolve) => {
    if (frames.length > 0) resolve(frames.shift()!);
    link.attach({ onFrame: (f) => resolve(f), onClose: () => undefined });
  });
}

async function exchange(client: PeerLink, server: PeerLink): Promise<void> {
  const fromClient = nextFrame(server, []);
  const fromServer = nextFrame(client, []);
  assert.ok(client.send(FrameType.meta, Buffer.from('{"hello":"from a"}')));
  assert.ok(server.send(FrameType.meta, Buffer.from('{"hello":"from b"}')));
  assert.equal((await fromClient).payload.toString(), '{"hello":"from a"}');
  assert.equal((await fromServer).payload.toString(), '{"hello":"from b"}');
}

void test('two hosts with the right secret authenticate over TCP and exchange frames', async () => {
  const s = await startServer();
  try {
    const client = await dialPeer(dialOptions(s.server.port));
    const server = await s.linked;
    assert.equal(client.peerHost, 'b');
    assert.equal(server.peerHost, 'a');
    assert.equal(server.info.channel, 'meta');
    assert.match(server.info.remoteAddress, /^127\.0\.0\.1:\d+$/);
    await exchange(client, server);
    client.close();
    server.close();
  } finally {
    await s.server.close();
  }
});

async function refusedDial(over: Partial<DialOptions>, serverOver: Partial<PeerServerOptions> = {}): Promise<{ clientCode: string; clientMessage: string; logged: Logged; links: number }> {
  const s = await startServer(serverOver);
  try {
    const logged = s.log.next();
    const error = await dialPeer(dialOptions(s.server.port, over)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof MarsError, 'the dial is refused');
    return { clientCode: error.code, clientMessage: error.message, logged: await logged, links: s.links.length };
  } finally {
    await s.server.close();
  }
}

void test('a wrong secret is refused on both ends and logged once with the peer\'s address, in one line that says the secret does not match and blames neither side', async () => {
  const wrong = Buffer.from('not the cluster secret at all!!');
  const r = await refusedDial({ auth: { secret: wrong, clusterId: 'prod', localHost: 'a' } });
  assert.equal(r.clientCode, 'AUTH_FAILED');
  assert.equal(r.clientMessage, 'refused by the peer: the cluster secret does not match (the peer and this host hold different secrets)');
  assert.equal(r.logged.message, 'peer refused: the cluster secret does not match: a and this host hold different secrets (the proofs differ)');
  for (const text of [r.clientMessage, r.logged.message]) {
    for (const s of [secret, wrong]) for (const form of [s.toString('hex'), s.toString('base64'), s.toString('utf8')]) assert.ok(!text.includes(form), 'no secret in the line');
  }
  assert.equal(r.logged.fields['code'], 'AUTH_FAILED');
  assert.match(String(r.logged.fields['peer']), /^127\.0\.0\.1:\d+$/);
  assert.equal(r.links, 0);
});

void test('another cluster id, and a host that is not the one dialled, are refused on both ends', async () => {
  const cluster = await refusedDial({ auth: { secret, clusterId: 'staging', localHost: 'a' } });
  assert.equal(cluster.clientCode, 'CLUSTER_MISMATCH');
  assert.equal(cluster.logged.fields['code'], 'CLUSTER_MISMATCH');
  const host = await refusedDial({ peerHost: 'c' });
  assert.equal(host.clientCode, 'HOST_MISMATCH');
  assert.equal(host.logged.fields['code'], 'HOST_MISMATCH');
  const unknown = await refusedDial({}, { acceptPeer: (h) => h !== 'a' });
  assert.equal(unknown.clientCode, 'HOST_MISMATCH');
});

async function rawRefusal(bytes: Buffer): Promise<{ logged: Logged; links: number; closed: boolean }> {
  const s = await startServer();
  try {
    const logged = s.log.next();
    const socket: Socket = connect({ host: '127.0.0.1', port: s.server.port });
    const closed = new Promise<boolean>((resolve) => socket.on('close', () => resolve(true)));
    socket.on('error', () => undefined);
    socket.write(bytes);
    return { logged: await logged, links: s.links.length, closed: await closed };
  } finally {
    await s.server.close();
  }
}

void test('garbage on the peer port is dropped and logged with the address', async () => {
  const r = await rawRefusal(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  assert.equal(r.logged.fields['code'], 'FRAME_CORRUPT');
  assert.match(String(r.logged.fields['peer']), /^127\.0\.0\.1:\d+$/);
  assert.equal(r.closed, true);
  assert.equal(r.links, 0);
});

void test('an oversized frame before authentication is dropped without reading its payload', async () => {
  const header = Buffer.alloc(frameHeaderBytes);
  header.write('MARS', 0, 'ascii');
  header.writeUInt8(1, 4);
  header.writeUInt8(FrameType.helloInitiator, 5);
  header.writeUInt32LE(64 * 1024 * 1024, 8);
  header.writeUInt32LE(crc32c(header.subarray(0, 16)), 16);
  const r = await rawRefusal(header);
  assert.equal(r.logged.fields['code'], 'FRAME_TOO_LARGE');
  assert.equal(r.closed, true);
});

void test('a frame with a bad checksum is dropped', async () => {
  const hello = encodeHello({ channel: 'meta', nonce: Buffer.alloc(32, 1), clusterId: 'prod', from: 'a', to: 'b' });
  const frame = encodeFrame(FrameType.helloInitiator, hello);
  frame[frame.length - 1]! ^= 0x10;
  const r = await rawRefusal(frame);
  assert.equal(r.logged.fields['code'], 'FRAME_CORRUPT');
  assert.equal(r.links, 0);
});

function selfSignedCert(): TlsOptions | string {
  const dir = mkdtempSync(join(tmpdir(), 'mars-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=mars-test'], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } catch (err) {
    return `openssl is not available: ${(err as Error).message}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const tlsOptions = selfSignedCert();

void test('with TLS, hosts authenticate over an encrypted connection bound to the handshake', { skip: typeof tlsOptions === 'string' ? tlsOptions : false }, async () => {
  const tls = tlsOptions as TlsOptions;
  const s = await startServer({ tls });
  try {
    const client = await dialPeer(dialOptions(s.server.port, { tls }));
    const server = await s.linked;
    assert.equal(client.info.tls, true);
    assert.equal(server.info.tls, true);
    await exchange(client, server);
    client.close();
    server.close();
    // A plain-TCP client on a TLS port gets nowhere.
    const error = await dialPeer(dialOptions(s.server.port)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof MarsError);
  } finally {
    await s.server.close();
  }
});
