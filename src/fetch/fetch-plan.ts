/**
 * What to fetch next, decided from the local copy and the source's list: the pure core
 * of the fetch client (no I/O). Logs are fetched strictly in order; a client moves to
 * log N+1 only once its copy of N has the source's final length of a complete N.
 */
import { parseLogName } from '../log/index.js';
import type { LogInfo } from './log-source.js';

/** The last local copy: the log being fetched (or last fetched) and its verified length. */
export interface LocalEnd {
  readonly name: string;
  readonly verifiedBytes: number;
}

export type FetchPlan =
  /** Fetch `logName` from `fromOffsetBytes`; `createCopy`: the local copy is new (log N+1, or the first). */
  | { readonly action: 'fetch'; readonly logName: string; readonly fromOffsetBytes: number; readonly createCopy: boolean }
  /** The source holds nothing to fetch yet (it is behind): ask again later. */
  | { readonly action: 'wait'; readonly reason: string }
  /** The source's list was cut (more logs than one reply holds): ask again from this number. */
  | { readonly action: 'relist'; readonly fromLogNumber: number }
  /** The source does not hold the log this host needs next: fetch from another member. */
  | { readonly action: 'unavailable'; readonly reason: string }
  /** The local copy and the source's log differ: the histories diverged. */
  | { readonly action: 'diverged'; readonly reason: string };

function logNumberOf(name: string): number {
  return parseLogName(name)?.logNumber ?? 0;
}

/**
 * The plan for a client whose last copy is `local` (undefined: none yet), given the source's
 * list. `localNames`: every local copy, so that a copy with a number the source lists under
 * another origin is found even when it is not the last one (the source has not reached the
 * last copy's number yet: without this the client would wait for it for ever).
 * `primarySource`: the source is the designated primary (fetch dialled it as such); its
 * own newest log, still open, is then the newest log of the history, and a local copy with
 * a higher number belongs to another history (see `planWithoutEntry`).
 */
export function planFetch(local: LocalEnd | undefined, logs: readonly LogInfo[], more: boolean, startLogNumber: number, localNames: readonly string[] = [], startOffsetBytes = 0, primarySource?: string): FetchPlan {
  const other = otherOrigin(localNames, logs);
  if (other !== undefined) return { action: 'diverged', reason: other };
  if (local === undefined) {
    const first = logs.find((log) => logNumberOf(log.name) >= startLogNumber);
    // A source that lists later logs but not the one replay starts in has passed it (deleted
    // it, or joined by a sync after it): a copy of a later log would never be replayed.
    if (first !== undefined && startLogNumber > 0 && logNumberOf(first.name) > startLogNumber) return { action: 'unavailable', reason: `the source no longer holds log ${startLogNumber}, where replay starts` };
    // The first copy begins where replay will start (a sync's start): nothing before it is ever needed here.
    const fromOffsetBytes = first !== undefined && logNumberOf(first.name) === startLogNumber ? startOffsetBytes : 0;
    if (first !== undefined) return { action: 'fetch', logName: first.name, fromOffsetBytes, createCopy: true };
    if (more) return { action: 'relist', fromLogNumber: logNumberOf(logs.at(-1)?.name ?? '') + 1 };
    const beyond = beyondPrimary(`replay here starts in log ${startLogNumber}`, logs, primarySource);
    return beyond ?? { action: 'wait', reason: `the source holds no log from number ${startLogNumber} on` };
  }
  const localNumber = logNumberOf(local.name);
  const index = logs.findIndex((log) => log.name === local.name);
  const entry = logs[index];
  if (entry === undefined) return planWithoutEntry(local, localNumber, logs, more, primarySource);
  if (local.verifiedBytes > entry.durableBytes) {
    if (entry.complete) return { action: 'diverged', reason: `the local copy of ${local.name} has ${local.verifiedBytes} bytes, more than the source's complete log of ${entry.durableBytes} bytes` };
    // The source is behind (a member still fetching): the server waits until it has the bytes.
    return { action: 'fetch', logName: local.name, fromOffsetBytes: local.verifiedBytes, createCopy: false };
  }
  if (local.verifiedBytes < entry.durableBytes || !entry.complete) return { action: 'fetch', logName: local.name, fromOffsetBytes: local.verifiedBytes, createCopy: false };
  const next = logs[index + 1];
  if (next === undefined) return more ? { action: 'relist', fromLogNumber: localNumber + 1 } : { action: 'unavailable', reason: `${local.name} is complete at the source, which lists no later log` };
  if (logNumberOf(next.name) !== localNumber + 1) return { action: 'unavailable', reason: `the source holds ${next.name} after ${local.name}, not log ${localNumber + 1}` };
  return { action: 'fetch', logName: next.name, fromOffsetBytes: 0, createCopy: true };
}

