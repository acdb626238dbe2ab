/**
 * The resource commands as metadata writes: create-resource, join-resource and
 * leave-resource set the switches and cluster-wide choices (host record, primary, size,
 * device, desired state); the reconciler does the local work on the change. They are
 * validated here, at the edge, and return once the change is accepted (create-resource:
 * once the resource is served, or failed).
 *
 * Order of writes, so that an interrupted command can be run again: the host record
 * first (only members may write a resource's keys), then the resource's keys. A
 * create-resource that stopped after the record is resumed by running it again.
 */
import { readdir } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { MarsError } from '../core/errors.js';
import { actualKey, dataKey, deletedKey, desiredKey, evictedHosts, evictedKey, primaryKey, sizeKey } from '../meta/index.js';
import { openDevice } from '../storage/fs-storage.js';
import { FsStorage, sameDevice } from '../storage/fs-storage.js';
import { desiredValue, parseDesired } from '../strategy/index.js';
import type { Cluster } from './cluster.js';
import { loadResourceConfig } from './resource-config.js';
import type { ResourceSet } from './resources.js';
import { advertisedAddress, checkResourceName, paths } from './state-dir.js';
import { resizeDeviceWaitMs } from './daemon-intervals.js';

export const deviceAlignmentBytes = 4096;

export interface ResourceCommandContext {
  readonly dir: string;
  readonly cluster: Cluster;
  readonly resources: ResourceSet;
  /** Since when (ms since the epoch) this host has had no link to `host`; undefined: reachable or not known. */
  readonly unreachableSinceMs?: (host: string) => number | undefined;
}

function stringArg(args: Record<string, unknown>, key: string): string {
  const v = args[key];
  if (typeof v !== 'string' || v.length === 0) throw new MarsError('BAD_REQUEST', `missing argument ${key}`);
  return v;
}

export function nameArg(args: Record<string, unknown>): string {
  return checkResourceName(stringArg(args, 'name'));
}

function deviceArg(args: Record<string, unknown>): string {
  const devicePath = stringArg(args, 'device');
  if (!isAbsolute(devicePath)) throw new MarsError('EINVAL', `device path must be absolute: ${devicePath}`);
  return devicePath;
}

/** The device's usable size: all of it, or `sizeArg` if given; a multiple of 4096. */
export async function checkDevice(devicePath: string, sizeArg: unknown): Promise<number> {
  const device = await openDevice(devicePath);
  let deviceBytes: number;
  try {
    deviceBytes = await device.size();
  } finally {
    await device.close();
  }
  let sizeBytes = deviceBytes;
  if (sizeArg !== undefined && sizeArg !== null) {
    if (typeof sizeArg !== 'number' || !Number.isSafeInteger(sizeArg) || sizeArg <= 0) throw new MarsError('EINVAL', 'size must be a positive number of bytes');
    if (sizeArg > deviceBytes) throw new MarsError('BAD_DEVICE', `size ${sizeArg} is larger than device ${devicePath} (${deviceBytes} bytes)`);
    sizeBytes = sizeArg;
  }
  if (sizeBytes === 0) throw new MarsError('BAD_DEVICE', `device ${devicePath} is empty`);
  if (sizeBytes % deviceAlignmentBytes !== 0) throw new MarsError('BAD_DEVICE', `size ${sizeBytes} of ${devicePath} is not a multiple of ${deviceAlignmentBytes}`);
  return sizeBytes;
}

/** Refuses a device that another resource of this host uses, by identity (a symlink, hard link or second node of it too). */
async function checkDeviceFree(c: ResourceCommandContext, devicePath: string): Promise<void> {
  const used: [string, string][] = [];
  for (const r of c.cluster.ownRecord()?.resources ?? []) {
    const other = c.cluster.get(dataKey(r, c.cluster.host));
    if (typeof other === 'string') used.push([r, other]);
  }
  for (const r of c.resources.values()) used.push([r.name, r.config.devicePath]);
  for (const [r, other] of used) {
    if (!(await sameDevice(devicePath, other))) continue;
    const alias = other === devicePath ? '' : ` (the same disk as ${other})`;
    throw new MarsError('EXISTS', `device ${devicePath} already belongs to resource ${r}${alias}`);
  }
}

async function addToOwnRecord(c: ResourceCommandContext, name: string): Promise<void> {
  const record = c.cluster.ownRecord();
  const resources = record?.resources ?? [];
  if (!resources.includes(name)) await c.cluster.setOwnRecord({ address: record?.address ?? advertisedAddress(c.cluster.hostConfig), resources: [...resources, name] });
}

