/**
 * The NBD server: accepts TCP connections and runs one NbdConnection per client against
 * the exports of an ExportRegistry. It knows which connection uses which export, so that
 * the daemon can refuse a handover while a device is open (`connectionCount`) and can
 * disconnect every client of a resource that stops being primary (`closeExport`).
 *
 * Abuse limits (limits.ts): connections in all, per source address and per export; one
 * MemoryBudget for the buffered bytes of every connection; idle connections closed after
 * `idleMsMax`; refusals logged at most once per address and reason per quiet period.
 */
import net from 'node:net';
import type { ExportRegistry } from './backend.js';
import { NbdConnection } from './connection.js';
import { resolveLimits, socketReadBufferBytes, type NbdLimits } from './limits.js';
import { MemoryBudget } from './memory-budget.js';
import { NbdRefusalLog } from './refusal-log.js';
import { withReusableReadBuffer } from './socket-read.js';

export interface NbdServerOptions {
  /** Receives one line per notable event (connections, protocol errors, backend errors). */
  readonly logger?: (message: string) => void;
  readonly limits?: Partial<NbdLimits>;
  /** The set of clients of an export changed (one entered transmission, or one closed). */
  readonly onClientsChanged?: (exportName: string) => void;
}

export interface NbdServerAddress {
  readonly host: string;
  readonly port: number;
}

export class NbdServer {
  readonly limits: NbdLimits;
  private readonly server: net.Server;
  private readonly connections = new Set<NbdConnection>();
  /** The buffered bytes of every connection together (bufferedBytesMax). */
  readonly budget: MemoryBudget;
  private readonly refusals: NbdRefusalLog;
  private readonly log: (message: string) => void;
  /** Every connection's socket reads into this buffer (socket-read.ts); allocated at the first connection. */
  private readBuffer: Buffer | undefined;
  private nextConnectionId = 1;
  private payloadBytesReadDirectNow = 0;
  private closing = false;
  private readonly onClientsChanged: ((exportName: string) => void) | undefined;

  constructor(
    private readonly registry: ExportRegistry,
    options: NbdServerOptions = {},
  ) {
    this.limits = resolveLimits(options.limits);
    this.log = options.logger ?? (() => undefined);
    this.onClientsChanged = options.onClientsChanged;
    this.budget = new MemoryBudget(this.limits.bufferedBytesMax, this.limits.bufferedBytesPerAddressMax);
    this.refusals = new NbdRefusalLog(this.log, this.limits.refusalLogQuietMs);
    // Paused on connect: nothing is read before the socket is moved onto the shared read buffer.
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    this.server.on('error', (err) => this.log(`nbd server error: ${err.message}`));
  }

