/**
 * Helpers for the multi-host tests (test/cluster/): hosts on 127.0.0.N, each with its own
 * state directory, peer port and NBD port; marsd processes started and killed by PID;
 * what a host's metadata files and `view-hosts` say. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, marsadm, removeDir, startMarsd, tempDir, waitFor, type Marsd, type RunResult } from './processes.js';

export interface TestHost {
  readonly name: string;
  readonly ip: string;
  readonly dir: string;
  readonly listen: string;
  daemon: Marsd | undefined;
}

/** A temporary root holding one state directory per host. */
export async function clusterRoot(prefix: string): Promise<string> {
  return tempDir(prefix);
}

/** A host on `ip` with a free peer port; not yet in a cluster. */
export async function newHost(root: string, name: string, ip: string): Promise<TestHost> {
  const port = await freePort(ip);
  return { name, ip, dir: join(root, name), listen: `${ip}:${port}`, daemon: undefined };
}

export async function must(result: Promise<RunResult>, what: string): Promise<string> {
  const r = await result;
  assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

export async function createCluster(host: TestHost): Promise<void> {
  await must(marsadm(host.dir, 'create-cluster', '--host', host.name, '--listen', host.listen), `create-cluster ${host.name}`);
}

export function secretFile(host: TestHost): string {
  return join(host.dir, 'cluster.secret');
}

export async function joinCluster(host: TestHost, via: TestHost, secretOf: TestHost = via, ...extra: string[]): Promise<RunResult> {
  return marsadm(host.dir, 'join-cluster', via.listen, '--host', host.name, '--listen', host.listen, '--secret-file', secretFile(secretOf), ...extra);
}

export async function start(host: TestHost, extraArgs: string[] = []): Promise<Marsd> {
  host.daemon = await startMarsd(host.dir, { nbdHost: host.ip, extraArgs });
  return host.daemon;
}

/** Stops every daemon still running (SIGTERM, then kill -9 after a while) and removes the root. */
export async function cleanup(root: string, hosts: readonly TestHost[]): Promise<void> {
  for (const host of hosts) {
    const daemon = host.daemon;
    if (daemon === undefined) continue;
    const stopped = await Promise.race([daemon.stop(), new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 10_000).unref())]);
    if (stopped === 'late') await daemon.kill9();
    host.daemon = undefined;
  }
  await removeDir(root);
}

export interface HostLine {
  readonly name: string;
  readonly address: string;
  readonly state: string;
}

export async function viewHosts(host: TestHost): Promise<HostLine[]> {
  const out = await must(marsadm(host.dir, 'view-hosts'), `view-hosts on ${host.name}`);
  return out
    .trim()
    .split('\n')
    .map((line) => {
      const [name, address, state] = line.split(' ');
      return { name: name ?? '', address: address ?? '', state: state ?? '' };
    });
}

/** Waits until `view-hosts` on `host` says exactly `expected` (name -> state). */
export async function waitHosts(host: TestHost, expected: Record<string, string>, timeoutMs = 20_000): Promise<void> {
  let last: HostLine[] = [];
  const want = JSON.stringify(Object.entries(expected).sort());
  await waitFor(
    `view-hosts on ${host.name} to say ${want}`,
    async () => {
      last = await viewHosts(host);
      return JSON.stringify(last.map((l) => [l.name, l.state]).sort()) === want;
    },
    timeoutMs,
    100,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last: ${JSON.stringify(last)}`);
  });
}

export interface MetaFileEntry {
  readonly value: unknown;
  readonly lamport: string;
  readonly owner: string;
  readonly deleted: boolean;
}

/** The entries of one metadata file of a host (`cluster.json`, `resource-R.json`), or undefined if absent. */
export async function metaFile(host: TestHost, file: string): Promise<Record<string, MetaFileEntry> | undefined> {
  let text: string;
  try {
    text = await readFile(join(host.dir, 'meta', file), 'utf8');
  } catch {
    return undefined;
  }
  return (JSON.parse(text) as { entries: Record<string, MetaFileEntry> }).entries;
}

/** The live value of a key in a host's metadata files (undefined if absent or deleted). */
export async function metaValue(host: TestHost, key: string): Promise<unknown> {
  const parts = key.split('/');
  const file = parts[0] === 'cluster' ? 'cluster.json' : `resource-${parts[1] ?? ''}.json`;
  const entry = (await metaFile(host, file))?.[key];
  return entry === undefined || entry.deleted ? undefined : entry.value;
}

export async function waitCluster(host: TestHost, timeoutSeconds = 20): Promise<string> {
  return must(marsadm(host.dir, 'wait-cluster', '--timeout', String(timeoutSeconds)), `wait-cluster on ${host.name}`);
}

/** A host record value without its public key (which differs on every run). */
export function recordFields(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).filter(([field]) => field !== 'signKey'));
}
