/**
 * The listener of `marsd --metrics IP:PORT`: Prometheus text at /metrics, the status page
 * at / (with its script and style), the current observation at /api/status, the last
 * hour at /api/history and a stream of observations at /api/events (server-sent events).
 *
 * Read-only and bounded: only GET and HEAD; at most `httpConnectionsMax` connections and
 * `eventStreamsMax` event streams; header, request, keep-alive and idle timeouts; an event
 * stream whose reader falls behind by `eventStreamBufferedBytesMax` is dropped. A client
 * that goes away mid-answer costs a closed socket: nothing waits on it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { MarsError } from '../core/errors.js';
import {
  eventStreamBufferedBytesMax,
  eventStreamKeepAliveMs,
  eventStreamsMax,
  httpConnectionsMax,
  httpHeadersTimeoutMs,
  httpIdleTimeoutMs,
  httpKeepAliveTimeoutMs,
  httpRequestTimeoutMs,
} from './limits.js';
import type { Observer } from './observer.js';
import type { MarsMetrics } from './prometheus.js';
import { statusPageAssets } from '../web/status-page.js';

const securityHeaders = {
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

export class MetricsHttpServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly streams = new Set<ServerResponse>();

  constructor(
    private readonly observer: Observer,
    private readonly metrics: MarsMetrics,
    private readonly log: (msg: string) => void = () => undefined,
  ) {
    this.server = createServer({ requestTimeout: httpRequestTimeoutMs, headersTimeout: httpHeadersTimeoutMs, keepAliveTimeout: httpKeepAliveTimeoutMs }, (req, res) => {
      this.route(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end();
      });
    });
    this.server.maxConnections = httpConnectionsMax;
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.setTimeout(httpIdleTimeoutMs, () => socket.destroy());
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server.on('clientError', (_err, socket: Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Listens; an address in use or not of this host is one clear error. */
  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === 'EADDRINUSE' ? 'address in use' : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' ? 'not an address of this host' : (err.code ?? err.message);
        reject(new MarsError('EINVAL', `cannot listen for metrics on ${host}:${port}: ${why}`));
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.log(`metrics listener: ${err.message}`));
        const a = this.server.address() as AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  async close(): Promise<void> {
    for (const res of this.streams) res.destroy();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain', Connection: 'close', ...securityHeaders });
      res.end('only GET\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const asset = statusPageAssets.get(path ?? '/');
    if (asset !== undefined) {
      res.writeHead(200, { 'Content-Type': asset.type, ...securityHeaders });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    switch (path) {
      case '/metrics':
        return this.serveMetrics(req, res);
      case '/api/status':
        return this.serveJson(req, res, async () => this.observer.observe());
      case '/api/history':
        return this.serveJson(req, res, () => Promise.resolve(this.observer.history.toJson()));
      case '/api/events':
        return this.serveEvents(req, res);
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain', ...securityHeaders });
        res.end('not found\n');
    }
  }

  private async serveMetrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      this.metrics.update(await this.observer.observe());
    } catch {
      this.metrics.failed();
    }
    const body = await this.metrics.metrics();
    if (res.destroyed) return;
    res.writeHead(200, { 'Content-Type': this.metrics.contentType, ...securityHeaders });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private async serveJson(req: IncomingMessage, res: ServerResponse, value: () => Promise<unknown>): Promise<void> {
    let body: string;
    try {
      body = JSON.stringify(await value());
    } catch (err) {
      if (res.destroyed) return;
      res.writeHead(503, { 'Content-Type': 'text/plain', ...securityHeaders });
      res.end(`${(err as Error).message}\n`);
      return;
    }
    if (res.destroyed) return;
    res.writeHead(200, { 'Content-Type': 'application/json', ...securityHeaders });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private serveEvents(req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= eventStreamsMax) {
      res.writeHead(503, { 'Content-Type': 'text/plain', 'Retry-After': '10', ...securityHeaders });
      res.end(`at most ${eventStreamsMax} event streams\n`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', Connection: 'keep-alive', ...securityHeaders });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    this.streams.add(res);
    const send = (text: string): void => {
      if (res.writableLength > eventStreamBufferedBytesMax) res.destroy();
      else res.write(text);
    };
    const latest = this.observer.latest;
    if (latest !== undefined) send(`data: ${JSON.stringify(latest)}\n\n`);
    const unsubscribe = this.observer.subscribe((o) => send(`data: ${JSON.stringify(o)}\n\n`));
    const keepAlive = setInterval(() => send(': keep-alive\n\n'), eventStreamKeepAliveMs);
    res.on('close', () => {
      clearInterval(keepAlive);
      unsubscribe();
      this.streams.delete(res);
    });
  }
}
