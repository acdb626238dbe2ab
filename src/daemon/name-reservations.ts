/**
 * Host names reserved at join-cluster time. join-cluster writes nothing on the member it
 * joins through, and the joiner's host record reaches the cluster only when its marsd
 * starts: until then a second host could join under the same name and be refused by
 * every peer later. So the member that served a join records the name, with the joiner's
 * IP address, in a key it owns (`cluster/reserved/MEMBER`, a map NAME -> { ip, atMs });
 * every member refuses a join, and a first metadata link, under a name reserved for
 * another address. A reservation ends when the host's record exists (the record rules
 * then), after `reservationTtlMs`, or when the map is full (the oldest goes).
 */
import type { JsonValue } from '../meta/index.js';

/** Names one member keeps reserved at most (the oldest goes first). */
export const reservationsMax = 64;
/** A joiner whose marsd never starts frees its name after this long. */
export const reservationTtlMs = 7 * 24 * 3600 * 1000;

export const reservationKeyPrefix = 'cluster/reserved/';

export function reservationKey(member: string): string {
  return `${reservationKeyPrefix}${member}`;
}

export interface Reservation {
  readonly ip: string;
  readonly atMs: number;
}

export function parseReservations(value: JsonValue | undefined): Map<string, Reservation> {
  const out = new Map<string, Reservation>();
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [name, r] of Object.entries(value)) {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) continue;
    const ip = r['ip'];
    const atMs = r['atMs'];
    if (typeof ip === 'string' && typeof atMs === 'number' && Number.isFinite(atMs)) out.set(name, { ip, atMs });
  }
  return out;
}

/** The map with `name` reserved for `ip` now, expired entries dropped, at most reservationsMax kept. */
export function withReservation(value: JsonValue | undefined, name: string, ip: string, nowMs: number): JsonValue {
  const kept = [...parseReservations(value).entries()].filter(([n, r]) => n !== name && nowMs - r.atMs < reservationTtlMs);
  kept.push([name, { ip, atMs: nowMs }]);
  kept.sort(([, a], [, b]) => a.atMs - b.atMs);
  const out: Record<string, JsonValue> = {};
  for (const [n, r] of kept.slice(-reservationsMax)) out[n] = { ip: r.ip, atMs: r.atMs };
  return out;
}

/** The member whose reservation of `name` is for another address than `ip`, if any (unexpired). */
export function reservedElsewhere(values: Iterable<[string, JsonValue]>, name: string, ip: string, nowMs: number): { member: string; reservation: Reservation } | undefined {
  for (const [member, value] of values) {
    const r = parseReservations(value).get(name);
    if (r !== undefined && r.ip !== ip && nowMs - r.atMs < reservationTtlMs) return { member, reservation: r };
  }
  return undefined;
}
