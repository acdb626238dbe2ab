/**
 * Helpers for the real-process daemon tests (test/daemon/): a host directory with a
 * cluster, marsadm calls that must succeed, the daemon's raw status over the control
 * socket, the files of a resource directory, tools and root checks, mounts that are
 * always undone, and background children stopped by PID. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { NbdClient } from '../../src/nbd/client.js';
import { adm } from './adm.js';
import { run, tempDir, waitFor, type Marsd, type RunResult } from './processes.js';

export const hostName = 'alpha';
export const KiB = 1024;
export const MiB = 1024 * KiB;

/** A fresh temporary directory prepared by `marsadm create-cluster` (host `alpha`). */
export async function newHostDir(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  await mustMarsadm(dir, 'create-cluster', '--host', hostName, '--listen', '127.0.0.1:7777');
  return dir;
}

/** Runs marsadm (in this process: support/adm.ts) and asserts exit 0; returns stdout. */
export async function mustMarsadm(dir: string, ...args: string[]): Promise<string> {
  const result = await adm(dir, ...args);
  assert.equal(result.code, 0, `marsadm ${args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`);
  return result.stdout;
}

export function resourceDir(dir: string, name: string): string {
  return join(dir, `resource-${name}`);
}

export function logName(logNumber: number, host = hostName): string {
  return `log-${String(logNumber).padStart(9, '0')}-${host}`;
}

/** The log files of a resource, sorted by name (= by number for one host). */
export async function logFilesOf(dir: string, name: string): Promise<string[]> {
  return (await readdir(resourceDir(dir, name))).filter((f) => /^log-\d{9}-/.test(f)).sort();
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}

export interface PositionFile {
  formatVersion: number;
  logNumber: number;
  logHost: string;
  offsetBytes: number;
  nextSeq: string;
}

export function positionPath(dir: string, name: string, host = hostName): string {
  return join(resourceDir(dir, name), `replay-${host}`);
}

export async function readPositionFile(dir: string, name: string, host = hostName): Promise<PositionFile> {
  return JSON.parse(await readFile(positionPath(dir, name, host), 'utf8')) as PositionFile;
}

/** Rewrites `replay-HOST` (the daemon must not be running). */
export async function writePositionFile(dir: string, name: string, position: PositionFile, host = hostName): Promise<void> {
  await writeFile(positionPath(dir, name, host), `${JSON.stringify(position, null, 2)}\n`);
}

/** The daemon's status answer as it comes over the control socket (bigints are strings). */
export interface RawPosition {
  logNumber: number;
  logHost: string;
  offsetBytes: number;
  nextSeq: string;
}

export interface RawResourceStatus {
  name: string;
  sizeBytes: number;
  devicePath: string;
  primary: string;
  state: 'recovering' | 'serving' | 'failed' | 'stopped';
  failure?: string | null;
  logger?: {
    logPosition: RawPosition;
    writtenBack: RawPosition;
    shadowBytes: number;
    shadowExtents: number;
    writesWaiting: number;
    appendedRecords: number;
    appendedBytes: number;
    writebackRounds: number;
    failure?: string | null;
    /** Why the last save of the writeback position failed (none since: undefined). */
    positionError?: string | null;
  } | null;
  recovery?: {
    start: RawPosition;
    replayedRecords: number;
    replayedBytes: number;
    tornTail?: { logName: string; offsetBytes: number; reason: string } | null;
  } | null;
  logFiles: { name: string; sizeBytes: number }[];
}

export interface RawHostStatus {
  host: string;
  nbd: string;
  resources: RawResourceStatus[];
}

/** The raw `view` answer of the daemon for one resource. */
export async function rawStatus(dir: string, name: string): Promise<RawResourceStatus> {
  const answer = (await callDaemon(join(dir, 'control.sock'), 'view', { name }, 30_000)) as RawHostStatus;
  const r = answer.resources.find((x) => x.name === name);
  assert.ok(r !== undefined, `view ${name}: resource missing from ${JSON.stringify(answer)}`);
  return r;
}