/** create-resource R DEVICE [--size]: this host becomes the primary of a new resource. */
export async function createResource(c: ResourceCommandContext, args: Record<string, unknown>, nbdAddress: string): Promise<unknown> {
  const name = nameArg(args);
  const devicePath = deviceArg(args);
  const host = c.cluster.host;
  const listing = c.cluster.hostsListing(name);
  const resuming = listing.length === 1 && listing[0] === host && c.cluster.get(desiredKey(name, host)) === undefined;
  if (listing.length > 0 && !resuming) throw new MarsError('EXISTS', `resource ${name} already exists (members: ${listing.join(', ')})`);
  if (!resuming && c.resources.get(name) !== undefined) throw new MarsError('EXISTS', `resource ${name} already exists`);
  await checkDeviceFree(c, devicePath);
  const sizeBytes = await checkDevice(devicePath, args['sizeBytes']);
  const dir = paths.resourceDir(c.dir, name);
  if (!resuming && (await new FsStorage(dir).exists('resource.json'))) throw new MarsError('EXISTS', `${dir} already exists`);
  await addToOwnRecord(c, name);
  if (c.cluster.get(deletedKey(name)) === true) await c.cluster.set(deletedKey(name), false); // a new resource of a deleted one's name
  await c.cluster.set(sizeKey(name), sizeBytes);
  await c.cluster.set(primaryKey(name), host);
  await c.cluster.set(dataKey(name, host), devicePath);
  await c.cluster.set(desiredKey(name, host), desiredValue({ attach: true }));
  await c.resources.schedule(name);
  const resource = c.resources.get(name);
  if (resource?.stateKind !== 'serving') {
    throw new MarsError('RESOURCE_FAILED', `resource ${name} was created but is not served: ${resource?.failure ?? resource?.stateKind ?? 'not loaded'}`);
  }
  return { name, sizeBytes, export: `nbd://${nbdAddress}/${name}` };
}

/**
 * join-resource R DEVICE: this host becomes a secondary of R (its metadata now reaches
 * this host) with DEVICE as its disk. The reconciler creates the resource directory and
 * starts the full sync from the primary, fetch and replay; the command returns once the
 * replica runs (view shows the sync's progress).
 */
export async function joinResource(c: ResourceCommandContext, args: Record<string, unknown>): Promise<unknown> {
  return c.resources.whileJoining(nameArg(args), () => join(c, args));
}

async function join(c: ResourceCommandContext, args: Record<string, unknown>): Promise<unknown> {
  const name = nameArg(args);
  const devicePath = deviceArg(args);
  const host = c.cluster.host;
  const listing = c.cluster.hostsListing(name);
  if (listing.length === 0) throw new MarsError('NOT_FOUND', `resource ${name} does not exist in the cluster`);
  if (listing.includes(host)) throw new MarsError('EXISTS', `${host} is already a member of resource ${name}`);
  await checkDeviceFree(c, devicePath);
  const dir = paths.resourceDir(c.dir, name);
  if (c.resources.get(name) !== undefined || (await new FsStorage(dir).exists('resource.json'))) throw new MarsError('EXISTS', `${dir} already exists (leave-resource ${name} first)`);
  await checkDevice(devicePath, undefined).catch((err: unknown) => {
    // An unaligned tail is fine for a secondary: only the resource's size is used.
    if (!(err instanceof MarsError && /not a multiple/.test(err.message))) throw err;
  });
  // A resource's keys reach members only: become one, then check the size against it.
  const record = c.cluster.ownRecord();
  await addToOwnRecord(c, name);
  let sizeBytes: number;
  try {
    sizeBytes = await waitForSize(c, name);
    await checkDevice(devicePath, sizeBytes).catch((err: unknown) => {
      if (err instanceof MarsError && err.code === 'BAD_DEVICE' && /larger than device/.test(err.message)) {
        throw new MarsError('BAD_DEVICE', `device ${devicePath} is smaller than resource ${name} (${sizeBytes} bytes)`);
      }
      throw err;
    });
  } catch (err) {
    await c.cluster.setOwnRecord({ address: record?.address ?? advertisedAddress(c.cluster.hostConfig), resources: (record?.resources ?? []).filter((r) => r !== name) });
    await c.cluster.delete(actualKey(name, host)).catch(() => undefined);
    throw err;
  }
  // A host removed from R earlier (leave-resource --host) is a member again: off the list, now that it may write R's keys.
  // These keys are all of R's scope: one durable write, so they land together (the device and
  // the wish to attach it), and the sync starts one metadata write sooner.
  const evicted = evictedHosts(c.cluster.get(evictedKey(name)));
  await c.cluster.setMany([
    ...(evicted.includes(host) ? [[evictedKey(name), evicted.filter((h) => h !== host)] as const] : []),
    [dataKey(name, host), devicePath],
    [desiredKey(name, host), desiredValue({ attach: true })],
  ]);
  await c.resources.schedule(name);
  const resource = c.resources.get(name);
  // Listed now that R's keys are here: a member removed with leave-resource --host is not one.
  const members = [...new Set([...c.cluster.hostsListing(name), host])].sort();
  return { name, members, state: resource?.stateKind ?? 'absent', failure: resource?.failure ?? null };
}

