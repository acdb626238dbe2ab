/**
 * Who is in the cluster and who is a member of which resource, as this host sees it,
 * derived from the host records. Kept incrementally: the list of hosts (for gossip), and
 * the members of this host's own resources only (for routing resource keys), so that a
 * host's memory for membership grows with the cluster size, not with n × resources.
 */
import type { HostRecord } from './host-record.js';

export class Membership {
  private readonly hostList: string[] = [];
  private readonly hostIndex = new Map<string, number>();
  private readonly members = new Map<string, Set<string>>();
  private ownResources = new Set<string>();

  constructor(readonly self: string) {}

  hosts(): readonly string[] {
    return this.hostList;
  }

  isHost(host: string): boolean {
    return this.hostIndex.has(host);
  }

  /** Resources this host is a member of (from its own record). */
  resources(): ReadonlySet<string> {
    return this.ownResources;
  }

  /** Members of one of this host's resources; undefined for a resource it is not a member of. */
  membersOf(resource: string): ReadonlySet<string> | undefined {
    return this.members.get(resource);
  }

  isMember(resource: string, host: string): boolean {
    return this.members.get(resource)?.has(host) === true;
  }

  /** Hosts sharing at least one resource with this host. */
  resourcePeers(): Set<string> {
    const peers = new Set<string>();
    for (const set of this.members.values()) for (const host of set) if (host !== this.self) peers.add(host);
    return peers;
  }

  /**
   * A host record changed (undefined: no live record). `records` lists every live record,
   * used only when this host's own resource list changes.
   */
  update(host: string, before: HostRecord | undefined, after: HostRecord | undefined, records: () => Iterable<[string, HostRecord]>): void {
    if (after === undefined) this.removeHost(host);
    else this.addHost(host);
    if (host === this.self) {
      this.rebuildOwn(after, records);
      return;
    }
    for (const resource of before?.resources ?? []) this.members.get(resource)?.delete(host);
    for (const resource of after?.resources ?? []) this.members.get(resource)?.add(host);
  }

  private rebuildOwn(record: HostRecord | undefined, records: () => Iterable<[string, HostRecord]>): void {
    const next = new Set(record?.resources ?? []);
    for (const resource of this.ownResources) if (!next.has(resource)) this.members.delete(resource);
    const added = [...next].filter((r) => !this.ownResources.has(r));
    this.ownResources = next;
    if (added.length === 0) return;
    for (const resource of added) this.members.set(resource, new Set([this.self]));
    for (const [host, other] of records()) {
      for (const resource of other.resources) if (added.includes(resource)) this.members.get(resource)?.add(host);
    }
  }

  private addHost(host: string): void {
    if (this.hostIndex.has(host)) return;
    this.hostIndex.set(host, this.hostList.length);
    this.hostList.push(host);
  }

  private removeHost(host: string): void {
    const index = this.hostIndex.get(host);
    if (index === undefined) return;
    const last = this.hostList.pop();
    this.hostIndex.delete(host);
    if (last !== undefined && last !== host) {
      this.hostList[index] = last;
      this.hostIndex.set(last, index);
    }
  }
}
