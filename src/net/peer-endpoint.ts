/**
 * Listening for peers and dialling them, over TCP or TLS. Both ends run the handshake
 * before anything else; the server hands out only authenticated links and logs refused
 * connections with the peer's address, once per address and reason and period.
 *
 * Admission, before any byte is read (TLS included): at most `pendingHandshakesMax`
 * connections in their handshake, at most `pendingHandshakesPerAddressMax` from one IP,
 * and `pendingHandshakesReservedForKnown` of them only for IPs of known hosts; each has
 * `handshakeMsMax` to finish. So idle connections from strangers cost a bounded share for
 * a bounded time and never lock members out.
 *
 * TLS: when `tls` is given, peer traffic is encrypted (TLS 1.3). Authentication stays the
 * cluster-secret handshake, bound to the TLS session (channel binding), so self-signed
 * certificates are enough; with `ca`, certificates are verified against it as well.
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { systemClock, type Clock } from '../core/clock.js';
import type { SigningKey } from '../meta/index.js';
import { MarsError } from '../core/errors.js';
import { authenticate, channelBindingOf, remoteAddressOf } from './authenticate.js';
import { encodeFrame } from './frame.js';
import { Handshake, refuseFrame, type ChannelName, type Identity } from './handshake.js';
import { connectionsMax, connectMsMax, handshakeMsMax, nonceBytes, pendingHandshakesMax, pendingHandshakesPerAddressMax, pendingHandshakesPerKnownAddressMax, pendingHandshakesReservedForKnown } from './limits.js';
import type { LinkEnv, PeerLink } from './peer-link.js';
import { RefusalLog, silentLog, type PeerLog } from './refusal-log.js';
import { SocketInput } from './socket-input.js';
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
  /** This host's key: it signs this side of every handshake outside the join channel. */
  readonly signingKey?: SigningKey;
  /** The key pinned for a host name: a peer under that name must sign with it. */
  readonly peerKey?: (host: string) => string | undefined;
}

interface Environment {
  readonly timers?: Timers;
  readonly clock?: Clock;
  /** Nonce source; the default is node:crypto (a seeded generator would make nonces predictable). */
  readonly randomBytes?: (length: number) => Buffer;
  readonly log?: PeerLog;
  /** A link that receives nothing for this long is closed (default idleMsMax of limits.ts). */
  readonly linkIdleMs?: number;
}

/** The link environment of `o`. */
function linkEnv(o: Environment, timers: Timers): LinkEnv {
  return { timers, clock: o.clock ?? systemClock, ...(o.linkIdleMs === undefined ? {} : { idleMs: o.linkIdleMs }) };
}

export interface PeerServerOptions extends Environment {
  readonly listenHost: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly tls?: TlsOptions;
  readonly auth: AuthOptions;
  /** Whether to talk to this host, on this channel, from this address (e.g. a known host). */
  readonly acceptPeer?: (host: string, channel: ChannelName, remoteAddress: string) => boolean;
  /** Whether an IP address is a known host's (it may use the reserved handshake places). */
  readonly isKnownAddress?: (ip: string) => boolean;
  readonly onLink: (link: PeerLink) => void;
}

/** One admitted connection's place in the handshake pools, until it is authenticated or gone. */
interface Slot {
  readonly ip: string;
  released: boolean;
  timer: ReturnType<Timers['setTimeout']> | undefined;
}

