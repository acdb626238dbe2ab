/**
 * The version chain, as in the original MARS: a hash chain over the history of a resource,
 * one link per complete log file (its number, the host that wrote it, its length).
 *
 *   digest(N)  = SHA-256 hex of ("N,ORIGIN,LENGTH:" + version(N-1))
 *   version(N) = "digest(N),log-NNNNNNNNN-ORIGIN,LENGTH:digest(N-1)"
 *
 * with version(0) = "" (an empty digest before the first log). Two hosts with the same
 * version at log N have applied the same logs, with the same lengths, up to N: the same
 * history. So comparing chains finds split brain, even when a log was appended to or cut
 * after a forced switch. (The original uses MD5 and keeps each version in a symlink
 * `version-N-HOST`; this one uses SHA-256 and stores the chain as JSON.)
 *
 * A chain may start after the beginning of the history (a member that joined by sync, or
 * after logdelete): `baseVersion` is then the version string of the log before its first.
 * Everything here is pure: no I/O, no clock.
 */
import { parseVersionedJson } from '../core/versioned-json.js';
import { createHash } from 'node:crypto';
import { MarsError } from '../core/errors.js';
import { formatLogName, isValidLogHost, isValidLogNumber, parseLogName } from '../log/index.js';

/** One complete log file of the history. */
export interface VersionLink {
  readonly logNumber: number;
  /** The host that wrote the log file. */
  readonly origin: string;
  readonly lengthBytes: number;
}

export interface VersionEntry extends VersionLink {
  readonly digest: string;
  /** "digest,log-NNNNNNNNN-ORIGIN,LENGTH:previous-digest", the original's version value. */
  readonly version: string;
}

export interface VersionChain {
  /** The version before the first entry: "" when the chain starts with the history. */
  readonly baseVersion: string;
  readonly entries: readonly VersionEntry[];
}

export type ChainComparison =
  | { readonly relation: 'equal' }
  /** `a` is a prefix of `b`'s history: `a` is behind, no conflict. */
  | { readonly relation: 'a-behind'; readonly commonLogNumber: number }
  | { readonly relation: 'b-behind'; readonly commonLogNumber: number }
  /** The first log (within the logs both chains cover) where the histories differ. */
  | { readonly relation: 'diverged'; readonly atLogNumber: number; readonly a: VersionEntry; readonly b: VersionEntry }
  /** The chains cover no common log and neither continues the other: nothing to compare. */
  | { readonly relation: 'unrelated' };

export const versionChainFormatVersion = 1;
const digestPattern = /^[0-9a-f]{64}$/;

export const emptyChain: VersionChain = { baseVersion: '', entries: [] };

function invalid(why: string): MarsError {
  return new MarsError('EINVAL', `version chain: ${why}`);
}

/** digest(N) = SHA-256 of "N,ORIGIN,LENGTH:" + the whole previous version string. */
export function versionDigest(link: VersionLink, previousVersion: string): string {
  return createHash('sha256').update(`${link.logNumber},${link.origin},${link.lengthBytes}:${previousVersion}`, 'utf8').digest('hex');
}

/** The digest part of a version string ("" for the empty version). */
export function digestOf(version: string): string {
  if (version === '') return '';
  const comma = version.indexOf(',');
  return comma < 0 ? '' : version.slice(0, comma);
}

/** The parts of a version string, or undefined when it is not one. */
export function parseVersion(version: string): (VersionEntry & { readonly previousDigest: string }) | undefined {
  const match = /^([0-9a-f]{64}),(log-[0-9]{9}-[A-Za-z0-9._-]{1,64}),(0|[1-9][0-9]{0,15}):([0-9a-f]{64})?$/.exec(version);
  if (match === null) return undefined;
  const name = parseLogName(match[2]!);
  const lengthBytes = Number(match[3]);
  if (name === undefined || !Number.isSafeInteger(lengthBytes)) return undefined;
  return { logNumber: name.logNumber, origin: name.host, lengthBytes, digest: match[1]!, version, previousDigest: match[4] ?? '' };
}

