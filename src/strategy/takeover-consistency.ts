/**
 * Whether a member's disk may become the primary's, as far as its own consistency goes:
 * the one place `marsadm primary` decides it, with the words the operator reads. Pure: the
 * shell (src/daemon/role-commands.ts) gathers the facts from its replica.
 *
 * Three cases, each with its own way out:
 * - below its dirty mark (a crash; replay has not got back to where it had written the
 *   device): the disk holds a mix of older and newer blocks of the *current* history.
 *   Replay fixes it in seconds; `primary --force --allow-inconsistent` takes over with the
 *   disk as it is, like a single disk after a crash (the documented meaning of the flag);
 * - sync or the replay after it unfinished: refused, also with the flag (the disk is a
 *   half-copied mix; nothing to take over with);
 * - off the history (replica phase `off-history`: the dirty mark or the sync's end lies on
 *   a history a `primary --force` elsewhere cut short, or this host wrote its device
 *   directly in emergency mode): its device holds writes the current history does not
 *   have. Refused even with `--force --allow-inconsistent`: a primary made of it would
 *   start its log from a disk no log describes, so every member that followed it would
 *   replay onto a disk without those writes and silently differ from it; only
 *   `invalidate` (a full sync from the primary) makes the copy usable again. The refusal
 *   says that, and why, instead of the generic "not consistent".
 */

/** A place in the log, as the dirty mark and the replay position are shown. */
export interface TakeoverPlace {
  readonly logNumber: number;
  readonly logHost: string;
  readonly offsetBytes: number;
}

export interface TakeoverConsistencyFacts {
  readonly host: string;
  readonly resource: string;
  readonly force: boolean;
  readonly allowInconsistent: boolean;
  /** The member's disk is consistent (the resource's own word). */
  readonly consistent: boolean;
  /** Sync done (or not needed): consistent but for a dirty mark. */
  readonly synced: boolean;
  /** While replay is below its dirty mark: the mark. */
  readonly dirtyUntil: TakeoverPlace | undefined;
  /** Where replay has persisted (shown beside the mark). */
  readonly persistedPosition: TakeoverPlace | undefined;
  /** Off the history: why (replica phase `off-history`). */
  readonly offHistory: string | undefined;
}

export type TakeoverConsistency = { readonly kind: 'allowed'; readonly overridden: boolean } | { readonly kind: 'refused'; readonly reason: string };

/** Whether the member may take over, and if it may only by `--allow-inconsistent`. */
export function takeoverConsistency(f: TakeoverConsistencyFacts): TakeoverConsistency {
  const { host, resource: name } = f;
  if (f.offHistory !== undefined) {
    return {
      kind: 'refused',
      reason: `${host} cannot become primary of ${name}: its device holds writes the current history does not have (${f.offHistory}); no replay removes them and primary --force --allow-inconsistent does not take over with them: run marsadm invalidate ${name} on ${host} (copy data out of its device first if it matters), or make a consistent member primary`,
    };
  }
  const dirty = f.dirtyUntil;
  const allowDirty = f.force && f.allowInconsistent && dirty !== undefined && f.synced;
  if (dirty !== undefined && !allowDirty) {
    const from = f.persistedPosition;
    return {
      kind: 'refused',
      reason: `${host} is not consistent for ${name}: before a crash its replay wrote the device up to ${dirty.logNumber}:${dirty.offsetBytes} of ${dirty.logHost}, and replay must get there again (from ${from?.logNumber ?? '?'}:${from?.offsetBytes ?? '?'}); refusing to make it primary (primary --force --allow-inconsistent takes over with that disk)`,
    };
  }
  if (!f.consistent && !allowDirty) return { kind: 'refused', reason: `${host} is not consistent for ${name} (its sync or the replay after it is unfinished): refusing to make it primary` };
  return { kind: 'allowed', overridden: allowDirty };
}
