/**
 * The role commands: `primary R [--force] [--wait]`, `secondary R`, `invalidate R`. They
 * check at the edge and refuse with one clear line, changing nothing; then they set the
 * metadata (the designated primary is a shared key, last writer wins) and wait, bounded
 * and event-driven, until the reconcilers of the hosts involved have carried it out:
 *
 *   primary R (planned):   checked first (this host fetches and replays, the old primary
 *                          is reachable); the old primary stops serving (its NBD clients
 *                          must be gone, or --wait waits for that), its indicator says where
 *                          its log ends; this host replays up to there, then starts log N+1
 *                          as primary. Not done within the timeout: rolled back, the role
 *                          goes back to the old primary, which serves again.
 *   primary R --force:     this host becomes primary with what it has, at once, and says
 *                          how much of the old primary's log it knows it is missing (while
 *                          the old primary is alive and reachable: only with --yes).
 *   secondary R:           the primary stops serving; no host is designated.
 *   invalidate R:          a secondary forgets its history and resyncs from the primary.
 */
import { MarsError } from '../core/errors.js';
import { actualKey, desiredKey, primaryKey, type JsonValue } from '../meta/index.js';
import { parseLogName } from '../log/index.js';
import { desiredValue, detectSplitBrain, detectSplitBrains, forcedLossOf, historyOf, knownFromMember, knownFromOldIndicator, mergeKnownLogs, parseDesired, resolutionOf, takeoverConsistency, type ForcedLoss, type KnownLog, type SplitBrain } from '../strategy/index.js';
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

/** The split brain of R as the members' indicators show it, if any (the earliest, when there are several). */
export function splitBrainOf(c: ResourceCommandContext, name: string): SplitBrain | undefined {
  return detectSplitBrain(c.cluster.hostsListing(name).map((host) => historyOf(host, c.cluster.get(actualKey(name, host)))));
}

/** Every split brain of R as the members' indicators show them, earliest first. */
export function splitBrainsOf(c: ResourceCommandContext, name: string): SplitBrain[] {
  return detectSplitBrains(c.cluster.hostsListing(name).map((host) => historyOf(host, c.cluster.get(actualKey(name, host)))));
}

