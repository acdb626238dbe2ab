/**
 * The daemon side of the control socket: accepts local connections, parses one request
 * per line, hands it to a handler and writes its answer. A bad line answers an error;
 * nothing a client sends can throw out of here.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { lstat, rm } from 'node:fs/promises';
import { MarsError } from '../core/errors.js';
import { LineReader, controlConnectionsMax, type ControlRequest, type ControlResponse } from './protocol.js';

export type ControlHandler = (cmd: string, args: Record<string, unknown>) => Promise<unknown>;

export class ControlServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly socketPath: string, private readonly handler: ControlHandler) {}

  /**
   * Binds the socket under umask 0177, so it is created with mode 0600: there is no
   * moment in which another user could connect (no chmod after bind). The umask is the
   * process's and is restored at once; files created meanwhile only get stricter modes.
   */
  async listen(): Promise<void> {
    await rm(this.socketPath, { force: true });
    const server = createServer((socket) => this.accept(socket));
    server.maxConnections = controlConnectionsMax;
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(umask);
    }
    const st = await lstat(this.socketPath);
    if (!st.isSocket() || (st.mode & 0o077) !== 0) {
      server.close();
      throw new MarsError('BAD_STATE_DIR', `${this.socketPath}: not a socket of mode 0600 after bind (mode ${(st.mode & 0o777).toString(8)})`);
    }
    this.server = server;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const reader = new LineReader((line) => void this.answer(socket, line));
    socket.on('data', (chunk: Buffer) => {
      if (!reader.push(chunk)) socket.destroy();
    });
  }

  private async answer(socket: Socket, line: string): Promise<void> {
    let id = 0;
    let response: ControlResponse;
    try {
      const request = parseRequest(line);
      id = request.id;
      response = { id, ok: true, result: (await this.handler(request.cmd, request.args)) ?? null };
    } catch (err) {
      const code = err instanceof MarsError ? err.code : 'EIO';
      response = { id, ok: false, code, message: err instanceof Error ? err.message : String(err) };
    }
    if (!socket.destroyed) socket.write(`${JSON.stringify(response, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.socketPath, { force: true });
  }
}

function parseRequest(line: string): ControlRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new MarsError('BAD_REQUEST', 'control request is not valid JSON');
  }
  const p = parsed as { id?: unknown; cmd?: unknown; args?: unknown } | null;
  if (p === null || typeof p !== 'object' || typeof p.id !== 'number' || typeof p.cmd !== 'string' || typeof p.args !== 'object' || p.args === null) {
    throw new MarsError('BAD_REQUEST', 'control request needs id, cmd and args');
  }
  return { id: p.id, cmd: p.cmd, args: p.args as Record<string, unknown> };
}