/** Waits until the written-back position equals the log position (everything on the device). */
export async function waitWrittenBack(dir: string, name: string, timeoutMs = 30_000): Promise<RawResourceStatus> {
  let last: RawResourceStatus | undefined;
  await waitFor(
    `${name} written back`,
    async () => {
      last = await rawStatus(dir, name);
      const l = last.logger;
      return l !== undefined && l !== null && l.shadowBytes === 0 && l.writtenBack.nextSeq === l.logPosition.nextSeq;
    },
    timeoutMs,
  );
  return last!;
}

export function connectExport(daemon: Marsd, name: string): Promise<NbdClient> {
  return NbdClient.connect({ host: '127.0.0.1', port: daemon.nbdPort, exportName: name });
}

/** The daemon's stderr as parsed pino lines (non-JSON lines are kept as { msg }). */
export function stderrLines(daemon: Marsd): { level?: number; msg?: string; [key: string]: unknown }[] {
  return daemon
    .stderr()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as { level?: number; msg?: string };
      } catch {
        return { msg: l };
      }
    });
}

/** The absolute path of an executable on PATH (or in the sbin directories), else undefined. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (d === '') continue;
    const p = join(d, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Why a root-only test cannot run here, or undefined when it can. */
export function rootSkipReason(tools: readonly string[], devices: readonly string[] = []): string | undefined {
  if (!isRoot()) return 'needs root (mount)';
  const missing = tools.filter((t) => findTool(t) === undefined);
  if (missing.length > 0) return `missing tools: ${missing.join(', ')}`;
  const absent = devices.filter((d) => !existsSync(d));
  if (absent.length > 0) return `missing devices: ${absent.join(', ')}`;
  return undefined;
}

/** Runs a command and asserts exit 0. */
export async function mustRun(command: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  const result = await run(command, args, { timeoutMs });
  assert.equal(result.code, 0, `${command} ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** True when `path` is a mount point (per /proc/self/mountinfo). */
export async function isMountPoint(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === path);
}

/**
 * Unmounts `path` if it is mounted: a normal umount first, then a lazy one. Never throws
 * (used in finally blocks); returns what happened, for diagnostics.
 */
export async function unmountQuietly(path: string, command = 'umount'): Promise<string> {
  try {
    if (!(await isMountPoint(path))) return 'not mounted';
    const plain = await run(command, command === 'umount' ? [path] : ['-u', path], { timeoutMs: 30_000 });
    if (plain.code === 0 && !(await isMountPoint(path))) return 'unmounted';
    const lazy = await run('umount', ['-l', path], { timeoutMs: 30_000 });
    return `lazy unmount (exit ${lazy.code}) after: ${plain.stderr.trim()}`;
  } catch (err) {
    return `unmount failed: ${(err as Error).message}`;
  }
}

/** A child process in the background, stopped by its PID. */
export interface Background {
  readonly child: ChildProcess;
  readonly exited: Promise<number>;
  output(): string;
  /** Sends `signal` (if still running) and waits at most `timeoutMs`, then SIGKILL. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number>;
}

export function startBackground(command: string, args: string[]): Background {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  let gone = false;
  const isGone = (): boolean => gone;
  const exited = new Promise<number>((resolve) => {
    child.on('error', (err) => {
      output += `spawn error: ${err.message}\n`;
      gone = true;
      resolve(-1);
    });
    child.on('exit', (code, signal) => {
      gone = true;
      resolve(code ?? (signal === null ? -1 : 128));
    });
  });
  return {
    child,
    exited,
    output: () => output,
    stop: async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000) => {
      if (gone) return exited;
      child.kill(signal);
      const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref());
      if ((await Promise.race([exited, timer])) === 'timeout' && !isGone()) child.kill('SIGKILL');
      return exited;
    },
  };
}

/** Resolves when `p` settles or after `ms`, whichever is first (for bounded cleanup). */
export async function settleWithin<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
