/**
 * The opening every small versioned JSON state file shares: parse, require an object,
 * require the format version this code writes. Anything else is a typed error naming
 * the file, never a silent default.
 */
import { MarsError, type MarsErrorCode } from './errors.js';

export function parseVersionedJson(raw: Buffer, fileName: string, formatVersion: number, code: MarsErrorCode = 'BAD_STATE_DIR'): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new MarsError(code, `${fileName}: not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new MarsError(code, `${fileName}: not an object`);
  const p = parsed as Record<string, unknown>;
  if (p['formatVersion'] !== formatVersion) throw new MarsError(code, `${fileName}: unknown format version ${String(p['formatVersion'])}`);
  return p;
}
