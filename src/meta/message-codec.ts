/**
 * The wire form of metadata messages: UTF-8 JSON in a frame of type `meta` (see
 * docs/network.md). JSON keeps the protocol readable in a packet capture; the frame
 * carries the checksum. Decoding is the edge: every field is checked against the limits
 * and anything else becomes META_BAD_MESSAGE before the core sees it.
 */
import { MarsError } from '../core/errors.js';
import { decodeEntryJson, encodeEntryJson, isRecord, parseLamport } from './entry-codec.js';
import { isValidScope, parseKey } from './keys.js';
import { batchEntriesMax, digestBucketsCount, metaMessageBytesMax, scopeKeysMax, scopesPerMessageMax, summaryItemsMax, wantKeysMax } from './limits.js';
import type { KeyedEntry, MetaMessage, PurgedNotice, ScopeDigest, ScopeSummary } from './messages.js';

const hexPattern = /^[0-9a-f]{16}$/;

function hex64(value: bigint): string {
  return value.toString(16).padStart(16, '0');
}

function bad(reason: string): MarsError {
  return new MarsError('META_BAD_MESSAGE', `bad metadata message: ${reason}`);
}

export function encodeMetaMessage(message: MetaMessage): Buffer {
  const json = JSON.stringify(toJson(message));
  const bytes = Buffer.from(json, 'utf8');
  if (bytes.length > metaMessageBytesMax) throw new Error(`assertion failed: metadata message of ${bytes.length} bytes exceeds metaMessageBytesMax`);
  return bytes;
}

function entriesJson(entries: readonly KeyedEntry[]): object[] {
  return entries.map(({ key, entry }) => ({ key, ...encodeEntryJson(entry) }));
}

function toJson(message: MetaMessage): object {
  const head = { type: message.type, sentLamport: message.sentLamport.toString() };
  switch (message.type) {
    case 'push':
      return { ...head, entries: entriesJson(message.entries) };
    case 'digest':
      return { ...head, scopes: message.scopes.map((s) => ({ scope: s.scope, root: hex64(s.root), count: s.count })), ...(message.reply === true ? { reply: true } : {}) };
    case 'summary':
      return {
        ...head,
        scopes: message.scopes.map((s) =>
          s.kind === 'buckets'
            ? { scope: s.scope, buckets: s.sums.map(hex64) }
            : { scope: s.scope, keysOf: s.buckets, items: s.items.map((i) => [i.key, hex64(i.hash)]) },
        ),
      };
    case 'delta':
      return {
        ...head,
        entries: entriesJson(message.entries),
        want: message.want,
        purged: message.purged.map((p) => ({ key: p.key, lamport: p.lamport.toString() })),
      };
  }
}

export function decodeMetaMessage(bytes: Buffer): MetaMessage {
  if (bytes.length > metaMessageBytesMax) throw bad(`${bytes.length} bytes exceed ${metaMessageBytesMax}`);
  let input: unknown;
  try {
    input = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (!isRecord(input)) throw bad('not an object');
  const sentLamport = parseLamport(input['sentLamport']);
  if (sentLamport === undefined) throw bad('bad sentLamport');
  switch (input['type']) {
    case 'push':
      return { type: 'push', sentLamport, entries: decodeEntries(input['entries']) };
    case 'digest': {
      const reply = input['reply'];
      if (reply !== undefined && reply !== true) throw bad('bad reply flag');
      const scopes = decodeDigests(input['scopes']);
      return reply === true ? { type: 'digest', sentLamport, scopes, reply } : { type: 'digest', sentLamport, scopes };
    }
    case 'summary':
      return { type: 'summary', sentLamport, scopes: decodeSummaries(input['scopes']) };
    case 'delta':
      return {
        type: 'delta',
        sentLamport,
        entries: decodeEntries(input['entries']),
        want: decodeWant(input['want']),
        purged: decodePurged(input['purged']),
      };
    default:
      throw bad('unknown type');
  }
}

function list(input: unknown, max: number, what: string): unknown[] {
  if (!Array.isArray(input)) throw bad(`${what} is not a list`);
  if (input.length > max) throw bad(`${input.length} ${what}, more than ${max}`);
  return input as unknown[];
}

function decodeEntries(input: unknown): KeyedEntry[] {
  return list(input, batchEntriesMax, 'entries').map((item) => {
    if (!isRecord(item) || typeof item['key'] !== 'string') throw bad('entry without key');
    const entry = decodeEntryJson(item['key'], item);
    if (typeof entry === 'string') throw bad(entry);
    return { key: item['key'], entry };
  });
}

function decodeHex(input: unknown): bigint {
  if (typeof input !== 'string' || !hexPattern.test(input)) throw bad('bad hash');
  return BigInt(`0x${input}`);
}

function decodeScope(input: unknown): string {
  if (typeof input !== 'string' || !isValidScope(input)) throw bad('bad scope');
  return input;
}

function decodeDigests(input: unknown): ScopeDigest[] {
  return list(input, scopesPerMessageMax, 'scopes').map((item) => {
    if (!isRecord(item)) throw bad('bad digest');
    const count = item['count'];
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0 || count > scopeKeysMax) throw bad('bad count');
    return { scope: decodeScope(item['scope']), root: decodeHex(item['root']), count };
  });
}

function decodeSummaries(input: unknown): ScopeSummary[] {
  let itemsTotal = 0;
  return list(input, scopesPerMessageMax, 'scopes').map((item): ScopeSummary => {
    if (!isRecord(item)) throw bad('bad summary');
    const scope = decodeScope(item['scope']);
    if (item['buckets'] !== undefined) {
      const sums = list(item['buckets'], digestBucketsCount, 'buckets').map(decodeHex);
      if (sums.length !== digestBucketsCount) throw bad('wrong bucket count');
      return { scope, kind: 'buckets', sums };
    }
    const buckets = list(item['keysOf'], digestBucketsCount, 'buckets').map((b) => {
      if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b >= digestBucketsCount) throw bad('bad bucket');
      return b;
    });
    const items = list(item['items'], summaryItemsMax, 'items').map((pair) => {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || parseKey(pair[0]) === undefined) throw bad('bad item');
      return { key: pair[0], hash: decodeHex(pair[1]) };
    });
    itemsTotal += items.length;
    if (itemsTotal > summaryItemsMax) throw bad('too many items');
    return { scope, kind: 'keys', buckets, items };
  });
}

function decodeWant(input: unknown): string[] {
  return list(input, wantKeysMax, 'wanted keys').map((key) => {
    if (typeof key !== 'string' || parseKey(key) === undefined) throw bad('bad wanted key');
    return key;
  });
}

function decodePurged(input: unknown): PurgedNotice[] {
  return list(input, batchEntriesMax, 'purged').map((item) => {
    if (!isRecord(item) || typeof item['key'] !== 'string' || parseKey(item['key']) === undefined) throw bad('bad purged key');
    const lamport = parseLamport(item['lamport']);
    if (lamport === undefined) throw bad('bad purged lamport');
    return { key: item['key'], lamport };
  });
}