/**
 * The NBD clients of R on `hosts`, as "HOST ADDRESS": this host's from its NBD server,
 * another member's from its indicator (as it last reported them; marked so when that
 * member is unreachable now).
 */
export function openClients(c: ResourceCommandContext, name: string, hosts: readonly string[], local: (name: string) => string[]): string[] {
  const open: string[] = [];
  for (const host of hosts) {
    let clients: string[];
    if (host === c.cluster.host) clients = local(name);
    else {
      const actual = c.cluster.get(actualKey(name, host));
      const listed = actual !== null && typeof actual === 'object' && !Array.isArray(actual) ? actual['nbdClients'] : undefined;
      clients = Array.isArray(listed) ? listed.filter((x): x is string => typeof x === 'string') : [];
    }
    // An unreachable member's list may be stale (its clients may be gone, or still there behind a partition).
    const stale = host !== c.cluster.host && !c.cluster.peers.alive(host) ? ` (as ${host} last reported; ${host} is unreachable)` : '';
    for (const client of clients) open.push(`${host} ${client}${stale}`);
  }
  return open;
}

/**
 * A command that would disconnect NBD clients is refused while there are any (naming
 * them), unless --force: then it goes on and says whom it disconnects.
 */
export function guardClients(what: string, name: string, open: readonly string[], force: boolean, hint = 'or use --force to disconnect them'): void {
  if (open.length === 0 || force) return;
  throw new MarsError('EBUSY', `${what} refused: ${name} has ${open.length} NBD connection(s) open: ${open.join(', ')} (close them, ${hint})`);
}

/**
 * delete-resource R: every member removes R (its resource directory and keys; devices
 * are left as they are). Refused while any member exports R to NBD clients, unless
 * --force. Returns once this host has removed it; the others follow when the key reaches
 * them.
 */
export async function deleteResource(c: ResourceCommandContext, args: Record<string, unknown>, clients: (name: string) => string[]): Promise<unknown> {
  const name = nameArg(args);
  const host = c.cluster.host;
  if (c.cluster.ownRecord()?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${host} is not a member of resource ${name}`);
  const members = c.cluster.hostsListing(name);
  const open = openClients(c, name, members, clients);
  guardClients('delete-resource', name, open, args['force'] === true);
  await c.cluster.set(deletedKey(name), true);
  await c.resources.schedule(name);
  return { name, members, disconnected: open };
}

/**
 * resize R SIZE: grow only, to a multiple of 4096 that every member's device holds (as
 * the members reported). The primary zeroes the new area through its log, so every
 * secondary's replay zeroes it too: no sync is needed and only record headers travel.
 */
export async function resizeResource(c: ResourceCommandContext, args: Record<string, unknown>): Promise<unknown> {
  const name = nameArg(args);
  const host = c.cluster.host;
  if (c.cluster.ownRecord()?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${host} is not a member of resource ${name}`);
  const newSize = args['sizeBytes'];
  if (typeof newSize !== 'number' || !Number.isSafeInteger(newSize) || newSize <= 0) throw new MarsError('EINVAL', 'size must be a positive number of bytes');
  if (newSize % deviceAlignmentBytes !== 0) throw new MarsError('EINVAL', `size ${newSize} is not a multiple of ${deviceAlignmentBytes}`);
  const current = c.cluster.get(sizeKey(name));
  if (typeof current !== 'number') throw new MarsError('NOT_FOUND', `resource ${name} has no size in the metadata`);
  if (newSize < current) throw new MarsError('EINVAL', `resize only grows: ${name} has ${current} bytes, ${newSize} would shrink it`);
  if (newSize === current) return { name, sizeBytes: current };
  // Devices grown underneath are noticed by their daemons within indicatorRefreshMs: wait that long for a member that reports too few bytes.
  await c.resources.schedule(name);
  const tooSmall = (): string | undefined => c.cluster.hostsListing(name).find((member) => !((reportedDeviceBytes(c, name, member) ?? 0) >= newSize));
  if (tooSmall() !== undefined) await c.cluster.waitUntil('', () => tooSmall() === undefined, resizeDeviceWaitMs(c.resources.refreshMs)).catch(() => undefined);
  for (const member of c.cluster.hostsListing(name)) {
    const deviceBytes = reportedDeviceBytes(c, name, member);
    if (deviceBytes === undefined) throw new MarsError('NOT_FOUND', `member ${member} has not reported its device size (is it up?); nothing changed`);
    if (deviceBytes < newSize) throw new MarsError('BAD_DEVICE', `the device of member ${member} has ${deviceBytes} bytes, fewer than ${newSize}; nothing changed`);
  }
  await c.cluster.set(sizeKey(name), newSize);
  await c.resources.schedule(name);
  return { name, sizeBytes: newSize };
}

