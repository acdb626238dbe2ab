/**
 * Listening for peers and dialling them, over TCP or TLS. Both ends run the handshake
 * before anything else; the server hands out only authenticated links and logs every
 * refused connection once, with the peer's address.
 *
 * TLS: when `tls` is given, peer traffic is encrypted (TLS 1.3). Authentication stays the
 * cluster-secret handshake, bound to the TLS session (channel binding), so self-signed
 * certificates are enough; with `ca`, certificates are verified against it as well.
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { systemClock, type Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { authenticate, channelBindingOf, remoteAddressOf } from './authenticate.js';
import { encodeFrame } from './frame.js';
import { Handshake, refuseFrame, type ChannelName, type Identity } from './handshake.js';
import { connectionsMax, connectMsMax, nonceBytes, pendingHandshakesMax } from './limits.js';
import type { PeerLink } from './peer-link.js';
import { RefusalLog, silentLog, type PeerLog } from './refusal-log.js';
import { systemTimers, type Timers } from './timers.js';

export interface TlsOptions {
  /** PEM private key and certificate of this host. */
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** PEM CA certificate(s): if given, peers' certificates must be signed by it. */
  readonly ca?: string | Buffer;
}

export interface AuthOptions {
  readonly secret: Buffer;
  readonly clusterId: string;
  readonly localHost: string;
  /** Former identities a server still accepts from initiators (after merge-cluster); dialers ignore them. */
  readonly formerIdentities?: readonly Identity[];
}

interface Environment {
  readonly timers?: Timers;
  readonly clock?: Clock;
  /** Nonce source; the default is node:crypto (a seeded generator would make nonces predictable). */
  readonly randomBytes?: (length: number) => Buffer;
  readonly log?: PeerLog;
}

export interface PeerServerOptions extends Environment {
  readonly listenHost: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly tls?: TlsOptions;
  readonly auth: AuthOptions;
  /** Whether to talk to this host, on this channel, from this address (e.g. a known host). */
  readonly acceptPeer?: (host: string, channel: ChannelName, remoteAddress: string) => boolean;
  readonly onLink: (link: PeerLink) => void;
}

export class PeerServer {
  private pending = 0;
  private readonly refusals: RefusalLog;
  private readonly sockets = new Set<Socket>();
  private auth: AuthOptions;

  private constructor(
    private readonly server: Server,
    private readonly options: PeerServerOptions,
  ) {
    this.refusals = new RefusalLog(options.log ?? silentLog, options.clock ?? systemClock);
    this.auth = options.auth;
  }

  /** Changes the identity new connections are authenticated with (merge-cluster); open links stay. */
  setAuth(auth: AuthOptions): void {
    this.auth = auth;
  }

