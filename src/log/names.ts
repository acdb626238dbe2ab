/**
 * Log file names: `log-NNNNNNNNN-HOST`, as in the original MARS, so operators recognise
 * them. The 9-digit zero-padded number makes a plain sort by name follow the log order
 * for one host; `listLogFiles` sorts by number explicitly anyway and ignores every other
 * file of the resource directory (positions, temporaries).
 */
import { MarsError } from '../core/errors.js';
import type { Storage } from '../storage/storage.js';

export const logNumberDigits = 9;
export const logNumberMin = 1;
export const logNumberMax = 999_999_999;
export const logHostBytesMax = 64;

const hostPattern = /^[A-Za-z0-9._-]{1,64}$/;
const namePattern = /^log-([0-9]{9})-([A-Za-z0-9._-]{1,64})$/;

export interface LogFileName {
  readonly name: string;
  readonly logNumber: number;
  readonly host: string;
}

export function isValidLogHost(host: string): boolean {
  return hostPattern.test(host);
}

export function isValidLogNumber(logNumber: number): boolean {
  return Number.isInteger(logNumber) && logNumber >= logNumberMin && logNumber <= logNumberMax;
}

/** The file name of log `logNumber` written by `host`; EINVAL for a bad number or host. */
export function formatLogName(logNumber: number, host: string): string {
  if (!isValidLogNumber(logNumber)) throw new MarsError('EINVAL', `log number ${logNumber} is not in ${logNumberMin}..${logNumberMax}`);
  if (!isValidLogHost(host)) throw new MarsError('EINVAL', `host name ${JSON.stringify(host)} is not 1..${logHostBytesMax} of [A-Za-z0-9._-]`);
  return `log-${String(logNumber).padStart(logNumberDigits, '0')}-${host}`;
}

/** The parts of a log file name, or undefined when `name` is not one. */
export function parseLogName(name: string): LogFileName | undefined {
  const match = namePattern.exec(name);
  if (match === null) return undefined;
  const logNumber = Number(match[1]);
  if (!isValidLogNumber(logNumber)) return undefined;
  return { name, logNumber, host: match[2]! };
}

/** Log order: by number, then by host (two hosts may both hold a log N after a split brain). */
export function compareLogNames(a: LogFileName, b: LogFileName): number {
  if (a.logNumber !== b.logNumber) return a.logNumber - b.logNumber;
  return a.host < b.host ? -1 : a.host > b.host ? 1 : 0;
}

/** The log files of a storage in log order; other files are ignored. */
export async function listLogFiles(storage: Storage): Promise<LogFileName[]> {
  const names = await storage.list();
  const logs: LogFileName[] = [];
  for (const name of names) {
    const parsed = parseLogName(name);
    if (parsed !== undefined) logs.push(parsed);
  }
  return logs.sort(compareLogNames);
}

/**
 * Bytes of log between two positions of one history, from the sizes of its log files:
 * the rest of `from`'s log, every log between, and `to`'s offset; 0 when `to` is not after
 * `from`. Files whose names are not log names are ignored.
 */
export function logBytesBetween(from: { logNumber: number; offsetBytes: number }, to: { logNumber: number; offsetBytes: number }, files: readonly { name: string; sizeBytes: number }[]): number {
  if (from.logNumber === to.logNumber) return Math.max(0, to.offsetBytes - from.offsetBytes);
  if (from.logNumber > to.logNumber) return 0;
  let total = 0;
  for (const f of files) {
    const n = parseLogName(f.name)?.logNumber;
    if (n === from.logNumber) total += Math.max(0, f.sizeBytes - from.offsetBytes);
    else if (n !== undefined && n > from.logNumber && n < to.logNumber) total += f.sizeBytes;
  }
  return total + to.offsetBytes;
}
