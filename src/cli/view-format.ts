/**
 * What `marsadm view` and `view-MACRO` print, computed from the daemon's status answer.
 * Pure functions: the CLI prints their result, tests check them.
 */

export interface PositionJson {
  logNumber: number;
  logHost: string;
  offsetBytes: number;
  nextSeq: string;
}

export interface ResourceStatusJson {
  name: string;
  sizeBytes: number;
  devicePath: string;
  primary: string;
  state: 'recovering' | 'serving' | 'failed' | 'stopped';
  failure?: string | null;
  logger?: {
    logPosition: PositionJson;
    writtenBack: PositionJson;
    shadowBytes: number;
    writesWaiting: number;
    positionError?: string | null;
  } | null;
  logFiles: { name: string; sizeBytes: number }[];
}

export interface HostStatusJson {
  host: string;
  clusterId: string;
  listen: string;
  nbd: string;
  resources: ResourceStatusJson[];
}

export interface ResourceView {
  resource: string;
  host: string;
  sizeBytes: number;
  role: 'Primary' | 'Secondary' | 'NotYetPrimary';
  primarynode: string;
  isPrimary: boolean;
  isConsistent: boolean;
  isSplitBrain: boolean;
  diskState: 'UpToDate' | 'Recovery' | 'Detached';
  replState: 'Replicating' | 'Recovering' | 'Stopped';
  fetchRestBytes: number;
  replayRestBytes: number;
  syncRestBytes: number;
  logBytes: number;
  logFiles: number;
  currentLog: string | undefined;
  failure: string | undefined;
  /** Why a resource that is not failed is not served here (switched off, a secondary waiting). */
  detached: string | undefined;
  warning: string | undefined;
}

/** Bytes of log between two positions, from the sizes of the log files. */
export function logBytesBetween(from: PositionJson, to: PositionJson, files: { name: string; sizeBytes: number }[]): number {
  if (from.logNumber === to.logNumber) return Math.max(0, to.offsetBytes - from.offsetBytes);
  let total = 0;
  for (const f of files) {
    const n = Number(f.name.slice(4, 13));
    if (n === from.logNumber) total += Math.max(0, f.sizeBytes - from.offsetBytes);
    else if (n > from.logNumber && n < to.logNumber) total += f.sizeBytes;
  }
  return total + to.offsetBytes;
}

export function resourceView(host: string, r: ResourceStatusJson): ResourceView {
  const logger = r.logger ?? undefined;
  const isPrimary = r.primary === host && r.state === 'serving';
  return {
    resource: r.name,
    host,
    sizeBytes: r.sizeBytes,
    role: isPrimary ? 'Primary' : r.primary === host ? 'NotYetPrimary' : 'Secondary',
    primarynode: r.primary,
    isPrimary,
    isConsistent: r.state === 'serving',
    isSplitBrain: false,
    diskState: r.state === 'serving' ? 'UpToDate' : r.state === 'recovering' ? 'Recovery' : 'Detached',
    replState: r.state === 'serving' ? 'Replicating' : r.state === 'recovering' ? 'Recovering' : 'Stopped',
    fetchRestBytes: 0,
    replayRestBytes: logger === undefined ? 0 : logBytesBetween(logger.writtenBack, logger.logPosition, r.logFiles),
    syncRestBytes: 0,
    logBytes: r.logFiles.reduce((sum, f) => sum + f.sizeBytes, 0),
    logFiles: r.logFiles.length,
    currentLog: r.logFiles.at(-1)?.name,
    failure: r.state === 'stopped' ? undefined : (r.failure ?? undefined),
    detached: r.state === 'stopped' ? (r.failure ?? 'switched off (marsadm up R switches it on)') : undefined,
    warning: logger?.positionError ?? undefined,
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${units[unit]}`;
}

export function progressBar(done: number, total: number, widthChars = 30): string {
  const fraction = total <= 0 ? 1 : Math.min(1, Math.max(0, done / total));
  const filled = Math.round(fraction * widthChars);
  const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + '.'.repeat(widthChars - filled);
  return `[${bar}] ${(fraction * 100).toFixed(2)}%`;
}

/** The human view of one resource, in the manner of the original's `marsadm view`. */
export function formatResource(v: ResourceView): string {
  const lines = [
    `--------- resource ${v.resource}  size ${formatBytes(v.sizeBytes)}  primary ${v.primarynode}`,
    `${v.resource} ${v.diskState} ${v.replState} ${v.role} ${v.host}`,
  ];
  if (v.failure !== undefined) lines.push(`    failed: ${v.failure}`);
  if (v.detached !== undefined) lines.push(`    detached: ${v.detached}`);
  if (v.warning !== undefined) lines.push(`    warning: cannot save the writeback position: ${v.warning}`);
  if (v.currentLog !== undefined) lines.push(`    log: ${v.currentLog}  ${v.logFiles} file(s), ${formatBytes(v.logBytes)}`);
  if (v.isPrimary) {
    const written = v.logBytes - v.replayRestBytes;
    lines.push(`    writeback: ${progressBar(written, v.logBytes)}  rest ${formatBytes(v.replayRestBytes)}`);
  }
  return lines.join('\n');
}

export const macroNames = ['role', 'primarynode', 'is-primary', 'is-consistent', 'is-split-brain', 'fetch-rest', 'replay-rest', 'sync-rest', 'disk-state', 'repl-state'] as const;
export type MacroName = (typeof macroNames)[number];

export function macroValue(v: ResourceView, macro: MacroName): string {
  const bool = (b: boolean): string => (b ? '1' : '0');
  switch (macro) {
    case 'role':
      return v.role;
    case 'primarynode':
      return v.primarynode;
    case 'is-primary':
      return bool(v.isPrimary);
    case 'is-consistent':
      return bool(v.isConsistent);
    case 'is-split-brain':
      return bool(v.isSplitBrain);
    case 'fetch-rest':
      return String(v.fetchRestBytes);
    case 'replay-rest':
      return String(v.replayRestBytes);
    case 'sync-rest':
      return String(v.syncRestBytes);
    case 'disk-state':
      return v.diskState;
    case 'repl-state':
      return v.replState;
  }
}
