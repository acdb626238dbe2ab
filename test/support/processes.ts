/**
 * Helpers for tests and the demo that run real marsd and marsadm processes: a temporary
 * state directory, a daemon started and stopped by PID, marsadm calls with their exit
 * codes. Every wait is bounded; nothing is killed that was not started here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, open } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { traceTestStep, waitFor } from './wait.js';

/** The repository root (this file is dist/test/support/processes.js when compiled). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const marsadmPath = join(repoRoot, 'bin', 'marsadm');
export const marsdPath = join(repoRoot, 'bin', 'marsd');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function run(command: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const startMs = Date.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      traceTestStep('run', `${command.replace(/.*\//, '')} ${args.map((a) => a.replace(/.*\/(?=[^/]+$)/, '')).join(' ')}`, startMs);
      resolvePromise({ code: code ?? (signal === null ? -1 : 128), stdout, stderr });
    });
  });
}

export function marsadm(dir: string, ...args: string[]): Promise<RunResult> {
  return run(process.execPath, [marsadmPath, '--dir', dir, ...args]);
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A sparse file of the given size. */
export async function sparseFile(path: string, sizeBytes: number): Promise<string> {
  const handle = await open(path, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
  return path;
}

/**
 * Ports freePort has handed out in this process, per address. A port is only bound later by
 * the daemon it is meant for, so until then the kernel may offer it again (a host's peer
 * port picked at newHost, its NBD port at startMarsd): never hand out the same one twice.
 */
const portsGiven = new Map<string, Set<number>>();
/** Ports tried (taken, or handed out already) before freePort gives up. */
const freePortTriesMax = 64;

/**
 * The range freePort picks from: below the kernel's ephemeral ports (net.ipv4.ip_local_port_range,
 * 32768–60999 by default), which every outgoing connection of every process takes its local
 * port from. A port picked there (bind to 0) could be taken by any connection while its daemon
 * is down, and its restart after a kill -9 failed with EADDRINUSE; below, only a listener
 * takes it.
 */
function testPortRange(): { min: number; max: number } {
  let ephemeralMin = 32_768;
  try {
    ephemeralMin = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralMin;
  } catch {
    // not Linux: the default range
  }
  return { min: 20_000, max: Math.max(20_000 + 1_000, Math.min(ephemeralMin - 1, 32_767)) };
}

/** A free TCP port on the given loopback address (picked at random below the ephemeral ports, bound once to check, closed), never one this process handed out before. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const { createServer } = await import('node:net');
  const given = portsGiven.get(host) ?? new Set<number>();
  portsGiven.set(host, given);
  const range = testPortRange();
  for (let tries = 0; tries < freePortTriesMax; tries++) {
    const port = range.min + randomInt(range.max - range.min + 1);
    if (given.has(port)) continue;
    const free = await new Promise<boolean>((resolvePromise) => {
      const server = createServer();
      server.once('error', () => resolvePromise(false));
      server.listen(port, host, () => server.close(() => resolvePromise(true)));
    });
    if (free) {
      given.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no free port found on ${host} in ${freePortTriesMax} tries between ${range.min} and ${range.max}`);
}

export { waitFor } from './wait.js';

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const s = connect(path);
    s.on('connect', () => {
      s.destroy();
      resolvePromise(true);
    });
    s.on('error', () => resolvePromise(false));
  });
}

export interface Marsd {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly nbdPort: number;
  stderr(): string;
  /** Resolves with the exit code (or 128+signal). */
  exited: Promise<number>;
  /** SIGTERM and wait for a clean exit. */
  stop(): Promise<number>;
  /** kill -9. */
  kill9(): Promise<number>;
}

/**
 * The daemon intervals (MARS_INTERVALS, src/daemon/daemon-intervals.ts) every test daemon
 * runs with: indicators refreshed and failed fetches retried ten times as often as in
 * production, so that a test waits for the state it checks, not for a timer. A test that
 * sets MARS_INTERVALS itself keeps its own.
 */
export const testDaemonIntervals = 'indicatorRefreshMs=500,fetchRetryMs=500';

/** marsd's environment: MARS_INTERVALS as above, then `intervals` (`NAME=MS,…`: later entries win). */
function marsdEnv(intervals: string | undefined): NodeJS.ProcessEnv {
  const base = process.env['MARS_INTERVALS'] ?? testDaemonIntervals;
  return { ...process.env, MARS_INTERVALS: intervals === undefined ? base : `${base},${intervals}` };
}

/** How long marsd may take to answer on its control socket after it is spawned. */
const startTimeoutMs = 20_000;
/**
 * How often a starting marsd's control socket is looked for: the main lane starts marsd
 * some two hundred times, and each waits on average half of this after its socket answers.
 */
const startPollMs = 10;

/**
 * Starts marsd. `prefix` runs it through another command that execs it (e.g. `ip netns
 * exec NS`), so that the child's PID is still marsd's.
 */
export async function startMarsd(dir: string, options: { nbdHost?: string; nbdPort?: number; extraArgs?: string[]; prefix?: readonly string[]; intervals?: string } = {}): Promise<Marsd> {
  const nbdHost = options.nbdHost ?? '127.0.0.1';
  const nbdPort = options.nbdPort ?? (await freePort(nbdHost));
  const args = ['--dir', dir, '--nbd', `${nbdHost}:${nbdPort}`, ...(options.extraArgs ?? [])];
  const prefix = options.prefix ?? [];
  const env = marsdEnv(options.intervals);
  const child = prefix.length === 0 ? spawn(marsdPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env }) : spawn(prefix[0]!, [...prefix.slice(1), marsdPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolvePromise) => {
    child.on('exit', (code, signal) => resolvePromise(code ?? (signal === 'SIGKILL' ? 137 : 128)));
  });
  let gone = false;
  void exited.then(() => (gone = true));
  const sock = join(dir, 'control.sock');
  const startMs = Date.now();
  // Looked at every startPollMs: until the socket file appears, a look is one stat.
  await waitFor(
    'marsd to open its control socket',
    async () => {
      if (gone) throw new Error(`marsd exited during start:\n${stderr}`);
      return existsSync(sock) && (await socketAnswers(sock));
    },
    startTimeoutMs,
    startPollMs,
  );
  traceTestStep('marsd', dir, startMs);
  return {
    child,
    dir,
    nbdPort,
    stderr: () => stderr,
    exited,
    stop: async () => {
      if (!gone) child.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      if (!gone) child.kill('SIGKILL');
      return exited;
    },
  };
}
