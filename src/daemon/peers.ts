/**
 * marsd's metadata connections: one listening PeerServer, and one link per pair of hosts.
 *
 * Who dials: both hosts of a pair may, but the pair keeps the link dialled by the host
 * with the smaller name. That host always keeps a reconnecting PeerConnection to the
 * other; the larger-named host dials only while it has no link from the smaller one
 * (a host that just joined is unknown to the others until it dials them, and a host
 * whose peer is down keeps trying too). When both links exist, both ends close the one
 * dialled by the larger name, by the same rule, so they agree without talking.
 *
 * A peer that proves the secret but has no host record yet (a new member) is accepted;
 * one whose name has a record with another IP address is refused (a host claiming
 * another's name). Hosts dial from their own listen address so that this check holds.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import type { SigningKey } from '../meta/index.js';
import { dialPeer, PeerConnection, PeerServer, type AuthOptions, type ChannelName, type Frame, type Identity, type PeerLink, type PeerLog, type Timers, type TlsOptions } from '../net/index.js';
import { parseAddress } from './state-dir.js';

/** How often marsd tries again to listen on its peer address when that fails (e.g. in use). */
export const listenRetryMs = 5_000;

export interface PeerManagerOptions {
  readonly self: string;
  readonly listen: string;
  readonly identity: () => { current: Identity; former: Identity | undefined };
  /** This host's key, and the key pinned for a peer's name (both bound into every handshake). */
  readonly signingKey: SigningKey;
  readonly peerKey: (host: string) => string | undefined;
  readonly tls: TlsOptions | undefined;
  readonly clock: Clock;
  readonly timers: Timers;
  /** A peer link that receives nothing for this long is closed (default src/net/limits.ts idleMsMax; MARS_INTERVALS peerIdleMs). */
  readonly linkIdleMs?: number;
  readonly random: Random;
  readonly log: PeerLog & { error(fields: Record<string, unknown>, message: string): void; info(fields: Record<string, unknown>, message: string): void };
  /** Whether to accept this peer on this channel from this address. */
  readonly acceptPeer: (host: string, channel: ChannelName, remoteAddress: string) => boolean;
  /** Whether an IP address is a known host's (its connections may use the places kept for members). */
  readonly isKnownAddress?: (ip: string) => boolean;
  readonly onFrame: (peer: string, frame: Frame, link: PeerLink) => void;
  /** A link to the peer became the active one: exchange metadata now. */
  readonly onPeerUp: (peer: string) => void;
  readonly onJoinLink: (link: PeerLink) => void;
  /** A link on the bulk channels (fetch, sync), once their areas exist; acceptPeer admits them. */
  readonly onBulkLink: (link: PeerLink) => void;
}

interface PeerState {
  address: string | undefined;
  dialer: PeerConnection | undefined;
  incoming: PeerLink | undefined;
  active: PeerLink | undefined;
}

function wildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::' || ip === '';
}

export class PeerManager {
  private server: PeerServer | undefined;
  private listenTimer: ReturnType<Timers['setTimeout']> | undefined;
  private readonly peers = new Map<string, PeerState>();
  private closed = false;

  constructor(private readonly o: PeerManagerOptions) {}

  /** Listens on the peer address; if that fails, logs it and tries again every `listenRetryMs`. */
  async listen(): Promise<void> {
    const { host, port } = parseAddress(this.o.listen);
    try {
      this.server = await PeerServer.listen({
        listenHost: host,
        port,
        ...(this.o.tls === undefined ? {} : { tls: this.o.tls }),
        auth: this.auth(),
        clock: this.o.clock,
        timers: this.o.timers,
        ...(this.o.linkIdleMs === undefined ? {} : { linkIdleMs: this.o.linkIdleMs }),
        log: this.o.log,
        acceptPeer: (peer, channel, remote) => this.o.acceptPeer(peer, channel, remote),
        ...(this.o.isKnownAddress === undefined ? {} : { isKnownAddress: this.o.isKnownAddress }),
        onLink: (link) => this.onLink(link),
      });
      this.o.log.info({ listen: this.o.listen, tls: this.o.tls !== undefined }, 'listening for peers');
    } catch (err) {
      this.o.log.error({ listen: this.o.listen }, `cannot listen for peers on ${this.o.listen}: ${(err as Error).message}; trying again every ${listenRetryMs} ms`);
      if (!this.closed) this.listenTimer = this.o.timers.setTimeout(() => void this.listen(), listenRetryMs);
    }
  }