  static async listen(options: PeerServerOptions): Promise<PeerServer> {
    const tls = options.tls;
    const server: Server =
      tls === undefined
        ? createServer()
        : createTlsServer({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.3', ...(tls.ca === undefined ? {} : { ca: tls.ca, requestCert: true, rejectUnauthorized: true }) });
    const peerServer = new PeerServer(server, options);
    server.maxConnections = connectionsMax;
    server.on(tls === undefined ? 'connection' : 'secureConnection', (socket: Socket) => peerServer.onSocket(socket));
    server.on('tlsClientError', (err: Error, socket: Socket) => peerServer.refusals.refused(remoteAddressOf(socket), 'AUTH_FAILED', `TLS: ${err.message}`, socket.remoteAddress));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.listenHost, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return peerServer;
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  /** Stops listening and closes every connection it accepted (their links report onClose). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private onSocket(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const remoteAddress = remoteAddressOf(socket);
    if (this.pending >= pendingHandshakesMax) {
      this.refusals.refused(remoteAddress, 'AUTH_FAILED', `more than ${pendingHandshakesMax} handshakes in progress`, socket.remoteAddress);
      socket.on('error', () => undefined);
      socket.end(encodeFrame(refuseFrame('busy').type, refuseFrame('busy').payload));
      socket.destroySoon();
      return;
    }
    const o = this.options;
    const tls = o.tls !== undefined;
    const handshake = Handshake.responder({
      ...this.auth,
      nonce: (o.randomBytes ?? cryptoRandomBytes)(nonceBytes),
      channelBinding: channelBindingOf(socket),
      acceptPeer: (host, channel) => o.acceptPeer?.(host, channel, remoteAddress) ?? true,
    });
    this.pending++;
    authenticate(socket, handshake, { timers: o.timers ?? systemTimers, clock: o.clock ?? systemClock }, tls).then(
      (link) => {
        this.pending--;
        o.onLink(link);
      },
      (err: unknown) => {
        this.pending--;
        const error = err instanceof MarsError ? err : new MarsError('AUTH_FAILED', String(err));
        this.refusals.refused(remoteAddress, error.code, error.message, socket.remoteAddress);
      },
    );
  }
}

export interface DialOptions extends Environment {
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsOptions;
  readonly auth: AuthOptions;
  /** The host we mean to reach: a peer answering with another name is refused. */
  readonly peerHost: string;
  readonly channel: ChannelName;
  /** The local address to dial from (the host's own listen address, which peers check against its record). */
  readonly localAddress?: string;
}

/** Connects and authenticates; rejects with a MarsError (the caller logs it, e.g. PeerConnection). */
export async function dialPeer(options: DialOptions): Promise<PeerLink> {
  const timers = options.timers ?? systemTimers;
  const socket = await openSocket(options, timers);
  const handshake = Handshake.initiator({
    ...options.auth,
    peerHost: options.peerHost,
    channel: options.channel,
    nonce: (options.randomBytes ?? cryptoRandomBytes)(nonceBytes),
    channelBinding: channelBindingOf(socket),
  });
  return authenticate(socket, handshake, { timers, clock: options.clock ?? systemClock }, options.tls !== undefined);
}

export interface JoinDialOptions extends Environment {
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsOptions;
  readonly secret: Buffer;
  readonly localHost: string;
  readonly localAddress?: string;
}

/**
 * Connects on the join channel: proves the secret without knowing the cluster id or the
 * peer's name, and learns both (`link.info.clusterId`, `link.peerHost`).
 */
export async function joinPeer(options: JoinDialOptions): Promise<PeerLink> {
  const timers = options.timers ?? systemTimers;
  const socket = await openSocket(options, timers);
  const handshake = Handshake.joiner({
    secret: options.secret,
    localHost: options.localHost,
    nonce: (options.randomBytes ?? cryptoRandomBytes)(nonceBytes),
    channelBinding: channelBindingOf(socket),
  });
  return authenticate(socket, handshake, { timers, clock: options.clock ?? systemClock }, options.tls !== undefined);
}

interface SocketTarget {
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsOptions;
  readonly localAddress?: string;
}

function openSocket(options: SocketTarget, timers: Timers): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const tls = options.tls;
    const where = `${options.host}:${options.port}`;
    const local = options.localAddress === undefined ? {} : { localAddress: options.localAddress };
    const socket: Socket =
      tls === undefined
        ? netConnect({ host: options.host, port: options.port, ...local })
        : tlsConnect({
            host: options.host,
            port: options.port,
            ...local,
            key: tls.key,
            cert: tls.cert,
            minVersion: 'TLSv1.3',
            // Identity is the handshake's business (host names are bound into the proofs).
            checkServerIdentity: () => undefined,
            ...(tls.ca === undefined ? { rejectUnauthorized: false } : { ca: tls.ca, rejectUnauthorized: true }),
          });
    const onError = (err: Error): void => {
      timers.clearTimeout(timer);
      socket.destroy();
      reject(new MarsError('PEER_CLOSED', `${where}: ${err.message}`));
    };
    const timer = timers.setTimeout(() => {
      socket.off('error', onError);
      socket.on('error', () => undefined);
      socket.destroy();
      reject(new MarsError('PEER_CLOSED', `${where}: no connection within ${connectMsMax} ms`));
    }, connectMsMax);
    socket.once(tls === undefined ? 'connect' : 'secureConnect', () => {
      timers.clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    socket.once('error', onError);
  });
}
