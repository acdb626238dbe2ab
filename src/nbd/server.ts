/**
 * The NBD server: accepts TCP connections and runs one NbdConnection per client against
 * the exports of an ExportRegistry. It knows which connection uses which export, so that
 * the daemon can refuse a handover while a device is open (`connectionCount`) and can
 * disconnect every client of a resource that stops being primary (`closeExport`).
 */
import net from 'node:net';
import type { ExportRegistry } from './backend.js';
import { NbdConnection } from './connection.js';
import { resolveLimits, type NbdLimits } from './limits.js';

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
  private readonly log: (message: string) => void;
  private nextConnectionId = 1;
  private closing = false;
  private readonly onClientsChanged: ((exportName: string) => void) | undefined;

  constructor(
    private readonly registry: ExportRegistry,
    options: NbdServerOptions = {},
  ) {
    this.limits = resolveLimits(options.limits);
    this.log = options.logger ?? (() => undefined);
    this.onClientsChanged = options.onClientsChanged;
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server.on('error', (err) => this.log(`nbd server error: ${err.message}`));
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

  private accept(socket: net.Socket): void {
    if (this.closing || this.connections.size >= this.limits.connectionsMax) {
      this.log(`refusing connection from ${socket.remoteAddress ?? '?'}: ${this.closing ? 'closing' : 'connection limit reached'}`);
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    const changed = this.onClientsChanged;
    const host = { registry: this.registry, limits: this.limits, log: this.log, onExportOpened: (name: string) => changed?.(name) };
    const connection = new NbdConnection(socket, host, this.nextConnectionId++);
    this.connections.add(connection);
    void connection.done.then(() => {
      this.connections.delete(connection);
      if (connection.exportName !== undefined) changed?.(connection.exportName);
    });
    connection.start();
  }
}