  private auth(): AuthOptions {
    const { current, former } = this.o.identity();
    return { ...current, localHost: this.o.self, formerIdentities: former === undefined ? [] : [former], ...this.keys() };
  }

  private keys(): Pick<AuthOptions, 'signingKey' | 'peerKey'> {
    return { signingKey: this.o.signingKey, peerKey: this.o.peerKey };
  }

  /** The identity changed (merge-cluster): new connections use it; open links stay. */
  identityChanged(): void {
    this.server?.setAuth(this.auth());
  }

  get listening(): boolean {
    return this.server !== undefined;
  }

  /** A host record changed: the host's address, or undefined once it left the cluster. */
  setHost(host: string, address: string | undefined): void {
    if (host === this.o.self) return;
    if (address === undefined) {
      const state = this.peers.get(host);
      if (state === undefined) return;
      // Gone from the cluster (left): stop dialling; a link still open stays until it closes.
      state.address = undefined;
      if (state.dialer !== undefined && state.dialer.link === undefined) this.stopDialer(state);
      this.forgetIfIdle(host, state);
      return;
    }
    const state = this.state(host);
    state.address = address;
    if (state.dialer === undefined && (this.o.self < host || state.incoming === undefined)) this.startDialer(host, state);
  }

  /** Open links to the host, both directions (1 once the pair has settled; for tests and diagnostics). */
  openLinks(host: string): number {
    const state = this.peers.get(host);
    if (state === undefined) return 0;
    return [state.dialer?.link, state.incoming].filter((link) => link !== undefined && !link.closed).length;
  }

  alive(host: string): boolean {
    return this.peers.get(host)?.active !== undefined;
  }

  /** Dial attempts to the host that failed so far. */
  failedDials(host: string): number {
    return this.peers.get(host)?.dialer?.failedDials ?? 0;
  }

  lastError(host: string): string | undefined {
    return this.peers.get(host)?.dialer?.lastError?.message;
  }

  /** Dials a host without a link now rather than at the end of its backoff. */
  retryNow(host: string): void {
    this.peers.get(host)?.dialer?.retryNow();
  }

  /** Sends on the active link to the host; false if there is none (anti-entropy repairs the loss). */
  send(host: string, type: number, payload: Buffer): boolean {
    return this.peers.get(host)?.active?.send(type, payload) ?? false;
  }

