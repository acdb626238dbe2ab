/**
 * Shared helpers of the NBD tests: an in-process server over memory exports, backends
 * that hold or fail requests on demand, a raw socket for speaking bytes the client
 * would never send, and process helpers for the real-client tests (every child is
 * killed by its own PID, every wait is bounded).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BlockBackend } from '../../src/nbd/backend.js';
import { ByteQueue } from '../../src/nbd/byte-queue.js';
import type { NbdLimits } from '../../src/nbd/limits.js';
import { MemBackend } from '../../src/nbd/mem-backend.js';
import { NbdServer } from '../../src/nbd/server.js';
import { StaticExportRegistry } from '../../src/nbd/static-registry.js';

export const HOST = '127.0.0.1';
export const WAIT_MS_MAX = 10_000;

export interface TestServer {
  readonly server: NbdServer;
  readonly registry: StaticExportRegistry;
  readonly port: number;
  readonly logs: string[];
  close(): Promise<void>;
}

export async function startServer(
  exports: Record<string, BlockBackend>,
  limits: Partial<NbdLimits> = {},
): Promise<TestServer> {
  const registry = new StaticExportRegistry(Object.entries(exports));
  const logs: string[] = [];
  const server = new NbdServer(registry, { logger: (message) => logs.push(message), limits });
  await server.listen(HOST, 0);
  return { server, registry, port: server.address().port, logs, close: () => server.close() };
}

export async function startMemServer(sizeBytes = 1024 * 1024, limits: Partial<NbdLimits> = {}): Promise<TestServer & { backend: MemBackend }> {
  const backend = new MemBackend(sizeBytes);
  const started = await startServer({ disk: backend }, limits);
  return { ...started, backend };
}

/** Rejects if `promise` takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A MemBackend whose calls can be held until the test releases them. */
export class GatedBackend implements BlockBackend {
  readonly inner: MemBackend;
  readonly canMultiConn: boolean;
  activeCalls = 0;
  activeCallsMax = 0;
  callCount = 0;
  private gates: { match: (op: string, offsetBytes: number) => boolean; waiters: (() => void)[] }[] = [];

  constructor(sizeBytes: number, canMultiConn = true) {
    this.inner = new MemBackend(sizeBytes);
    this.canMultiConn = canMultiConn;
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  /** Holds every later call for which `match` is true until the returned release() is called. */
  hold(match: (op: string, offsetBytes: number) => boolean): { release: () => void; heldCount: () => number } {
    const gate = { match, waiters: [] as (() => void)[] };
    this.gates.push(gate);
    return {
      release: () => {
        this.gates = this.gates.filter((g) => g !== gate);
        for (const wake of gate.waiters) wake();
      },
      heldCount: () => gate.waiters.length,
    };
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.run('read', offsetBytes, () => this.inner.read(offsetBytes, lengthBytes));
  }
  write(offsetBytes: number, data: Buffer): Promise<void> {
    return this.run('write', offsetBytes, () => this.inner.write(offsetBytes, data));
  }
  flush(): Promise<void> {
    return this.run('flush', 0, () => this.inner.flush());
  }
  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.run('trim', offsetBytes, () => this.inner.trim(offsetBytes, lengthBytes));
  }
  writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.run('zero', offsetBytes, () => this.inner.writeZeroes(offsetBytes, lengthBytes));
  }

  private async run<T>(op: string, offsetBytes: number, work: () => Promise<T>): Promise<T> {
    this.callCount += 1;
    this.activeCalls += 1;
    this.activeCallsMax = Math.max(this.activeCallsMax, this.activeCalls);
    try {
      const gate = this.gates.find((g) => g.match(op, offsetBytes));
      if (gate !== undefined) await new Promise<void>((resolve) => gate.waiters.push(resolve));
      return await work();
    } finally {
      this.activeCalls -= 1;
    }
  }
}

/** A backend whose every call fails with the given error (or throws it synchronously). */
export class FailingBackend implements BlockBackend {
  readonly canMultiConn = false;
  constructor(
    readonly sizeBytes: number,
    private readonly error: () => Error,
    private readonly synchronous = false,
  ) {}
  private fail(): Promise<never> {
    const err = this.error();
    if (this.synchronous) throw err;
    return Promise.reject(err);
  }
  read(): Promise<Buffer> {
    return this.fail();
  }
  write(): Promise<void> {
    return this.fail();
  }
  flush(): Promise<void> {
    return this.fail();
  }
  trim(): Promise<void> {
    return this.fail();
  }
  writeZeroes(): Promise<void> {
    return this.fail();
  }
}

/** A plain TCP connection that reads exact byte counts, for raw protocol tests. */
export class RawConnection {
  readonly queue = new ByteQueue();
  closed = false;
  private wake: (() => void) | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      this.wake?.();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  /** Connects to HOST:port, from `localAddress` if given (another 127.0.0.x). */
  static async open(port: number, localAddress?: string): Promise<RawConnection> {
    const socket = net.connect({ host: HOST, port, ...(localAddress === undefined ? {} : { localAddress }) });
    await within(once(socket, 'connect'), WAIT_MS_MAX, 'connect');
    return new RawConnection(socket);
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  /** Exactly n bytes; rejects if the connection closes first. */
  async read(n: number): Promise<Buffer> {
    await within(
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (this.queue.lengthBytes >= n) resolve();
          else if (this.closed) reject(new Error(`connection closed with ${this.queue.lengthBytes} of ${n} bytes`));
          else this.wake = check;
        };
        check();
      }),
      WAIT_MS_MAX,
      `${n} bytes`,
    );
    return this.queue.takeCopy(n);
  }

  /** Resolves once the server has closed the connection; returns the bytes that came before. */
  async untilClosed(): Promise<Buffer> {
    await within(
      new Promise<void>((resolve) => {
        const check = (): void => (this.closed ? resolve() : void (this.wake = check));
        check();
      }),
      WAIT_MS_MAX,
      'the server to close the connection',
    );
    return this.queue.takeCopy(this.queue.lengthBytes);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

// ---- processes ----

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SERVE_MEM_JS = path.join(REPO_ROOT, 'dist/src/nbd/serve-mem.js');

/** The path of an executable in PATH, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface ToolResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion; kills it (by its PID) after msMax. */
export async function runTool(command: string, args: readonly string[], msMax = 60_000, cwd = os.tmpdir()): Promise<ToolResult> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), msMax);
  try {
    const [code] = (await once(child, 'close')) as [number | null];
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

export interface ChildServer {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** Stops a child we started: SIGTERM to its PID, SIGKILL if it lingers. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Starts dist/src/nbd/serve-mem.js on a free port and waits for the port it prints. */
export async function spawnServeMem(args: readonly string[]): Promise<ChildServer> {
  const child = spawn(process.execPath, [SERVE_MEM_JS, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  try {
    const [line] = (await within(once(lines, 'line'), WAIT_MS_MAX, 'serve-mem to print its port')) as [string];
    const { port } = JSON.parse(line) as { port: number };
    return { port, child, stop: () => stopChild(child) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/** A port that was free a moment ago (for tools that cannot listen on port 0 and report it). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, HOST);
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}