  /** WRITE payload bytes that the sockets read straight into their payload buffers (socket-read.ts), all connections so far. */
  get payloadBytesReadDirect(): number {
    return this.payloadBytesReadDirectNow;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        const { host: boundHost, port: boundPort } = this.address();
        this.log(`nbd server listening on ${boundHost}:${boundPort}`);
        resolve();
      });
    });
  }

  address(): NbdServerAddress {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('NBD server is not listening');
    return { host: address.address, port: address.port };
  }

  /** Open connections (including those still closing); with a name, only those in transmission on that export. */
  connectionCount(exportName?: string): number {
    if (exportName === undefined) return this.connections.size;
    let count = 0;
    for (const connection of this.connections) if (connection.exportName === exportName) count += 1;
    return count;
  }

  /** The addresses (IP:PORT) of the clients in transmission on an export. */
  clients(exportName: string): string[] {
    const peers: string[] = [];
    for (const connection of this.connections) if (connection.exportName === exportName) peers.push(connection.peer);
    return peers.sort();
  }

  /** Disconnects every client of one export after answering its in-flight requests. */
  async closeExport(exportName: string): Promise<void> {
    const affected = [...this.connections].filter((connection) => connection.exportName === exportName);
    for (const connection of affected) connection.shutdown(`export ${exportName} closed`);
    await Promise.all(affected.map((connection) => connection.done));
  }

  /** Stops accepting, ends every connection once its in-flight requests are answered, and waits for all of them. */
  async close(): Promise<void> {
    this.closing = true;
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const all = [...this.connections];
    for (const connection of all) connection.shutdown('server closing');
    await Promise.all(all.map((connection) => connection.done));
    await stopped;
  }

  /** Connections not closing (of one address, or on one export, if given). */
  private countLive(match: (connection: NbdConnection) => boolean): number {
    let count = 0;
    for (const connection of this.connections) if (!connection.leaving && match(connection)) count += 1;
    return count;
  }

  /**
   * Makes room among the connections that `match`: closes the one in its handshake
   * longest (at least evictHandshakeMsMin), else the one idle longest (at least
   * evictIdleMsMin). False if none qualifies.
   */
  private evictOne(match: (connection: NbdConnection) => boolean, why: string): boolean {
    const now = Date.now();
    let handshaking: NbdConnection | undefined;
    let idle: NbdConnection | undefined;
    let idleMs = -1;
    for (const connection of this.connections) {
      if (connection.leaving || !match(connection)) continue;
      if (connection.inHandshake) {
        if (now - connection.acceptedMs >= this.limits.evictHandshakeMsMin && (handshaking === undefined || connection.acceptedMs < handshaking.acceptedMs)) handshaking = connection;
        continue;
      }
      const ms = connection.idleForMs(now);
      if (ms >= this.limits.evictIdleMsMin && ms > idleMs) {
        idle = connection;
        idleMs = ms;
      }
    }
    const victim = handshaking ?? idle;
    if (victim === undefined) return false;
    victim.evict(victim === handshaking ? `closed to make room (${why}): still in the handshake after ${now - victim.acceptedMs} ms` : `closed to make room (${why}): idle for ${Math.round(idleMs / 1000)} s`);
    return true;
  }

  /** Whether a limit keeps the newcomer out, after making room if a connection may be evicted. */
  private acceptRefusal(address: string): string | undefined {
    if (this.closing) return 'closing';
    const all = (): boolean => true;
    const mine = (c: NbdConnection): boolean => c.address === address;
    if (this.countLive(mine) >= this.limits.connectionsPerAddressMax && !this.evictOne(mine, 'per-address limit')) {
      return `limit of connections from one address reached (${this.limits.connectionsPerAddressMax})`;
    }
    if (this.countLive(all) >= this.limits.connectionsMax && !this.evictOne(all, 'connection limit')) {
      return `connection limit reached (${this.limits.connectionsMax})`;
    }
    return undefined;
  }

  /** Whether one more connection may enter transmission on the export (making room if one may be evicted). */
  private mayOpenExport(name: string): boolean {
    const onExport = (c: NbdConnection): boolean => c.exportName === name;
    return this.countLive(onExport) < this.limits.exportConnectionsMax || this.evictOne(onExport, 'export limit');
  }

  private accept(socket: net.Socket): void {
    const address = socket.remoteAddress ?? '?';
    const refusal = this.acceptRefusal(address);
    if (refusal !== undefined) {
      this.refusals.refused(address, refusal, `refusing connection from ${address}: ${refusal}`);
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    const changed = this.onClientsChanged;
    const host = {
      registry: this.registry,
      limits: this.limits,
      log: this.log,
      onExportOpened: (name: string) => changed?.(name),
      budget: this.budget,
      refused: (from: string, kind: string, message: string) => this.refusals.refused(from, kind, message),
      countDirectPayload: (bytes: number) => {
        this.payloadBytesReadDirectNow += bytes;
      },
      mayOpenExport: (name: string) => {
        if (this.mayOpenExport(name)) return true;
        const why = `export connection limit reached (${this.limits.exportConnectionsMax})`;
        this.refusals.refused(address, why, `refusing connection from ${address} to export ${name}: ${why}`);
        return false;
      },
    };
    // The reader runs only after the connection below exists (the socket starts paused).
    const current: { connection?: NbdConnection } = {};
    this.readBuffer ??= Buffer.allocUnsafeSlow(socketReadBufferBytes);
    const adopted = withReusableReadBuffer(
      socket,
      this.readBuffer,
      (view, intoTarget) => current.connection?.receiveBorrowed(view, intoTarget),
      () => current.connection?.readTarget(),
    );
    const accepted = new NbdConnection(adopted ?? socket, host, this.nextConnectionId++, adopted !== undefined);
    current.connection = accepted;
    this.connections.add(accepted);
    void accepted.done.then(() => {
      this.connections.delete(accepted);
      if (accepted.exportName !== undefined) changed?.(accepted.exportName);
    });
    accepted.start();
  }
}