/** One line: where the histories part, who is on which side and what it would lose, and the commands per side. */
export function describeSplitBrain(s: SplitBrain, resource: string, primary: string): string {
  const place = s.atLog === 0 ? '' : s.atOffsetBytes > 0 ? ` in log ${s.atLog} at byte ${s.atOffsetBytes}` : ` at log ${s.atLog}`;
  const sides = s.sides.map((side) => `${side.hosts.join('+')} on ${side.origin}'s history (${side.lossBytes} bytes lost if the other side wins)`).join(' vs ');
  const reports = s.reports.map((r) => `${r.host}: ${r.reason}`).join('; ');
  const ways = resolutionOf(s, resource, primary)
    .filter((how) => how.steps.length > 0)
    .map((how) => `${s.sides.length >= 2 ? `to keep ${how.keep}'s history` : 'to resolve it'}: ${how.steps.map((step) => `on ${step.host}: ${step.command}`).join(', then ')}`)
    .join('; ');
  const what = s.atLog > 0 ? `${sides}${reports === '' ? '' : ` (${reports})`}` : reports;
  return `split brain of ${resource}${place}: ${what}${ways === '' ? '' : `; ${ways}`}`;
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

/** How long a handover that failed waits for the old primary to serve again after the role went back to it. */
export const rollbackWaitMsMax = 30_000;

function isAlive(c: ResourceCommandContext, host: string): boolean {
  return host === c.cluster.host || c.cluster.peers.alive(host);
}

/** "unreachable since 2026-01-01T12:00:00.000Z (40 s)", or "unreachable" when the time is not known. */
function unreachableText(c: ResourceCommandContext, host: string): string {
  const sinceMs = c.unreachableSinceMs?.(host);
  if (sinceMs === undefined) return 'unreachable';
  return `unreachable since ${new Date(sinceMs).toISOString()} (${Math.max(0, Math.round((Date.now() - sinceMs) / 1000))} s)`;
}

/** The member other than `except` that is most up to date by the indicators (consistent first, then the furthest log). */
export function mostUpToDate(c: ResourceCommandContext, name: string, except: string): string | undefined {
  let best: { host: string; rank: [number, number, number] } | undefined;
  for (const host of c.cluster.hostsListing(name)) {
    if (host === except) continue;
    const a = record(c.cluster.get(actualKey(name, host)));
    const num = (key: string): number => (typeof a[key] === 'number' ? a[key] : 0);
    const rank: [number, number, number] = [a['consistent'] === true ? 1 : 0, Math.max(num('fetchedLog'), num('needsLog')), isAlive(c, host) ? 1 : 0];
    const better = best === undefined || rank[0] > best.rank[0] || (rank[0] === best.rank[0] && (rank[1] > best.rank[1] || (rank[1] === best.rank[1] && rank[2] > best.rank[2])));
    if (better) best = { host, rank };
  }
  return best?.host;
}

/**
 * A planned handover is checked before anything changes: this host fetches and replays
 * (otherwise it could never catch up with the old primary's log), and the old primary is
 * reachable (otherwise it could never hand over: that is a failover, --force).
 */
function checkPlannedHandover(c: ResourceCommandContext, name: string, host: string, old: string): void {
  const desired = parseDesired(c.cluster.get(desiredKey(name, host)));
  for (const [which, on] of [['fetch', desired.fetch], ['replay', desired.replay]] as const) {
    if (!on) throw new MarsError('EINVAL', `the ${which} of ${name} is paused on ${host} (pause-${which}): it could not catch up with ${old === '' ? 'the log' : `the log of ${old}`}; resume-${which} ${name} first`);
  }
  if (old === '' || old === host || isAlive(c, old)) return;
  const best = mostUpToDate(c, name, old);
  const advice = best === undefined ? `use primary ${name} --force on the best secondary` : `use primary ${name} --force on the best secondary (${best} is most up to date)`;
  throw new MarsError('EBUSY', `${old}, the primary of ${name}, is ${unreachableText(c, old)}: a planned handover needs it; ${advice}`);
}

/** primary --force while the old primary is alive and reachable makes two histories: only with --yes. */
function checkForcedTakeover(c: ResourceCommandContext, name: string, host: string, old: string, yes: boolean): void {
  if (old === '' || old === host || !isAlive(c, old) || yes) return;
  const serving = record(c.cluster.get(actualKey(name, old)))['isPrimary'] === true;
  throw new MarsError(
    'EBUSY',
    `${old}, the primary of ${name}, is alive and reachable${serving ? ' and serves it' : ''}: primary --force would make a second history (a split brain); use primary ${name} without --force for a planned handover, or add --yes to force anyway`,
  );
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
  const replica = resource.replica;
  const consistency = takeoverConsistency({
    host,
    resource: name,
    force,
    allowInconsistent: args['allowInconsistent'] === true,
    consistent: resource.consistent === true,
    synced: replica?.synced === true,
    dirtyUntil: replica?.dirtyUntil,
    persistedPosition: replica?.persistedPosition,
    offHistory: replica?.offHistory,
  });
  if (consistency.kind === 'refused') throw new MarsError('EINVAL', consistency.reason);
  const split = splitBrainOf(c, name);
  if (split !== undefined && !force) throw new MarsError('EINVAL', `${describeSplitBrain(split, name, old)}; or take over with this host's history: primary ${name} --force`);
  const hole = force ? undefined : emergencyBlocksHandover(c, name, host, resource.replica?.persistedPosition?.logNumber);
  if (hole !== undefined) throw new MarsError('EBUSY', hole);
  if (force) checkForcedTakeover(c, name, host, old, args['yes'] === true);
  else checkPlannedHandover(c, name, host, old);
  if (!force && old !== '' && old !== host) await waitForClients(c, name, old, wait, timeoutMs);
  const startedMs = Date.now();
  const loss = force ? await forcedLoss(c, name, old) : undefined;
  if (force) {
    const key = desiredKey(name, host);
    await c.cluster.set(key, desiredValue({ ...parseDesired(c.cluster.get(key)), force: true }));
  }
  await c.cluster.set(primaryKey(name), host);
  void c.resources.schedule(name);
  const serving = (): boolean => c.resources.get(name)?.backend() !== undefined;
  try {
    await c.cluster.waitUntil(`${host} to serve ${name}`, serving, timeoutMs);
  } catch (err) {
    if (serving()) return { name, primary: host, previous: old, tookMs: Date.now() - startedMs };
    const reason = record(c.cluster.get(actualKey(name, host)))['reason'];
    const why = `${(err as Error).message}${typeof reason === 'string' ? ` (${reason.split(';')[0]})` : ''}`;
    if (force || old === '' || old === host) throw new MarsError('TIMEOUT', `${why}; ${host} stays designated: view ${name} shows how far it got`);
    throw await rollBack(c, name, host, old, why);
  }
  return { name, primary: host, previous: old, tookMs: Date.now() - startedMs, ...(loss === undefined ? {} : { forced: true, missingBytes: loss.known ? loss.lostBytes : null, missingExact: loss.exact, missingFrom: loss.from }) };
}

/**
 * What a forced takeover by this host loses of the old primary's log, as far as the
 * cluster knows it: from the old primary's indicator, every other member's indicator (the
 * end of its copy, the last log it replayed whole) and what this host's fetch last heard.
 */
async function forcedLoss(c: ResourceCommandContext, name: string, old: string): Promise<ForcedLoss> {
  const replica = c.resources.get(name)?.replica;
  const status = await replica?.status();
  const copy = status?.fetch.logName === null || status === undefined ? undefined : parseLogName(status.fetch.logName);
  const local = copy === undefined ? undefined : { logNumber: copy.logNumber, origin: copy.host, offsetBytes: status?.fetch.localBytes ?? 0 };
  if (old === '' || old === c.cluster.host) return { lostBytes: 0, exact: true, known: true, from: [] };
  const actual = record(c.cluster.get(actualKey(name, old)));
  const fromMembers = c.cluster
    .hostsListing(name)
    .filter((member) => member !== old && member !== c.cluster.host)
    .flatMap((member) => knownFromMember(old, member, c.cluster.get(actualKey(name, member))));
  const fromFetch: KnownLog[] = (replica?.knownSourceLogs ?? []).flatMap((log) => {
    const p = parseLogName(log.name);
    return p === undefined ? [] : [{ logNumber: p.logNumber, origin: p.host, durableBytes: log.durableBytes, final: log.complete, from: ["this host's fetch"] }];
  });
  // The old primary's log ends for good only once it no longer serves and has said where.
  const ended = historyOf(old, actual).logEnd !== undefined && actual['isPrimary'] !== true;
  return forcedLossOf(local, mergeKnownLogs(knownFromOldIndicator(old, actual), fromMembers, fromFetch), ended);
}

/** The old primary's NBD clients must be gone before it can stop serving (or, with --wait, are waited for). */
async function waitForClients(c: ResourceCommandContext, name: string, old: string, wait: boolean, timeoutMs: number): Promise<void> {
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

/**
 * A planned handover that did not finish in time is undone: the role goes back to the old
 * primary, which serves again once it has replayed whatever this host might have written
 * (nothing: this host never served). Returns the error for the operator, which says
 * whether the old primary serves again or what to run to finish either way.
 */
async function rollBack(c: ResourceCommandContext, name: string, host: string, old: string, why: string): Promise<MarsError> {
  if (c.cluster.get(primaryKey(name)) !== host) return new MarsError('TIMEOUT', `${why}; the designated primary changed meanwhile (view ${name})`);
  const handoverLamport = c.cluster.node.entry(primaryKey(name))?.lamport ?? 0n;
  await c.cluster.set(primaryKey(name), old);
  const rollbackLamport = c.cluster.node.entry(primaryKey(name))?.lamport ?? 0n;
  const rolledBackAtMs = Date.now();
  void c.resources.schedule(name);
  // The old primary serves again when its indicator, written after it saw the rollback,
  // says so; or when it says so from before the handover (it never reacted to it) and no
  // newer word has come for a moment (a stop it may have made would have reached here).
  const oldServes = (): boolean => {
    const entry = c.cluster.node.entry(actualKey(name, old));
    if (entry === undefined || record(entry.value)['isPrimary'] !== true) return false;
    return entry.lamport > rollbackLamport || (entry.lamport < handoverLamport && Date.now() - rolledBackAtMs >= clientListSettleMs);
  };
  const back = await c.cluster.waitUntil(`${old} to serve ${name} again`, oldServes, rollbackWaitMsMax).then(
    () => true,
    () => false,
  );
  if (back) return new MarsError('TIMEOUT', `${why}; handover rolled back: ${old} serves ${name} again`);
  return new MarsError(
    'TIMEOUT',
    `${why}; handover rolled back to ${old}, which does not serve ${name} yet (view ${name} says why): to finish the rollback run marsadm primary ${name} on ${old}; to take over anyway run marsadm primary ${name} --force --yes on ${host}`,
  );
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
  const force = args['force'] === true;
  if (open.length > 0 && !wait && !force) {
    throw new MarsError('EBUSY', `secondary refused: ${name} has ${open.length} NBD connection(s) open: ${open.map((a) => `${host} ${a}`).join(', ')} (close them, use --wait to wait for them, or --force to disconnect them)`);
  }
  if (open.length > 0 && !force) await c.cluster.waitUntil(`the NBD clients of ${name} to close`, () => clients(name).length === 0, timeoutMs);
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
