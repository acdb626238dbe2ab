/**
 * A cluster of real daemons on 127.0.0.N whose peer traffic all passes through a link
 * emulator (test/support/link-emulator.ts): each host listens on its own address and
 * advertises the emulator's front for it (`--advertise`), so every connection between
 * hosts (metadata, join, fetch, sync) crosses an emulated link.
 */
import { dirname, join } from 'node:path';
import type { NbdClient } from '../../src/nbd/client.js';
import { sparseFile } from './processes.js';
import { connect, mustAdm, randomDevice } from './replication-helpers.js';
import { cleanup, startTestCluster, type TestHost } from './cluster-helpers.js';
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

/** `count` hosts alpha, beta … in one cluster through an emulator with `spec` on every link (`intervals`: MARS_INTERVALS entries over the test defaults). */
export async function startWanCluster(prefix: string, count: number, spec: DirectionSpec, seed: number, marsdArgs: string[] = [], onCreated?: (cluster: WanCluster) => void, intervals?: string): Promise<WanCluster> {
  const emulator = new LinkEmulator(seed, spec);
  const cluster = { root: '', hosts: [] as WanHost[], emulator };
  onCreated?.(cluster); // hosts fill in as they start: a caller can stop what started if this fails
  const { root } = await startTestCluster<WanHost>(prefix, count, {
    extend: async (h) => ({ ...h, advertise: await emulator.front(h.listen) }),
    onHost: (h) => {
      cluster.hosts.push(h);
      cluster.root = dirname(h.dir);
    },
    marsdArgs: () => marsdArgs,
    joinArgs: (h) => ['--advertise', h.advertise],
    joinVia: (first) => first.advertise,
    waitHostsMsMax: 30_000,
    ...(intervals === undefined ? {} : { intervals }),
  });
  cluster.root = root;
  return cluster;
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