/** The log number a version string names (0 for the empty version). */
function logNumberOf(version: string): number {
  return version === '' ? 0 : (parseVersion(version)?.logNumber ?? 0);
}

/** The version of the last link (the base when the chain has no entries). */
export function lastVersion(chain: VersionChain): string {
  return chain.entries.at(-1)?.version ?? chain.baseVersion;
}

/** A chain that continues after `baseVersion` (a member that joined by sync). */
export function chainFrom(baseVersion: string): VersionChain {
  if (baseVersion !== '' && parseVersion(baseVersion) === undefined) throw invalid(`bad base version ${JSON.stringify(baseVersion)}`);
  return { baseVersion, entries: [] };
}

/** The entry that follows `previousVersion` for a complete log. */
export function versionEntry(link: VersionLink, previousVersion: string): VersionEntry {
  if (!isValidLogNumber(link.logNumber) || !isValidLogHost(link.origin)) throw invalid(`bad log ${link.logNumber} of ${JSON.stringify(link.origin)}`);
  if (!Number.isSafeInteger(link.lengthBytes) || link.lengthBytes < 0) throw invalid(`bad length ${link.lengthBytes}`);
  const digest = versionDigest(link, previousVersion);
  const version = `${digest},${formatLogName(link.logNumber, link.origin)},${link.lengthBytes}:${digestOf(previousVersion)}`;
  return { logNumber: link.logNumber, origin: link.origin, lengthBytes: link.lengthBytes, digest, version };
}

/** The chain extended by a complete log file, which must be the log after the last one. */
export function extendChain(chain: VersionChain, link: VersionLink): VersionChain {
  const previous = lastVersion(chain);
  const previousNumber = logNumberOf(previous);
  if (previous !== '' && link.logNumber !== previousNumber + 1) throw invalid(`log ${link.logNumber} cannot follow log ${previousNumber}`);
  return { baseVersion: chain.baseVersion, entries: [...chain.entries, versionEntry(link, previous)] };
}

/**
 * Records a complete log once: a link the chain already holds (same number, origin and
 * length) leaves it unchanged, so that replaying log N again after a crash (before its
 * position was persisted) is harmless. A different link for a log it holds is an error:
 * that host's history differs from this one's.
 */
export function extendChainOnce(chain: VersionChain, link: VersionLink): VersionChain {
  const held = entryAt(chain, link.logNumber);
  if (held === undefined) return extendChain(chain, link);
  if (held.origin === link.origin && held.lengthBytes === link.lengthBytes) return chain;
  throw invalid(`log ${link.logNumber} is in the chain as ${formatLogName(held.logNumber, held.origin)} of ${held.lengthBytes} bytes, not ${link.origin} of ${link.lengthBytes}`);
}

/** The entry of log `logNumber`, if the chain covers it. */
export function entryAt(chain: VersionChain, logNumber: number): VersionEntry | undefined {
  const first = chain.entries[0];
  if (first === undefined) return undefined;
  return chain.entries[logNumber - first.logNumber];
}

/**
 * Compares two histories. Because each digest covers everything before it, equal digests
 * at log N mean equal histories up to N; so the first divergence within the logs both
 * cover is found by binary search. (A divergence at the first common log may lie earlier,
 * before one chain's start.)
 */
