/**
 * Helpers for the multi-host tests (test/cluster/): hosts on 127.0.0.N, each with its own
 * state directory, peer port and NBD port; marsd processes started and killed by PID;
 * what a host's metadata files and `view-hosts` say. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { adm } from './adm.js';
import { freePort, removeDir, startMarsd, tempDir, waitFor, type Marsd, type RunResult } from './processes.js';
import { traceTestStep } from './wait.js';

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
  await must(adm(host.dir, 'create-cluster', '--host', host.name, '--listen', host.listen), `create-cluster ${host.name}`);
}

export function secretFile(host: TestHost): string {
  return join(host.dir, 'cluster.secret');
}

export async function joinCluster(host: TestHost, via: TestHost, secretOf: TestHost = via, ...extra: string[]): Promise<RunResult> {
  return adm(host.dir, 'join-cluster', via.listen, '--host', host.name, '--listen', host.listen, '--secret-file', secretFile(secretOf), ...extra);
}

/** How `startTestCluster` sets up its hosts; every field is optional. */
export interface TestClusterOptions<H extends TestHost = TestHost> {
  /** Host names, in order; the first creates the cluster (default alpha, beta, gamma …). */
  readonly names?: readonly string[];
  /** Turns a new host into the test's kind of host (e.g. with a metrics or advertised address). */
  readonly extend?: (host: TestHost, index: number) => Promise<H> | H;
  /** Runs for each host before anything is created (e.g. mounts a tmpfs on its directory). */
  readonly prepare?: (host: H, index: number) => Promise<void>;
  /** marsd's extra arguments for each host. */
  readonly marsdArgs?: (host: H, index: number) => string[];
  /** MARS_INTERVALS entries (`NAME=MS,…`) over the test defaults, for every host's first start. */
  readonly intervals?: string;
  /** create-cluster's and join-cluster's extra arguments for each host (e.g. --advertise). */
  readonly joinArgs?: (host: H, index: number) => string[];
  /** What the joiners dial (default the first host's listen address). */
  readonly joinVia?: (first: H) => string;
  readonly waitHostsMsMax?: number;
  /** Called with the hosts as they are made, so that a caller can stop what started if the setup fails. */
  readonly onHost?: (host: H) => void;
}

export const testHostNames: readonly string[] = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];

/**
 * The one cluster fixture: `count` hosts on 127.0.0.1, .2 … in one cluster, all running
 * and each seeing every other alive. The joins go one after another (as an operator's
 * would); the joined daemons start together, and every host's view is awaited together.
 * The marsadm commands of the setup run in this process (support/adm.ts).
 */
export async function startTestCluster<H extends TestHost = TestHost>(prefix: string, count: number, options: TestClusterOptions<H> = {}): Promise<{ root: string; hosts: H[] }> {
  const names = options.names ?? testHostNames;
  const root = await clusterRoot(prefix);
  const hosts: H[] = [];
  for (let i = 0; i < count; i++) {
    const plain = await newHost(root, names[i]!, `127.0.0.${i + 1}`);
    const host = options.extend === undefined ? (plain as H) : await options.extend(plain, i);
    hosts.push(host);
    options.onHost?.(host);
  }
  for (const [i, h] of hosts.entries()) await options.prepare?.(h, i);
  const argsOf = (h: H, i: number): string[] => options.marsdArgs?.(h, i) ?? [];
  const joinArgsOf = (h: H, i: number): string[] => options.joinArgs?.(h, i) ?? [];
  const first = hosts[0]!;
  await must(adm(first.dir, 'create-cluster', '--host', first.name, '--listen', first.listen, ...joinArgsOf(first, 0)), `create-cluster ${first.name}`);
  await start(first, argsOf(first, 0), options.intervals);
  const via = options.joinVia?.(first) ?? first.listen;
  for (const [i, h] of hosts.entries()) {
    if (i === 0) continue;
    const joined = await adm(h.dir, 'join-cluster', via, '--host', h.name, '--listen', h.listen, '--secret-file', secretFile(first), ...joinArgsOf(h, i));
    assert.equal(joined.code, 0, `join-cluster ${h.name}: ${joined.stderr}`);
  }
  await Promise.all(hosts.slice(1).map((h, i) => start(h, argsOf(h, i + 1), options.intervals)));
  const all = Object.fromEntries(hosts.map((h) => [h.name, 'alive']));
  await Promise.all(hosts.map((h) => waitHosts(h, all, options.waitHostsMsMax)));
  return { root, hosts };
}

/** Starts the host's marsd; `intervals` are MARS_INTERVALS entries over the test defaults. */
export async function start(host: TestHost, extraArgs: string[] = [], intervals?: string): Promise<Marsd> {
  host.daemon = await startMarsd(host.dir, { nbdHost: host.ip, extraArgs, ...(intervals === undefined ? {} : { intervals }) });
  return host.daemon;
}

/** How long a daemon may take to stop cleanly at the end of a test before it gets kill -9. */
export const stopMsMax = 10_000;

/** Stops every daemon still running, all at once (SIGTERM, then kill -9 after stopMsMax). */
export async function stopAll(hosts: readonly TestHost[]): Promise<void> {
  const startMs = Date.now();
  await Promise.all(
    hosts.map(async (host) => {
      const daemon = host.daemon;
      if (daemon === undefined) return;
      const stopped = await Promise.race([daemon.stop(), new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), stopMsMax).unref())]);
      if (stopped === 'late') await daemon.kill9();
      host.daemon = undefined;
    }),
  );
  traceTestStep('stop', hosts.map((h) => h.name).join(' '), startMs);
}

/** Stops every daemon still running (stopAll) and removes the root. */
export async function cleanup(root: string, hosts: readonly TestHost[]): Promise<void> {
  await stopAll(hosts);
  const startMs = Date.now();
  await removeDir(root);
  traceTestStep('rm', root, startMs);
}

export interface HostLine {
  readonly name: string;
  readonly address: string;
  readonly state: string;
}

/**
 * What `marsadm view-hosts` lists, asked over the control socket: the same request, without
 * a marsadm process per poll (test/cli checks what marsadm prints).
 */
export async function viewHosts(host: TestHost): Promise<HostLine[]> {
  const answer = (await callDaemon(join(host.dir, 'control.sock'), 'view-hosts', {}, 30_000)) as { hosts: { host: string; address: string; state: string }[] };
  return answer.hosts.map((h) => ({ name: h.host, address: h.address, state: h.state }));
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
  return must(adm(host.dir, 'wait-cluster', '--timeout', String(timeoutSeconds)), `wait-cluster on ${host.name}`);
}

/** A host record value without its public key (which differs on every run). */
export function recordFields(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).filter(([field]) => field !== 'signKey'));
}
