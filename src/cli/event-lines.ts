/**
 * The pure core of `marsadm events`: the state of this host as a list of objects (the
 * daemon, each host of the cluster, each resource, each member of it, each resource's
 * progress), and the lines that tell how one list became the next. Like `drbdsetup
 * events2`: `exists` lines for the first list and `exists -` after them, then `create`,
 * `change` and `destroy` lines. Progress changes are throttled: at most one `change
 * progress` line per resource per `progressIntervalMs`, except when an amount reaches 0
 * or starts from it (a finished sync or a caught-up replay shows at once).
 */
import { resourceView, type HostStatusJson } from './view-format.js';

export const progressIntervalMs = 1_000;

/** null: an amount that is not known (fetch-rest before a secondary has heard from its primary); the text line says `unknown`. */
export type FieldValue = string | number | boolean | null;
export type ObjectKind = 'daemon' | 'host' | 'resource' | 'member' | 'progress';

export interface EventObject {
  object: ObjectKind;
  /** Identity fields first (name, peer), then state. */
  fields: Record<string, FieldValue>;
}

export type EventType = 'exists' | 'create' | 'change' | 'destroy';

export interface EventLine {
  type: EventType;
  object: EventObject;
}

export function keyOf(o: EventObject): string {
  const f = o.fields;
  return `${o.object}/${String(f['name'] ?? '')}/${String(f['peer'] ?? '')}`;
}

/** The objects of one `view` and `view-hosts` answer, in a fixed order; `only` keeps one resource. */
export function objectsOf(status: HostStatusJson, hosts: readonly { host: string; address: string; state: string }[], only?: string): EventObject[] {
  const out: EventObject[] = [{ object: 'daemon', fields: { name: status.host, state: 'up' } }];
  for (const h of [...hosts].sort((a, b) => (a.host < b.host ? -1 : 1))) out.push({ object: 'host', fields: { name: h.host, address: h.address, state: h.state } });
  for (const r of [...status.resources].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (only !== undefined && r.name !== only) continue;
    const v = resourceView(status.host, r);
    out.push({
      object: 'resource',
      fields: { name: r.name, role: v.role, primary: v.primarynode, disk: v.diskState, repl: v.replState, consistent: v.isConsistent, 'split-brain': v.isSplitBrain, emergency: v.isEmergency, 'sync-mode': v.isFallenBack ? 'fallen-back' : (v.syncMode?.mode ?? 'async') },
    });
    for (const m of v.members) {
      out.push({
        object: 'member',
        fields: { name: r.name, peer: m.host, role: m.primary ? 'Primary' : 'Secondary', disk: m.diskState ?? 'Unknown', repl: m.replState ?? 'Unknown', reachable: m.unreachableS === null || m.unreachableS === undefined, emergency: m.emergency === true },
      });
    }
    const sync = v.sync;
    const syncPercent = sync === null || sync.sizeBytes === 0 ? 100 : Math.floor((100 * sync.doneBytes) / sync.sizeBytes);
    out.push({ object: 'progress', fields: { name: r.name, 'sync-percent': syncPercent, 'sync-rest': v.syncRestBytes, 'fetch-rest': v.fetchRestBytes, 'replay-rest': v.replayRestBytes } });
  }
  return out;
}

/** The lines for a first look. */
export function existsLines(objects: readonly EventObject[]): EventLine[] {
  return objects.map((object) => ({ type: 'exists', object }));
}

function sameFields(a: EventObject, b: EventObject): boolean {
  const ka = Object.keys(a.fields);
  return ka.length === Object.keys(b.fields).length && ka.every((k) => a.fields[k] === b.fields[k]);
}

/** A progress change that shows at once: an amount reached 0 or left it. */
function progressEdge(a: EventObject, b: EventObject): boolean {
  return ['sync-rest', 'fetch-rest', 'replay-rest'].some((k) => (a.fields[k] === 0) !== (b.fields[k] === 0));
}

export interface DiffState {
  /** The objects as last printed, by key. */
  shown: Map<string, EventObject>;
  /** When each resource's progress line was last printed. */
  progressShownMs: Map<string, number>;
}

export function diffState(objects: readonly EventObject[], nowMs: number): DiffState {
  const shown = new Map(objects.map((o) => [keyOf(o), o]));
  const progressShownMs = new Map(objects.filter((o) => o.object === 'progress').map((o) => [keyOf(o), nowMs]));
  return { shown, progressShownMs };
}

/** The lines from what was shown to `next`; updates `state` to what they show. */
export function diffLines(state: DiffState, next: readonly EventObject[], nowMs: number): EventLine[] {
  const lines: EventLine[] = [];
  const present = new Set<string>();
  for (const o of next) {
    const key = keyOf(o);
    present.add(key);
    const before = state.shown.get(key);
    if (before === undefined) {
      lines.push({ type: 'create', object: o });
    } else if (!sameFields(before, o)) {
      if (o.object === 'progress' && !progressEdge(before, o) && nowMs - (state.progressShownMs.get(key) ?? 0) < progressIntervalMs) continue;
      lines.push({ type: 'change', object: o });
    } else continue;
    state.shown.set(key, o);
    if (o.object === 'progress') state.progressShownMs.set(key, nowMs);
  }
  for (const [key, o] of [...state.shown]) {
    if (present.has(key) || o.object === 'daemon') continue;
    state.shown.delete(key);
    state.progressShownMs.delete(key);
    lines.push({ type: 'destroy', object: o });
  }
  return lines;
}

function textValue(v: FieldValue): string {
  if (v === null) return 'unknown';
  return typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v);
}

export function formatLine(line: EventLine, json: boolean): string {
  if (json) return JSON.stringify({ type: line.type, object: line.object.object, ...line.object.fields });
  return [line.type, line.object.object, ...Object.entries(line.object.fields).map(([k, v]) => `${k}:${textValue(v)}`)].join(' ');
}

/** The line after the first look's `exists` lines. */
export function existsEnd(json: boolean): string {
  return json ? JSON.stringify({ type: 'exists', object: '-' }) : 'exists -';
}