export class PeerServer {
  private pending = 0;
  private readonly pendingByIp = new Map<string, number>();
  /** Admitted connections not yet authenticated, by "ip:port" (the TLS socket finds its place by it). */
  private readonly slots = new Map<string, Slot>();
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
    // Plain TCP: paused on connect, so that nothing is read before the socket is moved onto the shared read buffer (SocketInput.adopt).
    const server: Server =
      tls === undefined
        ? createServer({ pauseOnConnect: true })
        : createTlsServer({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.3', ...(tls.ca === undefined ? {} : { ca: tls.ca, requestCert: true, rejectUnauthorized: true }) });
    const peerServer = new PeerServer(server, options);
    server.maxConnections = connectionsMax;
    // Every TCP connection is admitted first (for TLS before its handshake), then authenticated.
    if (tls === undefined) {
      server.on('connection', (socket: Socket) => {
        const input = SocketInput.adopt(socket);
        if (peerServer.admit(input.socket)) peerServer.onSocket(input.socket, input);
      });
    } else {
      server.on('connection', (socket: Socket) => void peerServer.admit(socket));
      server.on('secureConnection', (socket: Socket) => peerServer.onSocket(socket, SocketInput.ofDataEvents(socket)));
    }
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

  /** Why a new connection from `ip` gets no place in the handshake pools; undefined: it gets one. */
  private busyReason(ip: string): string | undefined {
    const known = this.options.isKnownAddress?.(ip) === true;
    const perAddressMax = known ? pendingHandshakesPerKnownAddressMax : pendingHandshakesPerAddressMax;
    if ((this.pendingByIp.get(ip) ?? 0) >= perAddressMax) return `${perAddressMax} handshakes from ${ip} in progress already`;
    const limit = known ? pendingHandshakesMax : pendingHandshakesMax - pendingHandshakesReservedForKnown;
    if (this.pending >= limit) return `${this.pending} handshakes in progress${known ? '' : ` (the rest is kept for known hosts)`}`;
    return undefined;
  }

  /** Gives the connection a place in the handshake pools; false: refused (it is answered and closed). */
  private admit(socket: Socket): boolean {
    const ip = (socket.remoteAddress ?? 'unknown').replace(/^::ffff:/i, '');
    const busy = this.busyReason(ip);
    if (busy !== undefined) {
      this.refusals.refused(remoteAddressOf(socket), 'PEER_BUSY', busy, ip);
      socket.on('error', () => undefined);
      // Plain TCP hears why; a TLS client is cut before its handshake.
      if (this.options.tls === undefined) socket.end(encodeFrame(refuseFrame('busy').type, refuseFrame('busy').payload));
      socket.destroySoon();
      socket.setTimeout(1_000, () => socket.destroy());
      return false;
    }
    this.track(socket);
    const timers = this.options.timers ?? systemTimers;
    const slot: Slot = { ip, released: false, timer: undefined };
    const key = remoteAddressOf(socket);
    this.slots.set(key, slot);
    this.pending++;
    this.pendingByIp.set(ip, (this.pendingByIp.get(ip) ?? 0) + 1);
    slot.timer = timers.setTimeout(() => {
      this.refusals.refused(key, 'TIMEOUT', `no handshake within ${handshakeMsMax} ms`, ip);
      socket.destroy();
    }, handshakeMsMax);
    socket.once('close', () => this.release(key, slot));
    return true;
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private release(key: string, slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    if (slot.timer !== undefined) (this.options.timers ?? systemTimers).clearTimeout(slot.timer);
    if (this.slots.get(key) === slot) this.slots.delete(key);
    this.pending--;
    const left = (this.pendingByIp.get(slot.ip) ?? 1) - 1;
    if (left <= 0) this.pendingByIp.delete(slot.ip);
    else this.pendingByIp.set(slot.ip, left);
  }

  private onSocket(socket: Socket, input: SocketInput): void {
    const remoteAddress = remoteAddressOf(socket);
    const slot = this.slots.get(remoteAddress);
    if (slot === undefined) return; // refused at admission (which answers and closes it)
    if (slot.released) {
      socket.destroy(); // out of time already
      return;
    }
    this.track(socket);
    const o = this.options;
    const tls = o.tls !== undefined;
    const handshake = Handshake.responder({
      ...this.auth,
      nonce: (o.randomBytes ?? cryptoRandomBytes)(nonceBytes),
      channelBinding: channelBindingOf(socket),
      acceptPeer: (host, channel) => o.acceptPeer?.(host, channel, remoteAddress) ?? true,
    });
    authenticate(socket, handshake, linkEnv(o, o.timers ?? systemTimers), tls, input).then(
      (link) => {
        this.release(remoteAddress, slot);
        o.onLink(link);
      },
      (err: unknown) => {
        this.release(remoteAddress, slot);
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
  const { socket, input } = await openSocket(options, timers);
  const handshake = Handshake.initiator({
    ...options.auth,
    peerHost: options.peerHost,
    channel: options.channel,
    nonce: (options.randomBytes ?? cryptoRandomBytes)(nonceBytes),
    channelBinding: channelBindingOf(socket),
  });
  return authenticate(socket, handshake, linkEnv(options, timers), options.tls !== undefined, input);
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
  const { socket, input } = await openSocket(options, timers);
  const handshake = Handshake.joiner({
    secret: options.secret,
    localHost: options.localHost,
    nonce: (options.randomBytes ?? cryptoRandomBytes)(nonceBytes),
    channelBinding: channelBindingOf(socket),
  });
  return authenticate(socket, handshake, linkEnv(options, timers), options.tls !== undefined, input);
}

interface SocketTarget {
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsOptions;
  readonly localAddress?: string;
}

/** Connects; plain TCP reads into the shared read buffer from the start (SocketInput). */
function openSocket(options: SocketTarget, timers: Timers): Promise<{ socket: Socket; input: SocketInput }> {
  return new Promise((resolve, reject) => {
    const tls = options.tls;
    const where = `${options.host}:${options.port}`;
    const local = options.localAddress === undefined ? {} : { localAddress: options.localAddress };
    const dialInput = tls === undefined ? SocketInput.forDial() : undefined;
    const socket: Socket =
      tls === undefined
        ? netConnect({ host: options.host, port: options.port, ...local, ...dialInput!.connectOptions() })
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
      reject(new MarsError('PEER_CLOSED', `${where}: ${err.message}`, { cause: err }));
    };
    const timer = timers.setTimeout(() => {
      socket.off('error', onError);
      socket.on('error', () => undefined);
      socket.destroy();
      reject(new MarsError('PEER_CLOSED', `${where}: no connection within ${connectMsMax} ms`, { cause: { code: 'ETIMEDOUT' } }));
    }, connectMsMax);
    socket.once(tls === undefined ? 'connect' : 'secureConnect', () => {
      timers.clearTimeout(timer);
      socket.off('error', onError);
      if (dialInput === undefined) {
        resolve({ socket, input: SocketInput.ofDataEvents(socket) });
        return;
      }
      dialInput.attach(socket);
      resolve({ socket, input: dialInput });
    });
    socket.once('error', onError);
  });
}