/** A local copy whose number the source lists under another origin: why the histories differ. */
function otherOrigin(localNames: readonly string[], logs: readonly LogInfo[]): string | undefined {
  if (localNames.length === 0) return undefined;
  const listed = new Map(logs.map((log) => [logNumberOf(log.name), log.name]));
  for (const name of localNames) {
    const theirs = listed.get(logNumberOf(name));
    if (theirs !== undefined && theirs !== name) return `this host holds ${name}, the source ${theirs}`;
  }
  return undefined;
}

/**
 * The source does not list the local copy. Another log of its number: the histories
 * differ. A later log: the source no longer holds it. Only earlier ones: the source is
 * behind (a member still fetching, a new primary still replaying) -- unless the source is
 * the designated primary and its newest log is its own, still open: it writes the history's
 * newest log, and a copy beyond it was written by another primary (the old one, after
 * `primary --force` elsewhere: the new primary's next log may take a number below the old
 * one's, for example when it stopped before the old one's emergency hole). Waiting for the
 * source to reach the number would wait for ever: fetch fails with the advice to
 * invalidate, and tries again (a primary that was primary before, taking over in a planned
 * handover, reads the same way until it has fetched the first log written since).
 */
function planWithoutEntry(local: LocalEnd, localNumber: number, logs: readonly LogInfo[], more: boolean, primarySource: string | undefined): FetchPlan {
  const same = logs.find((log) => logNumberOf(log.name) === localNumber);
  if (same !== undefined) return { action: 'diverged', reason: `this host holds ${local.name}, the source ${same.name}` };
  if (logs.some((log) => logNumberOf(log.name) > localNumber)) return { action: 'unavailable', reason: `the source no longer holds ${local.name}` };
  if (more && logs.length > 0) return { action: 'relist', fromLogNumber: logNumberOf(logs.at(-1)!.name) + 1 };
  return beyondPrimary(`this host holds ${local.name}`, logs, primarySource) ?? { action: 'wait', reason: `the source does not hold ${local.name} yet` };
}

/** With only earlier logs listed, completely: whether the source is the primary writing the newest log of the history (then what this host holds or needs is another history's, unless the primary is still catching up). */
function beyondPrimary(what: string, logs: readonly LogInfo[], primarySource: string | undefined): FetchPlan | undefined {
  const newest = logs.at(-1);
  if (primarySource === undefined || newest === undefined || newest.complete || parseLogName(newest.name)?.host !== primarySource) return undefined;
  // Not 'diverged' (final): a new primary that was primary before and is still fetching the
  // logs written since reads the same way until it has the first of them; fetch tries again.
  return { action: 'unavailable', reason: `${what}, beyond ${newest.name}, the newest log of the primary ${primarySource}: another history (after primary --force elsewhere: invalidate this host), unless ${primarySource} is still catching up` };
}

/**
 * The local copies a syncing member drops before it fetches from its sync's start (replay
 * has not run: no copy has been replayed, and none is needed before that start).
 * `startIsNew`: the source has just said the start (the sync began, or began again from a
 * new source after a role change): every copy there is came from an earlier start, from a
 * log the new source may no longer hold, or of another history, so all go. Otherwise (the
 * start read from the sync state at open): copies that all lie before the start's log, left
 * by a crash between saving a new start and dropping them, go; fetch would otherwise go on
 * from the last of them and never reach the logs replay needs.
 */
export function staleSyncCopies(localNames: readonly string[], startLogNumber: number, startIsNew: boolean): string[] {
  const last = localNames.at(-1);
  if (last === undefined) return [];
  if (startIsNew || logNumberOf(last) < startLogNumber) return [...localNames];
  return [];
}

/** Bytes the source holds that the local copies lack, from the local copy's log on (MARS's fetch-rest). */
export function fetchRestBytes(local: LocalEnd | undefined, logs: readonly LogInfo[], startLogNumber: number, startOffsetBytes = 0): number {
  const fromNumber = local === undefined ? startLogNumber : logNumberOf(local.name);
  let restBytes = 0;
  for (const log of logs) {
    const number = logNumberOf(log.name);
    if (number < fromNumber) continue;
    if (local !== undefined && log.name === local.name) restBytes += Math.max(0, log.durableBytes - local.verifiedBytes);
    else if (local === undefined && number === fromNumber) restBytes += Math.max(0, log.durableBytes - startOffsetBytes);
    else if (local === undefined || number > fromNumber) restBytes += log.durableBytes;
  }
  return restBytes;
}