export function compareChains(a: VersionChain, b: VersionChain): ChainComparison {
  const aLast = a.entries.at(-1);
  const bLast = b.entries.at(-1);
  if (aLast === undefined || bLast === undefined) return compareWithEmpty(a, b);
  const low = Math.max(a.entries[0]!.logNumber, b.entries[0]!.logNumber);
  const high = Math.min(aLast.logNumber, bLast.logNumber);
  if (low > high) return continuation(a, b);
  const same = (n: number): boolean => entryAt(a, n)!.digest === entryAt(b, n)!.digest;
  if (same(high)) {
    if (aLast.logNumber === bLast.logNumber) return { relation: 'equal' };
    return aLast.logNumber < bLast.logNumber ? { relation: 'a-behind', commonLogNumber: high } : { relation: 'b-behind', commonLogNumber: high };
  }
  let firstDiffering = high;
  let lastSame = low - 1;
  while (firstDiffering - lastSame > 1) {
    const middle = Math.floor((firstDiffering + lastSame) / 2);
    if (same(middle)) lastSame = middle;
    else firstDiffering = middle;
  }
  return { relation: 'diverged', atLogNumber: firstDiffering, a: entryAt(a, firstDiffering)!, b: entryAt(b, firstDiffering)! };
}

function compareWithEmpty(a: VersionChain, b: VersionChain): ChainComparison {
  const aVersion = lastVersion(a);
  const bVersion = lastVersion(b);
  if (aVersion === bVersion) return { relation: 'equal' };
  if (a.entries.length === 0 && (b.baseVersion === aVersion || b.entries.some((e) => e.version === aVersion) || aVersion === '')) {
    return { relation: 'a-behind', commonLogNumber: logNumberOf(aVersion) };
  }
  if (b.entries.length === 0 && (a.baseVersion === bVersion || a.entries.some((e) => e.version === bVersion) || bVersion === '')) {
    return { relation: 'b-behind', commonLogNumber: logNumberOf(bVersion) };
  }
  return { relation: 'unrelated' };
}

/** Chains without a common log: one may start exactly where the other ends. */
function continuation(a: VersionChain, b: VersionChain): ChainComparison {
  if (b.baseVersion === lastVersion(a)) return { relation: 'a-behind', commonLogNumber: logNumberOf(b.baseVersion) };
  if (a.baseVersion === lastVersion(b)) return { relation: 'b-behind', commonLogNumber: logNumberOf(a.baseVersion) };
  return { relation: 'unrelated' };
}

/** The chain as readable JSON: the base and each version string, one per line. */
export function encodeChain(chain: VersionChain): Buffer {
  const lines = chain.entries.map((e) => `    ${JSON.stringify(e.version)}`);
  const versions = lines.length === 0 ? '[]' : `[\n${lines.join(',\n')}\n  ]`;
  return Buffer.from(`{\n  "formatVersion": ${versionChainFormatVersion},\n  "baseVersion": ${JSON.stringify(chain.baseVersion)},\n  "versions": ${versions}\n}\n`);
}

/** Decodes and verifies a stored chain (every digest recomputed); BAD_STATE_DIR when anything is wrong. */
export function decodeChain(raw: Buffer, fileName: string): VersionChain {
  const bad = (why: string): MarsError => new MarsError('BAD_STATE_DIR', `${fileName}: ${why}`);
  const p = parseVersionedJson(raw, fileName, versionChainFormatVersion);
  const { baseVersion, versions } = p;
  if (typeof baseVersion !== 'string' || (baseVersion !== '' && parseVersion(baseVersion) === undefined)) throw bad('bad baseVersion');
  if (!Array.isArray(versions)) throw bad('versions is not a list');
  let chain = chainFrom(baseVersion);
  for (const [i, version] of versions.entries()) {
    const entry = typeof version === 'string' ? parseVersion(version) : undefined;
    if (entry === undefined) throw bad(`versions[${i}] is not a version string`);
    try {
      chain = extendChain(chain, entry);
    } catch (err) {
      throw bad(`versions[${i}]: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (chain.entries.at(-1)!.version !== version) throw bad(`versions[${i}] does not match its digest chain`);
  }
  return chain;
}

/** True when `digest` looks like one of this chain's digests (64 lower-case hex digits). */
export function isDigest(digest: string): boolean {
  return digestPattern.test(digest);
}
