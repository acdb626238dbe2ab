/**
 * A cluster of real daemons on 127.0.0.N whose peer traffic all passes through a link
 * emulator (test/support/link-emulator.ts): each host listens on its own address and
 * advertises the emulator's front for it (`--advertise`), so every connection between
 * hosts (metadata, join, fetch, sync) crosses an emulated link.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { NbdClient } from '../../src/nbd/client.js';
import { marsadm, sparseFile } from './processes.js';
import { connect, mustAdm, randomDevice } from './replication-helpers.js';
import { cleanup, clusterRoot, must, newHost, secretFile, start, waitHosts, type TestHost } from './cluster-helpers.js';
import { LinkEmulator, type DirectionSpec } from './link-emulator.js';

export interface WanHost extends TestHost {
  /** The emulator's front for this host: what the host advertises. */
  readonly advertise: string;
}

export interface WanCluster {
  readonly root: string;
  readonly hosts: WanHost[];
  readonly emulator: LinkEmulator;
}

/** `count` hosts alpha, beta … in one cluster through an emulator with `spec` on every link. */
export async function startWanCluster(prefix: string, count: number, spec: DirectionSpec, seed: number, marsdArgs: string[] = [], onCreated?: (cluster: WanCluster) => void): Promise<WanCluster> {
  const names = ['alpha', 'beta', 'gamma'];
  const root = await clusterRoot(prefix);
  const emulator = new LinkEmulator(seed, spec);
  const hosts: WanHost[] = [];
  onCreated?.({ root, hosts, emulator }); // hosts fill in as they start: a caller can stop what started if this fails
  for (let i = 0; i < count; i++) {
    const host = await newHost(root, names[i]!, `127.0.0.${i + 1}`);
    hosts.push({ ...host, advertise: await emulator.front(host.listen) });
  }
  const first = hosts[0]!;
  await must(marsadm(first.dir, 'create-cluster', '--host', first.name, '--listen', first.listen, '--advertise', first.advertise), `create-cluster ${first.name}`);
  await start(first, marsdArgs);
  for (const host of hosts.slice(1)) {
    const joined = await marsadm(host.dir, 'join-cluster', first.advertise, '--host', host.name, '--listen', host.listen, '--advertise', host.advertise, '--secret-file', secretFile(first));
    assert.equal(joined.code, 0, joined.stderr);
    await start(host, marsdArgs);
  }
  const all = Object.fromEntries(hosts.map((h) => [h.name, 'alive']));
  for (const h of hosts) await waitHosts(h, all, 30_000);
  return { root, hosts, emulator };
}

/** The image of `name`'s disk in the cluster's root. */
export function wanDevice(cluster: WanCluster, name: string): string {
  return join(cluster.root, `${name}.img`);
}

/**
 * Resource `resource` of `sizeBytes` on alpha (a sparse file) with beta's disk full of
 * random bytes of `seed`, ready to join; returns an NBD client of alpha's export.
 */
export async function startWanResource(cluster: WanCluster, resource: string, sizeBytes: number, seed: number): Promise<NbdClient> {
  const [alpha, beta] = cluster.hosts;
  await sparseFile(wanDevice(cluster, alpha!.name), sizeBytes);
  await randomDevice(wanDevice(cluster, beta!.name), sizeBytes, seed);
  await mustAdm(alpha!, 'create-resource', resource, wanDevice(cluster, alpha!.name));
  return connect(alpha!, resource);
}

/** Closes the client, stops every daemon of the cluster by PID, removes its files and closes the emulator. */
export async function stopWanCluster(cluster: WanCluster | undefined, client: NbdClient | undefined): Promise<void> {
  await client?.close().catch(() => undefined);
  if (cluster === undefined) return;
  await cleanup(cluster.root, cluster.hosts);
  await cluster.emulator.close();
}
