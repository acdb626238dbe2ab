/**
 * The role commands: `primary R [--force] [--wait]`, `secondary R`, `invalidate R`. They
 * check at the edge and refuse with one clear line, changing nothing; then they set the
 * metadata (the designated primary is a shared key, last writer wins) and wait, bounded
 * and event-driven, until the reconcilers of the hosts involved have carried it out:
 *
 *   primary R (planned):   the old primary stops serving (its NBD clients must be gone, or
 *                          --wait waits for that), its indicator says where its log ends;
 *                          this host replays up to there, then starts log N+1 as primary.
 *   primary R --force:     this host becomes primary with what it has, at once, and says
 *                          how much of the old primary's log it knows it is missing.
 *   secondary R:           the primary stops serving; no host is designated.
 *   invalidate R:          a secondary forgets its history and resyncs from the primary.
 */
import { MarsError } from '../core/errors.js';
import { actualKey, desiredKey, primaryKey, type JsonValue } from '../meta/index.js';
import { desiredValue, detectSplitBrain, historyOf, parseDesired, type SplitBrain } from '../strategy/index.js';
import { nameArg, type ResourceCommandContext } from './resource-commands.js';

/** primary R: how long a client list of the old primary may take to show that its last client closed. */
export const clientListSettleMs = 1_000;

/** How long a role command waits by default for the change to take effect. */
export const roleCommandTimeoutMsDefault = 60_000;
export const roleCommandTimeoutMsMax = 3_600_000;

function timeoutOf(args: Record<string, unknown>): number {
  const v = args['timeoutMs'];
  if (v === undefined || v === null) return roleCommandTimeoutMsDefault;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > roleCommandTimeoutMsMax) throw new MarsError('EINVAL', `timeout must be 1 to ${roleCommandTimeoutMsMax} ms`);
  return v;
}

function record(value: JsonValue | undefined): Record<string, JsonValue> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

/** The NBD clients a member's indicator reports for R (its export, if it serves R). */
function clientsOf(c: ResourceCommandContext, name: string, host: string): string[] {
  const clients = record(c.cluster.get(actualKey(name, host)))['nbdClients'];
  return Array.isArray(clients) ? clients.filter((x): x is string => typeof x === 'string') : [];
}

/** The split brain of R as the members' indicators show it, if any. */
export function splitBrainOf(c: ResourceCommandContext, name: string): SplitBrain | undefined {
  return detectSplitBrain(c.cluster.hostsListing(name).map((host) => historyOf(host, c.cluster.get(actualKey(name, host)))));
}

export function describeSplitBrain(s: SplitBrain): string {
  const sides = s.sides.map((side) => `${side.hosts.join('+')} on ${side.origin}'s history`).join(' vs ');
  const reports = s.reports.map((r) => `${r.host}: ${r.reason}`).join('; ');
  return s.atLog > 0 ? `split brain at log ${s.atLog}: ${sides}${reports === '' ? '' : ` (${reports})`}` : `split brain: ${reports}`;
}

