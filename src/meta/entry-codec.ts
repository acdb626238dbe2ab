/**
 * The JSON form of one entry, shared by the file codec and the wire codec, and its
 * validation: both read untrusted bytes. Lamport stamps are decimal strings (JSON numbers
 * cannot hold 64 bits); `seenBy` appears only on tombstones.
 */
import { canonicalJson, type JsonValue } from './json-value.js';
import { isValidName, parseKey } from './keys.js';
import { hostsMax, valueBytesMax } from './limits.js';
import { liveEntry, tombstone, type Entry } from './entry.js';

export interface EntryJson {
  value: JsonValue;
  lamport: string;
  owner: string;
  deleted: boolean;
  seenBy?: string[];
  sig?: string;
}

export function encodeEntryJson(entry: Entry): EntryJson {
  const out: EntryJson = { value: entry.value, lamport: entry.lamport.toString(), owner: entry.owner, deleted: entry.deleted };
  if (entry.deleted) out.seenBy = [...entry.seenBy];
  if (entry.sig !== undefined) out.sig = entry.sig;
  return out;
}

/** Base64 of a 64-byte Ed25519 signature. */
const signaturePattern = /^[A-Za-z0-9+/]{86}==$/;

const lamportPattern = /^(0|[1-9][0-9]{0,19})$/;
const lamportMax = (1n << 64n) - 1n;

export function isRecord(input: unknown): input is Record<string, unknown> {
  return typeof input === 'object' && input !== null && !Array.isArray(input);
}

/** Parses a decimal Lamport stamp, or returns undefined. */
export function parseLamport(input: unknown): bigint | undefined {
  if (typeof input !== 'string' || !lamportPattern.test(input)) return undefined;
  const stamp = BigInt(input);
  return stamp <= lamportMax ? stamp : undefined;
}

/** Validates the JSON form of the entry of `key`; returns the entry or a reason. */
export function decodeEntryJson(key: string, input: unknown): Entry | string {
  const info = parseKey(key);
  if (info === undefined) return `bad key ${JSON.stringify(key.slice(0, 300))}`;
  if (!isRecord(input)) return `${key}: entry is not an object`;
  const lamport = parseLamport(input['lamport']);
  if (lamport === undefined) return `${key}: bad lamport`;
  const owner = input['owner'];
  if (typeof owner !== 'string' || !isValidName(owner)) return `${key}: bad owner`;
  if (info.owner !== undefined && info.owner !== owner) return `${key}: written by ${owner}, not by its owner ${info.owner}`;
  const deleted = input['deleted'];
  if (typeof deleted !== 'boolean') return `${key}: bad deleted flag`;
  const sig = input['sig'];
  if (sig !== undefined && (typeof sig !== 'string' || !signaturePattern.test(sig))) return `${key}: bad signature`;
  const entry = deleted ? decodeTombstone(key, input, lamport, owner) : decodeValue(key, input, lamport, owner);
  return typeof entry === 'string' || sig === undefined ? entry : { ...entry, sig };
}

function decodeValue(key: string, input: Record<string, unknown>, lamport: bigint, owner: string): Entry | string {
  if (input['seenBy'] !== undefined) return `${key}: seenBy on a value`;
  const value = canonicalJson(input['value']);
  if (value === undefined) return `${key}: value is not plain JSON`;
  if (JSON.stringify(value).length > valueBytesMax) return `${key}: value larger than ${valueBytesMax} bytes`;
  return liveEntry(value, lamport, owner);
}

function decodeTombstone(key: string, input: Record<string, unknown>, lamport: bigint, owner: string): Entry | string {
  if (input['value'] !== null) return `${key}: tombstone with a value`;
  const seenBy = input['seenBy'];
  if (!Array.isArray(seenBy) || seenBy.length > hostsMax) return `${key}: bad seenBy`;
  for (const host of seenBy as unknown[]) {
    if (typeof host !== 'string' || !isValidName(host)) return `${key}: bad host in seenBy`;
  }
  return tombstone(lamport, owner, seenBy as string[]);
}
