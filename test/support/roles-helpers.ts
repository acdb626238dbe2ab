/**
 * Helpers for the role tests (test/roles/): kill -9 of a host's daemon (started here, by
 * PID), `view-MACRO` values and the split-brain verdict of each host, whether a host
 * offers a resource's NBD export, waiting until exactly one host serves, a light write
 * load, and a network topology for split brain across a partition: alpha alone in one
 * namespace, beta and gamma in another, a cuttable replication link between them and an
 * uncut NBD link from the root namespace into each. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { MacroName } from '../../src/cli/view-format.js';
import { callDaemon } from '../../src/control/client.js';
import type { Random } from '../../src/core/random.js';
import { NbdClient } from '../../src/nbd/client.js';
import { findTool, isRoot } from './daemon-helpers.js';
import { adm } from './adm.js';
import { marsadmPath, run, startMarsd, waitFor } from './processes.js';
import { must, waitHosts, type TestHost } from './cluster-helpers.js';
import { readExport, randomWrites, status, viewMacro, type ReplStatus } from './replication-helpers.js';

/** kill -9 of the host's daemon (started by this test); waits for its exit. */
export async function kill9(host: TestHost): Promise<void> {
  const daemon = host.daemon;
  assert.ok(daemon !== undefined, `${host.name} is not running`);
  host.daemon = undefined;
  await daemon.kill9();
}

/** What `marsadm view-MACRO R` prints on the host, trimmed (fails the test if the daemon does not answer). */
export async function view(host: TestHost, macro: MacroName, name: string): Promise<string> {
  return viewMacro(host, macro, name);
}

/** What a switch command sends, straight over the control socket (faster than a marsadm process). */
export async function setSwitch(host: TestHost, name: string, which: 'fetch' | 'replay' | 'sync', on: boolean): Promise<void> {
  await callDaemon(join(host.dir, 'control.sock'), 'switch', { name, switch: which, on }, 30_000);
}

export interface SplitBrainJson {
  atLog: number;
  atOffsetBytes?: number;
  sides: { origin: string; hosts: string[]; lossBytes: number }[];
  undecided: string[];
  reports: { host: string; reason: string }[];
}

/** The daemon's raw view of R with its split-brain verdict. */
export async function splitBrainSeenBy(host: TestHost, name: string): Promise<SplitBrainJson | null> {
  return ((await status(host, name)) as ReplStatus & { splitBrain?: SplitBrainJson | null }).splitBrain ?? null;
}

/** Waits until `view-is-split-brain R` says `want` on every given host; returns the raw verdicts. */
export async function waitSplitBrain(hosts: readonly TestHost[], name: string, want: '0' | '1', timeoutMs = 45_000): Promise<Map<string, SplitBrainJson | null>> {
  let last = new Map<string, string>();
  await waitFor(
    `view-is-split-brain ${name} to say ${want} on ${hosts.map((h) => h.name).join(', ')}`,
    async () => {
      last = new Map();
      for (const h of hosts) last.set(h.name, await view(h, 'is-split-brain', name));
      return [...last.values()].every((v) => v === want);
    },
    timeoutMs,
    250,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last: ${JSON.stringify([...last])}`);
  });
  const verdicts = new Map<string, SplitBrainJson | null>();
  for (const h of hosts) verdicts.set(h.name, await splitBrainSeenBy(h, name));
  return verdicts;
}

/** Whether the host's NBD server offers R: listed, and a client can connect to it. */
export async function offersExport(host: TestHost, name: string): Promise<{ listed: boolean; connects: boolean }> {
  const port = host.daemon?.nbdPort;
  if (port === undefined) return { listed: false, connects: false };
  const listed = (await NbdClient.list({ host: host.ip, port, handshakeMsMax: 5_000 }).catch(() => [] as string[])).includes(name);
  const client = await NbdClient.connect({ host: host.ip, port, exportName: name, handshakeMsMax: 5_000 }).catch(() => undefined);
  await client?.close().catch(() => undefined);
  return { listed, connects: client !== undefined };
}

/** `view-is-primary R` of every running host (a stopped one counts as '0'). */
export async function primaries(hosts: readonly TestHost[], name: string): Promise<string[]> {
  const serving: string[] = [];
  for (const h of hosts) {
    if (h.daemon === undefined) continue;
    const isPrimary = await viewMacro(h, 'is-primary', name).catch(() => '0');
    if (isPrimary === '1') serving.push(h.name);
  }
  return serving;
}

/** Waits until exactly one host says view-is-primary 1 (and stays so for a moment); returns it. */
export async function waitOnePrimary(hosts: readonly TestHost[], name: string, timeoutMs = 60_000): Promise<TestHost> {
  let last: string[] = [];
  let stableSince = 0;
  await waitFor(
    `exactly one host to serve ${name}`,
    async () => {
      const now = await primaries(hosts, name);
      const same = now.length === 1 && last.length === 1 && now[0] === last[0];
      last = now;
      if (!same) stableSince = Date.now();
      return same && Date.now() - stableSince >= 500;
    },
    timeoutMs,
    200,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last: [${last.join(', ')}]`);
  });
  return hosts.find((h) => h.name === last[0])!;
}

