/**
 * `marsadm set-sync-mode R async|near-sync [--members K] [--timeout-ms T]`: the resource's
 * sync mode is a shared key of the resource's metadata (`resource/R/sync-mode`, last
 * writer wins), so every member knows it: the primary gates FLUSH and FUA on it
 * (src/logger/near-sync.ts), the secondaries fdatasync and acknowledge promptly.
 */
import { MarsError } from '../core/errors.js';
import { asyncMode, nearSyncMembersDefault, nearSyncTimeoutMsDefault, nearSyncTimeoutMsMax, type SyncMode } from '../logger/near-sync.js';
import type { Cluster } from './cluster.js';
import { nameArg, type ResourceCommandContext } from './resource-commands.js';

export function syncModeKey(resource: string): string {
  return `resource/${resource}/sync-mode`;
}

/** The sync mode a metadata value stands for; anything unreadable is asynchronous (the default). */
export function parseSyncMode(value: unknown): SyncMode {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return asyncMode;
  const v = value as Record<string, unknown>;
  const members = v['members'];
  const timeoutMs = v['timeoutMs'];
  if (v['mode'] !== 'near-sync' || !isWhole(members, 1, 255) || !isWhole(timeoutMs, 1, nearSyncTimeoutMsMax)) return asyncMode;
  return { mode: 'near-sync', members, timeoutMs };
}

export function syncModeOf(cluster: Cluster, resource: string): SyncMode {
  return parseSyncMode(cluster.get(syncModeKey(resource)));
}

function isWhole(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

/**
 * Checks the CLI's words (one line each when wrong): the mode, K (whole, 1 to the number
 * of other members), T (whole milliseconds, 1 to an hour). `otherMembers` is undefined
 * where the membership is not known (marsadm before asking marsd).
 */
export function checkSyncModeArgs(mode: unknown, members: unknown, timeoutMs: unknown, otherMembers?: number): SyncMode {
  if (mode !== 'async' && mode !== 'near-sync') throw new MarsError('EINVAL', `bad sync mode ${JSON.stringify(mode)}: async or near-sync`);
  const k = members ?? nearSyncMembersDefault;
  const t = timeoutMs ?? nearSyncTimeoutMsDefault;
  if (!isWhole(k, 1, 255)) throw new MarsError('EINVAL', `bad --members ${JSON.stringify(members)}: a whole number of members, at least 1`);
  if (!isWhole(t, 1, nearSyncTimeoutMsMax)) throw new MarsError('EINVAL', `bad --timeout-ms ${JSON.stringify(timeoutMs)}: whole milliseconds, 1 to ${nearSyncTimeoutMsMax}`);
  if (mode === 'async') return asyncMode;
  if (otherMembers !== undefined && k > otherMembers) {
    throw new MarsError('EINVAL', `bad --members ${k}: the resource has ${otherMembers} member(s) besides the primary`);
  }
  return { mode, members: k, timeoutMs: t };
}

/** The control command: validates against the resource's membership and writes the key; answers the mode now in force. */
export async function setSyncMode(c: ResourceCommandContext, args: Record<string, unknown>): Promise<SyncMode> {
  const name = nameArg(args);
  if (c.cluster.ownRecord()?.resources.includes(name) !== true) throw new MarsError('NOT_FOUND', `${c.cluster.host} is not a member of resource ${name}`);
  const members = c.cluster.hostsListing(name);
  const mode = checkSyncModeArgs(args['mode'], args['members'] ?? undefined, args['timeoutMs'] ?? undefined, members.length - 1);
  await c.cluster.set(syncModeKey(name), mode.mode === 'async' ? { mode: 'async' } : { mode: mode.mode, members: mode.members, timeoutMs: mode.timeoutMs });
  return mode;
}
