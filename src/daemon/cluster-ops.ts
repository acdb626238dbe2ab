/**
 * The cluster commands that marsd carries out for marsadm: view-hosts, wait-cluster,
 * leave-cluster and merge-cluster. Each is a bounded loop over the metadata core and the
 * peer connections; none holds state between calls.
 */
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { clusterScope, hostKey, mergeKey, parseHostRecord, parseKey, type Entry } from '../meta/index.js';
import type { TlsOptions } from '../net/index.js';
import type { Cluster } from './cluster.js';
import { readSecretFile, sealMerge } from './identity.js';
import { fetchCluster, type FetchedCluster } from './join-protocol.js';
import { advertisedAddress, parseAddress } from './state-dir.js';

/** How often the waiting commands look again, and ask a peer again for its digests. */
export const clusterPollMs = 100;
export const digestAskIntervalMs = 500;
export { clusterCommandTimeoutMsMax, waitClusterTimeoutMsDefault } from './command-limits.js';

export interface HostLine {
  readonly host: string;
  readonly address: string;
  readonly state: 'alive' | 'unreachable';
}

/** One line per known host, this one included: alive when a metadata link to it is open. */
export function viewHosts(c: Cluster): HostLine[] {
  const names = new Set(c.hosts());
  names.add(c.host);
  return [...names].sort().map((host) => {
    const address = c.node.hostRecord(host)?.address ?? (host === c.host ? advertisedAddress(c.hostConfig) : '?');
    return { host, address, state: host === c.host || c.peers.alive(host) ? 'alive' : 'unreachable' };
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True once the peer reported, since `sinceMs`, the same root as ours for every scope we share. */
function inSync(c: Cluster, peer: string, sinceMs: number): boolean {
  const reported = c.lastDigest(peer);
  if (reported === undefined) return false;
  return c.node.sharedDigests(peer).every((mine) => {
    const theirs = reported.roots.get(mine.scope);
    return theirs !== undefined && theirs.atMs >= sinceMs && theirs.root === mine.root;
  });
}

export interface WaitResult {
  readonly exchanged: string[];
  readonly unreachable: string[];
}

/**
 * Returns once metadata has been exchanged with every reachable member: each host with a
 * link has reported the same roots as ours since the call began; a host without one
 * counts as unreachable once a dial made during the call has failed.
 */
export async function waitCluster(c: Cluster, clock: Clock, timeoutMs: number): Promise<WaitResult> {
  const startMs = clock.nowMs();
  const failuresAtStart = new Map<string, number>();
  const askedAtMs = new Map<string, number>();
  const retried = new Set<string>();
  for (;;) {
    const nowMs = clock.nowMs();
    const exchanged: string[] = [];
    const unreachable: string[] = [];
    const pending: string[] = [];
    for (const peer of c.hosts()) {
      if (peer === c.host) continue;
      if (!failuresAtStart.has(peer)) failuresAtStart.set(peer, c.peers.failedDials(peer));
      if (c.peers.alive(peer)) {
        if (inSync(c, peer, startMs)) exchanged.push(peer);
        else pending.push(peer);
        if (!inSync(c, peer, startMs) && nowMs - (askedAtMs.get(peer) ?? 0) >= digestAskIntervalMs) {
          askedAtMs.set(peer, nowMs);
          c.apply(c.node.exchange(peer, true)).catch(() => undefined);
        }
      } else if (c.peers.failedDials(peer) > (failuresAtStart.get(peer) ?? 0)) {
        unreachable.push(peer);
      } else {
        if (!retried.has(peer)) c.peers.retryNow(peer);
        retried.add(peer);
        pending.push(peer);
      }
    }
    if (pending.length === 0) return { exchanged, unreachable };
    if (nowMs - startMs >= timeoutMs) throw new MarsError('TIMEOUT', `metadata not exchanged within ${timeoutMs} ms with: ${pending.sort().join(', ')}`);
    await sleep(clusterPollMs);
  }
}

/**
 * Deletes this host's own cluster keys and its host record, and waits until another
 * host holds the deletion (its name is in the tombstone's seen-by set). Refused while the
 * host is a member of a resource.
 */
export async function leaveCluster(c: Cluster, clock: Clock, timeoutMs: number): Promise<string[]> {
  const resources = c.ownRecord()?.resources ?? [];
  if (resources.length > 0) throw new MarsError('EBUSY', `${c.host} is still a member of resource(s) ${resources.join(', ')}: leave-resource first`);
  for (const key of c.node.keys('cluster/')) {
    if (parseKey(key)?.owner === c.host && key !== hostKey(c.host)) await c.delete(key);
  }
  await c.delete(hostKey(c.host));
  const others = c.hosts().filter((h) => h !== c.host);
  if (others.length === 0) return [];
  const startMs = clock.nowMs();
  let askedAtMs = 0;
  for (;;) {
    const seenBy = (c.node.entry(hostKey(c.host))?.seenBy ?? []).filter((h) => h !== c.host);
    if (seenBy.length > 0) return seenBy;
    const nowMs = clock.nowMs();
    if (nowMs - startMs >= timeoutMs) {
      throw new MarsError('TIMEOUT', `no other host took the news within ${timeoutMs} ms (reachable: ${others.filter((h) => c.peers.alive(h)).join(', ') || 'none'}); run leave-cluster again once a peer is reachable`);
    }
    if (nowMs - askedAtMs >= digestAskIntervalMs) {
      askedAtMs = nowMs;
      for (const peer of others) {
        if (c.peers.alive(peer)) c.apply(c.node.exchange(peer, true)).catch(() => undefined);
        else c.peers.retryNow(peer);
      }
    }
    await sleep(clusterPollMs);
  }
}

/**
 * leave-cluster --host DEAD [--force], on any live member: DEAD is taken off the host list
 * of every member (a signed list of removed hosts that every member applies). Refused for
 * this host itself, for a host that is not in the list, for a member of any resource
 * (leave-resource R --host DEAD first), and for a host this one can reach unless --force.
 */
export async function removeHostFromCluster(c: Cluster, dead: string, force: boolean): Promise<{ host: string }> {
  if (dead === c.host) throw new MarsError('EINVAL', `${dead} is this host: run leave-cluster without --host`);
  if (!c.hosts().includes(dead)) throw new MarsError('NOT_FOUND', `${dead} is not a host of this cluster`);
  // Its record (signed by it) still lists a resource it was removed from with leave-resource --host: that one does not count.
  const resources = (c.node.hostRecord(dead)?.resources ?? []).filter((r) => c.hostsListing(r).includes(dead));
  if (resources.length > 0) throw new MarsError('EBUSY', `${dead} is still a member of resource(s) ${resources.join(', ')}: leave-resource ${resources[0]} --host ${dead} first`);
  if (c.peers.alive(dead) && !force) throw new MarsError('EBUSY', `${dead} is alive: run leave-cluster on it, or add --force`);
  await c.removeHost(dead);
  return { host: dead };
}

/** Hosts and resource names in a set of cluster entries (from the host records). */
function namesIn(entries: Iterable<[string, Entry]>): { hosts: Set<string>; resources: Set<string> } {
  const hosts = new Set<string>();
  const resources = new Set<string>();
  for (const [key, entry] of entries) {
    const info = parseKey(key);
    if (entry.deleted || info?.scope !== clusterScope || info.name !== 'host' || info.owner === undefined) continue;
    hosts.add(info.owner);
    for (const r of parseHostRecord(entry.value).resources) resources.add(r);
  }
  return { hosts, resources };
}

export interface MergeOptions {
  readonly peer: string;
  readonly secretFile: string;
  readonly tls: TlsOptions | undefined;
}

export interface MergeResult {
  readonly clusterId: string;
  readonly alreadyOne: boolean;
  readonly hosts: string[];
}

async function fetchForMerge(c: Cluster, o: MergeOptions): Promise<FetchedCluster> {
  const secret = await readSecretFile(o.secretFile);
  const target = parseAddress(o.peer);
  const own = parseAddress(c.hostConfig.listen).host;
  const local = own === '0.0.0.0' || own === '::' ? {} : { localAddress: own };
  try {
    return await fetchCluster({ host: target.host, port: target.port, secret, localHost: c.host, ...local, ...(o.tls === undefined ? {} : { tls: o.tls }) });
  } catch (err) {
    if (!(err instanceof MarsError)) throw err;
    if (err.code === 'AUTH_FAILED') throw new MarsError('AUTH_FAILED', `merge refused: ${o.secretFile} does not hold the secret of the cluster at ${o.peer}`);
    if (err.code === 'HOST_MISMATCH') throw new MarsError('HOST_MISMATCH', `merge refused: the cluster at ${o.peer} already has a host named ${c.host}`);
    throw new MarsError(err.code, `merge-cluster: cannot fetch the metadata of ${o.peer}: ${err.message}`);
  }
}

/**
 * merge-cluster: this host's cluster joins the cluster at `peer` (whose secret is in
 * `secretFile`), if their host and resource names are disjoint. This side adopts the
 * other's cluster id and secret: `cluster/merge` carries the secret, sealed with this
 * side's old secret, to every host of this side (see identity.ts); the other side's host
 * records are merged into the metadata here, and spread from here by gossip.
 */
export async function mergeCluster(c: Cluster, o: MergeOptions): Promise<MergeResult> {
  const fetched = await fetchForMerge(c, o);
  const theirs = namesIn(fetched.entries);
  if (fetched.clusterId === c.identity.current.clusterId) return { clusterId: fetched.clusterId, alreadyOne: true, hosts: [...theirs.hosts].sort() };
  const ours = namesIn(c.node.exportScope(clusterScope));
  const clashingResources = [...ours.resources].filter((r) => theirs.resources.has(r)).sort();
  if (clashingResources.length > 0) throw new MarsError('EXISTS', `merge refused: both clusters have resource(s) ${clashingResources.join(', ')}`);
  const clashingHosts = [...ours.hosts].filter((h) => theirs.hosts.has(h)).sort();
  if (clashingHosts.length > 0) throw new MarsError('EXISTS', `merge refused: both clusters have host(s) ${clashingHosts.join(', ')}`);
  const secret = await readSecretFile(o.secretFile);
  await c.set(mergeKey, sealMerge(c.identity.current, { clusterId: fetched.clusterId, secret }));
  await c.adoptMerge();
  for (const push of fetched.pushes) await c.apply(c.node.receive(fetched.peerHost, push));
  return { clusterId: fetched.clusterId, alreadyOne: false, hosts: [...theirs.hosts].sort() };
}