/** The whole export of R as `host` serves it now (connect, read, close). */
export async function exportImage(host: TestHost, name: string, sizeBytes: number): Promise<Buffer> {
  assert.ok(host.daemon !== undefined, `${host.name} is not running`);
  const client = await NbdClient.connect({ host: host.ip, port: host.daemon.nbdPort, exportName: name });
  try {
    return await readExport(client, sizeBytes);
  } finally {
    await client.close();
  }
}

/** `count` seeded random writes to R on `host`, flushed; the client is closed afterwards. */
export async function writeSome(host: TestHost, name: string, sizeBytes: number, count: number, random: Random): Promise<void> {
  assert.ok(host.daemon !== undefined, `${host.name} is not running`);
  const client = await NbdClient.connect({ host: host.ip, port: host.daemon.nbdPort, exportName: name });
  try {
    await randomWrites(client, sizeBytes, count, random);
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------
// Network namespaces for a partition of three hosts.

/** Why namespaces cannot be used here, or undefined when they can (ROLES_NO_NETNS=1 forces the portable path). */
export async function rolesNetnsSkipReason(): Promise<string | undefined> {
  if (process.env['ROLES_NO_NETNS'] === '1') return 'ROLES_NO_NETNS=1';
  if (!isRoot()) return 'needs root (network namespaces)';
  if (findTool('ip') === undefined) return 'needs the ip tool (iproute2)';
  const probe = `mars-rprobe-${process.pid}`;
  const added = await run('ip', ['netns', 'add', probe], { timeoutMs: 10_000 });
  if (added.code !== 0) return `ip netns is not available here: ${added.stderr.trim()}`;
  await run('ip', ['netns', 'del', probe], { timeoutMs: 10_000 });
  return undefined;
}

export interface SplitNet {
  /** alpha's namespace (0) and beta's and gamma's (1). */
  readonly namespaces: readonly [string, string];
  /** Replication addresses in namespace 0 and 1. */
  readonly peerAddresses: readonly [string, string];
  /** The NBD addresses in namespace 0 and 1, reached from the root namespace. */
  readonly nbdAddresses: readonly [string, string];
  inNs(i: 0 | 1): string[];
  /** The replication link goes down (its end in namespace 0): alpha is cut from beta and gamma. */
  cut(): Promise<void>;
  heal(): Promise<void>;
  tearDown(): Promise<void>;
}

async function ip(...args: string[]): Promise<void> {
  const r = await run('ip', args, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** Two namespaces, a replication veth between them and an NBD veth from the root namespace into each. `tag`: 2 letters. */
export async function createSplitNet(tag: string): Promise<SplitNet> {
  const pid = process.pid;
  const suffix = String(pid % 100_000);
  const namespaces = [`mars-${tag}0-${pid}`, `mars-${tag}1-${pid}`] as const;
  const repl = [`m${tag}a${suffix}`, `m${tag}b${suffix}`] as const;
  const nbdInNs = [`m${tag}n${suffix}`, `m${tag}m${suffix}`] as const;
  const nbdInRoot = [`m${tag}r${suffix}`, `m${tag}s${suffix}`] as const;
  const peerAddresses = ['10.199.77.1', '10.199.77.2'] as const;
  const subnets = [`10.207.${pid % 250}`, `10.208.${pid % 250}`] as const;
  const tearDown = async (): Promise<void> => {
    for (const ns of namespaces) await run('ip', ['netns', 'del', ns], { timeoutMs: 10_000 }).catch(() => undefined);
    for (const link of nbdInRoot) await run('ip', ['link', 'del', link], { timeoutMs: 10_000 }).catch(() => undefined);
  };
  try {
    for (const ns of namespaces) await ip('netns', 'add', ns);
    await ip('link', 'add', repl[0], 'type', 'veth', 'peer', 'name', repl[1]);
    for (const i of [0, 1] as const) {
      await ip('link', 'set', repl[i], 'netns', namespaces[i]);
      await ip('-n', namespaces[i], 'addr', 'add', `${peerAddresses[i]}/24`, 'dev', repl[i]);
      await ip('-n', namespaces[i], 'link', 'set', repl[i], 'up');
      await ip('-n', namespaces[i], 'link', 'set', 'lo', 'up');
      await ip('link', 'add', nbdInRoot[i], 'type', 'veth', 'peer', 'name', nbdInNs[i]);
      await ip('link', 'set', nbdInNs[i], 'netns', namespaces[i]);
      await ip('-n', namespaces[i], 'addr', 'add', `${subnets[i]}.2/24`, 'dev', nbdInNs[i]);
      await ip('-n', namespaces[i], 'link', 'set', nbdInNs[i], 'up');
      await ip('addr', 'add', `${subnets[i]}.1/24`, 'dev', nbdInRoot[i]);
      await ip('link', 'set', nbdInRoot[i], 'up');
    }
  } catch (err) {
    await tearDown();
    throw err;
  }
  return {
    namespaces,
    peerAddresses,
    nbdAddresses: [`${subnets[0]}.2`, `${subnets[1]}.2`],
    inNs: (i) => ['ip', 'netns', 'exec', namespaces[i]],
    cut: () => ip('-n', namespaces[0], 'link', 'set', repl[0], 'down'),
    heal: () => ip('-n', namespaces[0], 'link', 'set', repl[0], 'up'),
    tearDown,
  };
}

/** A host of the split net: peers on `peerAddress:peerPort` in namespace `ns`, NBD on `nbdAddress:nbdPort`. */
export interface NsHost extends TestHost {
  readonly ns: 0 | 1;
  readonly nbdPort: number;
}

export function nsHost(root: string, net: SplitNet, name: string, ns: 0 | 1, peerPort: number, nbdPort: number): NsHost {
  return { name, ip: net.nbdAddresses[ns], dir: join(root, name), listen: `${net.peerAddresses[ns]}:${peerPort}`, daemon: undefined, ns, nbdPort };
}

/** Starts (or restarts) the host's marsd inside its namespace. */
export async function startInNs(net: SplitNet, host: NsHost): Promise<void> {
  host.daemon = await startMarsd(host.dir, { nbdHost: host.ip, nbdPort: host.nbdPort, prefix: net.inNs(host.ns) });
}

/** create-cluster on the first host, join-cluster (run inside its namespace) on the others; all started. */
export async function startNsCluster(net: SplitNet, hosts: readonly NsHost[]): Promise<void> {
  const first = hosts[0]!;
  await must(adm(first.dir, 'create-cluster', '--host', first.name, '--listen', first.listen), 'create-cluster');
  await startInNs(net, first);
  for (const h of hosts.slice(1)) {
    const args = [...net.inNs(h.ns).slice(1), process.execPath, marsadmPath, '--dir', h.dir, 'join-cluster', first.listen, '--host', h.name, '--listen', h.listen, '--secret-file', join(first.dir, 'cluster.secret')];
    const joined = await run('ip', args, { timeoutMs: 30_000 });
    assert.equal(joined.code, 0, `join-cluster ${h.name}: ${joined.stderr}`);
    await startInNs(net, h);
  }
  const all = Object.fromEntries(hosts.map((h) => [h.name, 'alive']));
  for (const h of hosts) await waitHosts(h, all, 30_000);
}

/** Runs `body`; if it fails, prints what each host's daemon says of R and the end of its log first. */
export async function explainFailure<T>(diagnostic: (message: string) => void, hosts: readonly TestHost[], name: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    for (const h of hosts) {
      const s = h.daemon === undefined ? 'not running' : await status(h, name).then((x) => JSON.stringify({ primary: x.primary, state: x.state, failure: x.failure, replica: x.replica, members: x.members }), (e: unknown) => `view failed: ${(e as Error).message}`);
      diagnostic(`${h.name}: ${s}`);
      const lines = (h.daemon?.stderr() ?? '').trim().split('\n');
      for (const line of lines.slice(-25)) diagnostic(`${h.name} log: ${line}`);
    }
    throw err;
  }
}

/** The log files of R in a host's directory with their sizes, in log order. */
export async function logSizes(host: TestHost, name: string): Promise<Map<string, number>> {
  const dir = join(host.dir, `resource-${name}`);
  const sizes = new Map<string, number>();
  for (const f of (await readdir(dir)).filter((x) => x.startsWith('log-')).sort()) sizes.set(f, (await stat(join(dir, f))).size);
  return sizes;
}
