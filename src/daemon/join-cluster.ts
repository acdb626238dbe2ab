/**
 * `marsadm join-cluster PEER_IP:PORT --host NAME --listen IP:PORT --secret-file FILE`:
 * prepares DIR as a member of a running cluster, without a daemon. It dials the member on
 * the join channel (proving the secret, learning the cluster id and the member's name),
 * fetches the cluster's metadata, checks that NAME and the listen address are free, and
 * only then writes DIR: meta/cluster.json (what it learnt plus this host's own record),
 * cluster.secret (mode 0600), and host.json last, so that a DIR is a member only once it
 * is complete. Nothing is written on the member: the others learn of this host when its
 * marsd starts and dials them.
 */
import { mkdir } from 'node:fs/promises';
import { randomInt } from 'node:crypto';
import { systemClock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { Random } from '../core/random.js';
import { clusterScope, hostKey, hostRecordValue, MetaNode, MetaStore, parseHostRecord, parseKey } from '../meta/index.js';
import type { TlsOptions } from '../net/index.js';
import { FsStorage } from '../storage/fs-storage.js';
import { loadOrCreateHostKey } from './host-key.js';
import { readSecretFile, secretFileText } from './identity.js';
import { fetchCluster, type FetchedCluster } from './join-protocol.js';
import { advertisedAddress, checkHostName, exists, hostFormatVersion, parseAddress, paths, type HostConfig } from './state-dir.js';

export interface JoinOptions {
  readonly dir: string;
  readonly peer: string;
  readonly host: string;
  readonly listen: string;
  /** The address peers dial, if not `listen` (see HostConfig.advertise). */
  readonly advertise?: string;
  readonly secretFile: string;
  readonly tls: TlsOptions | undefined;
}

export interface JoinResult {
  readonly config: HostConfig;
  readonly peerHost: string;
  readonly hosts: string[];
}

function explain(err: unknown, o: JoinOptions): MarsError {
  if (!(err instanceof MarsError)) return new MarsError('EIO', `join-cluster: ${(err as Error).message}`);
  switch (err.code) {
    case 'AUTH_FAILED':
      // Only a proof that does not match says the secret is wrong; anything else is the handshake's own failure.
      if (!/proof|cluster secret/.test(err.message)) return new MarsError('AUTH_FAILED', `join-cluster: the handshake with ${o.peer} failed: ${err.message}`);
      return new MarsError('AUTH_FAILED', `join refused: ${o.secretFile} does not hold the secret of the cluster at ${o.peer} (the proofs do not match)`);
    case 'HOST_MISMATCH':
      return new MarsError('HOST_MISMATCH', `join refused: the cluster at ${o.peer} already has a host named ${o.host} (it may have joined from another address without starting marsd yet)`);
    case 'PEER_BUSY':
      return new MarsError('PEER_BUSY', `join-cluster: the member at ${o.peer} is busy with other connections in their handshake; try again (${err.message})`);
    case 'TIMEOUT':
      return new MarsError('TIMEOUT', `join-cluster: the member at ${o.peer} did not finish the handshake in time (busy or unreachable; try again): ${err.message}`);
    case 'PEER_CLOSED':
      return new MarsError('PEER_CLOSED', `join-cluster: cannot reach a member at ${o.peer}: ${err.message} (is its marsd running? with --tls on one side, both need it)`);
    default:
      return new MarsError(err.code, `join-cluster: ${err.message}`);
  }
}

/** Refuses a name or an address that a host of the cluster already has. */
function checkFree(fetched: FetchedCluster, o: JoinOptions): void {
  for (const [key, entry] of fetched.entries) {
    const info = parseKey(key);
    if (info?.name !== 'host' || info.owner === undefined) continue;
    if (info.owner === o.host) throw new MarsError('EXISTS', `join refused: cluster ${fetched.clusterId} already has a host named ${o.host}`);
    const address = advertisedAddress(o);
    if (parseHostRecord(entry.value).address === address) throw new MarsError('EXISTS', `join refused: host ${info.owner} already listens on ${address}`);
  }
}

async function writeStateDir(o: JoinOptions, fetched: FetchedCluster, secret: Buffer): Promise<HostConfig> {
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  await mkdir(paths.metaDir(o.dir), { recursive: true, mode: 0o700 });
  const { key } = await loadOrCreateHostKey(o.dir);
  const node = new MetaNode({ host: o.host, clock: systemClock, random: new Random(randomInt(2 ** 31)), signingKey: key });
  // Through the core, as from any peer: entries not signed by their owners are left out.
  for (const push of fetched.pushes) {
    const refused = node.receive(fetched.peerHost, push).rejected.find((r) => r.code === 'META_CLOCK_SKEW' || r.code === 'META_STALE');
    if (refused !== undefined) throw new MarsError(refused.code, `join refused: ${refused.detail} (are the clocks of this host and ${fetched.peerHost} set?)`);
  }
  node.set(hostKey(o.host), hostRecordValue({ address: advertisedAddress(o), resources: [] }));
  await new MetaStore(new FsStorage(paths.metaDir(o.dir))).persist(node, [clusterScope]);
  const storage = new FsStorage(o.dir);
  await storage.writeAtomic('cluster.secret', secretFileText(secret));
  const config: HostConfig = { formatVersion: hostFormatVersion, host: o.host, listen: o.listen, ...(o.advertise === undefined ? {} : { advertise: o.advertise }), clusterId: fetched.clusterId };
  await storage.writeAtomic('host.json', Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
  return config;
}

export async function joinCluster(o: JoinOptions): Promise<JoinResult> {
  checkHostName(o.host);
  const own = parseAddress(o.listen);
  if (o.advertise !== undefined) parseAddress(o.advertise);
  const target = parseAddress(o.peer);
  if (await exists(paths.hostFile(o.dir))) throw new MarsError('EXISTS', `${o.dir} already belongs to a cluster (${paths.hostFile(o.dir)} exists)`);
  const secret = await readSecretFile(o.secretFile);
  let fetched: FetchedCluster;
  try {
    const local = own.host === '0.0.0.0' || own.host === '::' ? {} : { localAddress: own.host };
    fetched = await fetchCluster({ host: target.host, port: target.port, secret, localHost: o.host, ...local, ...(o.tls === undefined ? {} : { tls: o.tls }) });
  } catch (err) {
    throw explain(err, o);
  }
  checkFree(fetched, o);
  const config = await writeStateDir(o, fetched, secret);
  const hosts = [...fetched.entries.keys()].filter((k) => k.startsWith(hostKey(''))).map((k) => k.slice(hostKey('').length));
  return { config, peerHost: fetched.peerHost, hosts: hosts.sort() };
}
