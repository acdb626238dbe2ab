/**
 * The codec of a metadata file: one file per scope, `cluster.json` or `resource-R.json`,
 * pretty-printed JSON that a person can read, with a CRC32C over every byte before its
 * last field, so that a torn or rotted file is reported by name instead of being taken
 * for an empty or older state. Layout (docs/metadata.md has it byte by byte):
 *
 *   {
 *     "format": "mars-metadata",
 *     "version": 1,
 *     "scope": "resource/r1",
 *     "entries": { "KEY": { "value": ..., "lamport": "...", "owner": "...", "deleted": false }, ... },
 *     "crc32c": "8 hex digits"
 *   }
 */
import { crc32c } from '@node-rs/crc32';
import { MarsError } from '../core/errors.js';
import { decodeEntryJson, encodeEntryJson, isRecord, type EntryJson } from './entry-codec.js';
import type { Entry } from './entry.js';
import { clusterScope, isValidName, parseKey, resourceScope, scopeResource, type ScopeId } from './keys.js';
import { scopeKeysMax } from './limits.js';

export const metaFileFormat = 'mars-metadata';
export const metaFileVersion = 1;

const checksumTail = /,\n {2}"crc32c": "([0-9a-f]{8})"\n\}\n$/;

/** `cluster.json` or `resource-R.json`. */
export function scopeFileName(scope: ScopeId): string {
  const resource = scopeResource(scope);
  return resource === undefined ? 'cluster.json' : `resource-${resource}.json`;
}

/** The scope stored in a file of this name, or undefined if the name is not a metadata file's. */
export function scopeOfFileName(name: string): ScopeId | undefined {
  if (name === 'cluster.json') return clusterScope;
  const match = /^resource-(.+)\.json$/.exec(name);
  return match?.[1] !== undefined && isValidName(match[1]) ? resourceScope(match[1]) : undefined;
}

export function encodeScopeFile(scope: ScopeId, entries: ReadonlyMap<string, Entry>): Buffer {
  const sorted: Record<string, EntryJson> = {};
  for (const key of [...entries.keys()].sort()) sorted[key] = encodeEntryJson(entries.get(key)!);
  const text = JSON.stringify({ format: metaFileFormat, version: metaFileVersion, scope, entries: sorted }, null, 2);
  const body = Buffer.from(text.slice(0, -2), 'utf8'); // without the closing "\n}"
  const crc = crc32c(body).toString(16).padStart(8, '0');
  return Buffer.concat([body, Buffer.from(`,\n  "crc32c": "${crc}"\n}\n`, 'utf8')]);
}

function corrupt(fileName: string, reason: string): MarsError {
  return new MarsError('META_CORRUPT', `metadata file ${fileName} is corrupt: ${reason}`);
}

/** Decodes and checks a file; throws META_CORRUPT naming the file (as `shownAs`, e.g. its full path). */
export function decodeScopeFile(name: string, bytes: Buffer, shownAs = name): { scope: ScopeId; entries: Map<string, Entry> } {
  const fileName = shownAs;
  const expected = scopeOfFileName(name);
  if (expected === undefined) throw corrupt(fileName, 'not a metadata file name');
  const text = bytes.toString('utf8');
  const tail = checksumTail.exec(text);
  if (tail === null) throw corrupt(fileName, 'no checksum at its end (truncated or edited by hand?)');
  const bodyBytes = bytes.length - Buffer.byteLength(tail[0], 'utf8');
  const crc = crc32c(bytes.subarray(0, bodyBytes)).toString(16).padStart(8, '0');
  if (crc !== tail[1]) throw corrupt(fileName, `checksum ${crc} does not match the recorded ${tail[1]}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw corrupt(fileName, 'not JSON');
  }
  if (!isRecord(doc) || doc['format'] !== metaFileFormat) throw corrupt(fileName, 'not a MARS metadata file');
  if (doc['version'] !== metaFileVersion) throw corrupt(fileName, `unsupported format version ${JSON.stringify(doc['version'])}`);
  if (doc['scope'] !== expected) throw corrupt(fileName, `holds scope ${JSON.stringify(doc['scope'])}, expected ${expected}`);
  const raw = doc['entries'];
  if (!isRecord(raw)) throw corrupt(fileName, 'entries is not an object');
  const keys = Object.keys(raw);
  if (keys.length > scopeKeysMax) throw corrupt(fileName, `more than ${scopeKeysMax} keys`);
  const entries = new Map<string, Entry>();
  for (const key of keys) {
    if (parseKey(key)?.scope !== expected) throw corrupt(fileName, `key ${JSON.stringify(key.slice(0, 300))} does not belong to ${expected}`);
    const entry = decodeEntryJson(key, raw[key]);
    if (typeof entry === 'string') throw corrupt(fileName, entry);
    entries.set(key, entry);
  }
  return { scope: expected, entries };
}