function reportedDeviceBytes(c: ResourceCommandContext, name: string, member: string): number | undefined {
  const actual = c.cluster.get(actualKey(name, member));
  const deviceBytes = actual !== null && typeof actual === 'object' && !Array.isArray(actual) ? actual['deviceBytes'] : undefined;
  return typeof deviceBytes === 'number' ? deviceBytes : undefined;
}

/** Joining takes at most this long to receive the resource's keys from its members. */
export const joinKeysWaitMsMax = 15_000;

/** Waits (event-driven, bounded) until the size of a resource this host just became a member of has arrived. */
async function waitForSize(c: ResourceCommandContext, name: string): Promise<number> {
  // Ask the members now instead of at the next anti-entropy round.
  for (const member of c.cluster.hostsListing(name)) {
    if (member !== c.cluster.host) await c.cluster.apply(c.cluster.node.exchange(member, true)).catch(() => undefined);
  }
  const deadline = Date.now() + joinKeysWaitMsMax;
  for (;;) {
    const size = c.cluster.get(sizeKey(name));
    if (typeof size === 'number' && Number.isSafeInteger(size) && size > 0) return size;
    const rest = deadline - Date.now();
    if (rest <= 0) throw new MarsError('TIMEOUT', `no member of ${name} answered within ${joinKeysWaitMsMax / 1000} s (are its hosts reachable? view-hosts)`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        cancel();
        resolve();
      }, rest);
      const cancel = c.cluster.onceChanged(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** leave-resource R: this host stops being a member of R (refused on its primary, and while the primary is unreachable unless --force). */
export async function leaveResource(c: ResourceCommandContext, args: Record<string, unknown>, clients: (name: string) => string[]): Promise<unknown> {
  const name = nameArg(args);
  const host = c.cluster.host;
  const record = c.cluster.ownRecord();
  if (record?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${host} is not a member of resource ${name}`);
  const primary = c.cluster.get(primaryKey(name));
  if (primary === host) throw new MarsError('EBUSY', `${host} is the primary of ${name}: make another member primary first`);
  // With the primary out of reach this host may be the one to take over (its disk and its
  // copies of the log, which leaving deletes): only on purpose.
  if (typeof primary === 'string' && primary !== '' && !c.cluster.peers.alive(primary) && args['force'] !== true) {
    throw new MarsError('EBUSY', `${primary}, the primary of ${name}, is unreachable: ${host} may be needed to take over (primary ${name} --force here); leave-resource ${name} --force to leave anyway`);
  }
  // A host still serving R on its way out of the primary role: its clients go with it.
  guardClients('leave-resource', name, openClients(c, name, [host], clients), false, `or run down ${name} --force first`);
  for (const key of [desiredKey(name, host), dataKey(name, host), actualKey(name, host)]) await c.cluster.delete(key);
  await c.cluster.setOwnRecord({ address: record.address, resources: record.resources.filter((r) => r !== name) });
  await c.resources.schedule(name); // stops R here and removes its directory (the device stays)
  return { name };
}

/**
 * leave-resource R --host DEAD [--force], on any live member: DEAD stops being a member of
 * R (its name goes on R's `evicted` list), so it no longer holds log deletion back.
 * Refused for a host that is not a member, for the primary, and for a host this one can
 * reach, unless --force. If DEAD comes back, it leaves R by itself.
 */
export async function removeMember(c: ResourceCommandContext, args: Record<string, unknown>, alive: (host: string) => boolean): Promise<unknown> {
  const name = nameArg(args);
  const dead = stringArg(args, 'host');
  const host = c.cluster.host;
  if (c.cluster.ownRecord()?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${host} is not a member of resource ${name}`);
  if (dead === host) throw new MarsError('EINVAL', `${host} is this host: run leave-resource ${name} without --host`);
  if (!c.cluster.hostsListing(name).includes(dead)) throw new MarsError('NOT_FOUND', `${dead} is not a member of resource ${name}`);
  if (c.cluster.get(primaryKey(name)) === dead) throw new MarsError('EBUSY', `${dead} is the primary of ${name}: make another member primary first (primary ${name} --force on it)`);
  if (alive(dead) && args['force'] !== true) throw new MarsError('EBUSY', `${dead} is alive: run leave-resource ${name} on it, or add --force`);
  const evicted = new Set(evictedHosts(c.cluster.get(evictedKey(name))));
  evicted.add(dead);
  await c.cluster.set(evictedKey(name), [...evicted].sort());
  await c.resources.schedule(name);
  return { name, host: dead };
}

/**
 * A member removed by another (leave-resource --host) that runs again: it leaves R here
 * (its keys, then R in its record; the reconciler then stops R and removes its directory).
 * Its name stays on R's `evicted` list: once R is off its record it may write none of R's
 * keys, and the name does no harm there. join-resource takes it off when the host joins
 * again.
 */
export async function leaveIfEvicted(c: Pick<ResourceCommandContext, 'cluster'>, name: string): Promise<boolean> {
  const host = c.cluster.host;
  const evicted = evictedHosts(c.cluster.get(evictedKey(name)));
  const record = c.cluster.ownRecord();
  if (!evicted.includes(host) || record?.resources.includes(name) !== true) return false;
  for (const key of [desiredKey(name, host), dataKey(name, host), actualKey(name, host)]) await c.cluster.delete(key);
  await c.cluster.setOwnRecord({ address: record.address, resources: record.resources.filter((r) => r !== name) });
  return true;
}

/**
 * up R / down R: the switch `attach` of this host for R. The reconciler does the rest
 * (down: stop serving, write everything back, close the device; up: recover and serve
 * again); the command returns once it has.
 */
export async function setAttach(c: ResourceCommandContext, args: Record<string, unknown>, attach: boolean, clients: (name: string) => string[]): Promise<unknown> {
  const name = nameArg(args);
  const host = c.cluster.host;
  if (c.cluster.ownRecord()?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${host} is not a member of resource ${name}`);
  // down stops this host's export: refused while it has clients.
  if (!attach) guardClients('down', name, openClients(c, name, [host], clients), args['force'] === true);
  await c.cluster.set(desiredKey(name, host), desiredValue({ ...parseDesired(c.cluster.get(desiredKey(name, host))), attach }));
  await c.resources.schedule(name);
  const resource = c.resources.get(name);
  return { name, state: resource?.stateKind ?? 'absent', failure: resource?.failure ?? null };
}

/**
 * Resource directories made before resources lived in the metadata (a single host):
 * their resource.json is taken into the metadata once, as if create-resource had run.
 */
export async function adoptLocalResources(c: ResourceCommandContext, log: (msg: string) => void): Promise<void> {
  const host = c.cluster.host;
  for (const entry of (await readdir(c.dir)).sort()) {
    if (!entry.startsWith('resource-')) continue;
    const where = `${c.dir}/${entry}`;
    const storage = new FsStorage(where);
    if (!(await storage.exists('resource.json'))) continue;
    const config = await loadResourceConfig(storage, where).catch(() => undefined);
    if (config === undefined || c.cluster.ownRecord()?.resources.includes(config.name) === true) continue;
    if (c.cluster.hostsListing(config.name).length > 0) {
      log(`${where}: resource ${config.name} belongs to other hosts of the cluster; not adopted`);
      continue;
    }
    await addToOwnRecord(c, config.name);
    await c.cluster.set(sizeKey(config.name), config.sizeBytes);
    await c.cluster.set(primaryKey(config.name), config.primary === host ? host : config.primary);
    await c.cluster.set(dataKey(config.name, host), config.devicePath);
    await c.cluster.set(desiredKey(config.name, host), desiredValue({ attach: true }));
    log(`${where}: resource ${config.name} taken into the metadata`);
  }
}