function mustBeMember(c: ResourceCommandContext, name: string): void {
  const host = c.cluster.host;
  if (c.cluster.ownRecord()?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${host} is not a member of resource ${name}`);
}

/**
 * Why a planned handover would lose writes because of an emergency: a member was in
 * emergency mode (its device holds writes that are in no log), or this host stopped
 * before the last hole (it cannot replay up to the primary's state).
 */
function emergencyBlocksHandover(c: ResourceCommandContext, name: string, host: string, replayedLog: number | undefined): string | undefined {
  for (const member of c.cluster.hostsListing(name)) {
    if (member === host) continue;
    const actual = record(c.cluster.get(actualKey(name, member)));
    if (actual['emergency'] === true) {
      return `${member} is in emergency mode for ${name}: its device holds writes that are in no log, a planned handover would lose them (wait until it logs again and invalidate ${name} here, or primary --force)`;
    }
    const hole = actual['hole'];
    if (typeof hole === 'number' && hole > 0 && (replayedLog === undefined || replayedLog < hole)) {
      return `${host} stopped before the hole at log ${hole} left by an emergency on ${member}: invalidate ${name} here first (or primary --force)`;
    }
  }
  return undefined;
}

export async function makePrimary(c: ResourceCommandContext, args: Record<string, unknown>): Promise<unknown> {
  const name = nameArg(args);
  const force = args['force'] === true;
  const wait = args['wait'] === true;
  const timeoutMs = timeoutOf(args);
  const host = c.cluster.host;
  mustBeMember(c, name);
  const resource = c.resources.get(name);
  const old = c.resources.spec(name).primary ?? '';
  if (old === host && resource?.backend() !== undefined) return { name, primary: host, previous: host, tookMs: 0 };
  if (resource === undefined || resource.stateKind !== 'serving') {
    throw new MarsError('EINVAL', `resource ${name} does not run on ${host} (${resource?.failure ?? resource?.stateKind ?? 'not attached'}): up ${name} first`);
  }
  const dirty = resource.replica?.dirtyUntil;
  const allowDirty = force && args['allowInconsistent'] === true && dirty !== undefined && resource.replica?.synced === true;
  if (dirty !== undefined && !allowDirty) throw new MarsError('EINVAL', `${host} is not consistent for ${name}: before a crash its replay wrote the device up to ${dirty.logNumber}:${dirty.offsetBytes} of ${dirty.logHost}, and replay must get there again (from ${resource.replica?.persistedPosition?.logNumber ?? '?'}:${resource.replica?.persistedPosition?.offsetBytes ?? '?'}); refusing to make it primary (primary --force --allow-inconsistent takes over with that disk)`);
  if (resource.consistent !== true && !allowDirty) throw new MarsError('EINVAL', `${host} is not consistent for ${name} (its sync or the replay after it is unfinished): refusing to make it primary`);
  const split = splitBrainOf(c, name);
  if (split !== undefined && !force) throw new MarsError('EINVAL', `${describeSplitBrain(split)}; resolve it with invalidate on the losing side (or primary --force here)`);
  const hole = force ? undefined : emergencyBlocksHandover(c, name, host, resource.replica?.persistedPosition?.logNumber);
  if (hole !== undefined) throw new MarsError('EBUSY', hole);
  if (!force && old !== '' && old !== host) {
    let clients = clientsOf(c, name, old);
    if (clients.length > 0 && !wait) {
      // The old primary's list reaches this host a little after a client closes: give it a moment.
      await c.cluster.waitUntil('', () => clientsOf(c, name, old).length === 0, clientListSettleMs).catch(() => undefined);
      clients = clientsOf(c, name, old);
    }
    if (clients.length > 0 && !wait) {
      throw new MarsError('EBUSY', `${old} still has ${clients.length} NBD connection(s) open on ${name}: ${clients.join(', ')} (close them, or use --wait)`);
    }
    if (clients.length > 0) await c.cluster.waitUntil(`the NBD clients of ${name} on ${old} to close`, () => clientsOf(c, name, old).length === 0, timeoutMs);
  }
  const startedMs = Date.now();
  const status = force ? await resource.replica?.status() : undefined;
  const missingBytes = status?.fetch.restBytes ?? 0;
  if (force) {
    const key = desiredKey(name, host);
    await c.cluster.set(key, desiredValue({ ...parseDesired(c.cluster.get(key)), force: true }));
  }
  await c.cluster.set(primaryKey(name), host);
  void c.resources.schedule(name);
  await c.cluster
    .waitUntil(`${host} to serve ${name}`, () => c.resources.get(name)?.backend() !== undefined, timeoutMs)
    .catch((err: unknown) => {
      const reason = record(c.cluster.get(actualKey(name, host)))['reason'];
      throw new MarsError('TIMEOUT', `${(err as Error).message}; ${typeof reason === 'string' ? reason : 'the handover goes on'} (${host} stays designated)`);
    });
  return { name, primary: host, previous: old, tookMs: Date.now() - startedMs, ...(force ? { forced: true, missingBytes } : {}) };
}

export async function makeSecondary(c: ResourceCommandContext, args: Record<string, unknown>, clients: (name: string) => string[]): Promise<unknown> {
  const name = nameArg(args);
  const wait = args['wait'] === true;
  const timeoutMs = timeoutOf(args);
  const host = c.cluster.host;
  mustBeMember(c, name);
  const primary = c.resources.spec(name).primary ?? '';
  if (primary !== host) throw new MarsError('EINVAL', `${host} is not the primary of ${name} (${primary === '' ? 'none is designated' : `${primary} is`})`);
  const open = clients(name);
  if (open.length > 0 && !wait) throw new MarsError('EBUSY', `${name} has ${open.length} NBD connection(s) open on ${host}: ${open.join(', ')} (close them, or use --wait)`);
  if (open.length > 0) await c.cluster.waitUntil(`the NBD clients of ${name} to close`, () => clients(name).length === 0, timeoutMs);
  await c.cluster.set(primaryKey(name), '');
  void c.resources.schedule(name);
  await c.cluster.waitUntil(`${host} to stop serving ${name}`, () => c.resources.get(name)?.backend() === undefined, timeoutMs);
  return { name, primary: '' };
}

export async function invalidate(c: ResourceCommandContext, args: Record<string, unknown>): Promise<unknown> {
  const name = nameArg(args);
  const host = c.cluster.host;
  mustBeMember(c, name);
  const primary = c.resources.spec(name).primary ?? '';
  if (primary === host) throw new MarsError('EINVAL', `${host} is the primary of ${name}: invalidate runs on a secondary (make another host primary first)`);
  if (c.resources.get(name) === undefined) throw new MarsError('NOT_FOUND', `resource ${name} has no local data on ${host}`);
  await c.resources.invalidate(name);
  return { name, resync: primary === '' ? 'waits for a primary' : `from ${primary}` };
}