  remoteAddress(host: string): string {
    return this.peers.get(host)?.active?.info.remoteAddress ?? this.peers.get(host)?.address ?? host;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.listenTimer !== undefined) this.o.timers.clearTimeout(this.listenTimer);
    for (const state of this.peers.values()) {
      this.stopDialer(state);
      state.incoming?.close();
    }
    this.peers.clear();
    await this.server?.close();
  }

  private state(host: string): PeerState {
    let state = this.peers.get(host);
    if (state === undefined) {
      state = { address: undefined, dialer: undefined, incoming: undefined, active: undefined };
      this.peers.set(host, state);
    }
    return state;
  }

  private forgetIfIdle(host: string, state: PeerState): void {
    if (state.address === undefined && state.dialer === undefined && state.incoming === undefined) this.peers.delete(host);
  }

  private startDialer(host: string, state: PeerState): void {
    if (this.closed) return;
    const dialer = new PeerConnection({
      name: `${host} at ${state.address ?? '?'}`,
      dial: () => this.dial(host),
      clock: this.o.clock,
      timers: this.o.timers,
      random: this.o.random,
      log: this.o.log,
      onFrame: (frame) => {
        const link = dialer.link;
        if (link !== undefined) this.o.onFrame(host, frame, link);
      },
      onOpen: (link) => this.linkOpened(host, link, 'dialled'),
      onClose: () => this.linkClosed(host),
    });
    state.dialer = dialer;
    dialer.start();
  }

  private stopDialer(state: PeerState): void {
    state.dialer?.stop();
    state.dialer = undefined;
  }

  private dial(host: string): Promise<PeerLink> {
    return this.dialChannel(host, 'meta');
  }

  /**
   * Dials a known host on a channel (meta here; fetch and sync for the bulk areas, each
   * on its own connection) from this host's listen address, with the current identity;
   * a peer not yet told of a merge answers only to the former one.
   */
  async dialChannel(host: string, channel: Exclude<ChannelName, 'join'>): Promise<PeerLink> {
    const address = this.peers.get(host)?.address;
    if (address === undefined) throw new MarsError('NOT_FOUND', `${host} has no address`);
    const target = parseAddress(address);
    const own = parseAddress(this.o.listen).host;
    const base = { host: target.host, port: target.port, peerHost: host, channel, clock: this.o.clock, timers: this.o.timers, ...(this.o.linkIdleMs === undefined ? {} : { linkIdleMs: this.o.linkIdleMs }), ...(wildcard(own) ? {} : { localAddress: own }), ...(this.o.tls === undefined ? {} : { tls: this.o.tls }) };
    const { current, former } = this.o.identity();
    try {
      return await dialPeer({ ...base, auth: { ...current, localHost: this.o.self, ...this.keys() } });
    } catch (err) {
      if (former === undefined || !(err instanceof MarsError) || err.code !== 'CLUSTER_MISMATCH') throw err;
      return dialPeer({ ...base, auth: { ...former, localHost: this.o.self, ...this.keys() } });
    }
  }

  private onLink(link: PeerLink): void {
    if (this.closed) {
      link.close();
      return;
    }
    if (link.info.channel === 'join') {
      this.o.onJoinLink(link);
      return;
    }
    if (link.info.channel !== 'meta') {
      this.o.onBulkLink(link);
      return;
    }
    const host = link.peerHost;
    const state = this.state(host);
    const previous = state.incoming;
    state.incoming = link;
    previous?.close();
    link.attach({
      onFrame: (frame) => this.o.onFrame(host, frame, link),
      onClose: () => {
        if (state.incoming === link) state.incoming = undefined;
        this.linkClosed(host);
      },
    });
    if (!link.closed) this.linkOpened(host, link, 'accepted');
  }

  /** A link opened: keep the one dialled by the smaller name, close the other. */
  private linkOpened(host: string, link: PeerLink, how: 'dialled' | 'accepted'): void {
    const state = this.state(host);
    const selfDials = this.o.self < host;
    if (how === 'accepted' && !selfDials) this.stopDialer(state); // the smaller host dialled us: that is the pair's link
    if (how === 'dialled' && selfDials && state.incoming !== undefined) {
      const extra = state.incoming;
      state.incoming = undefined;
      extra.close();
    }
    if (how === 'accepted' && selfDials && state.dialer?.link !== undefined) {
      state.incoming = undefined;
      link.close();
      return;
    }
    state.active = link;
    this.o.onPeerUp(host);
  }

  private linkClosed(host: string): void {
    const state = this.peers.get(host);
    if (state === undefined) return;
    const open = (link: PeerLink | undefined): PeerLink | undefined => (link === undefined || link.closed ? undefined : link);
    state.active = open(state.dialer?.link) ?? open(state.incoming);
    if (state.address === undefined && state.active === undefined) this.stopDialer(state); // left the cluster: no reconnect
    else if (state.active === undefined && state.dialer === undefined) this.startDialer(host, state);
    this.forgetIfIdle(host, state);
  }
}
