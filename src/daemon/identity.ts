/**
 * The cluster identity of a host: the cluster id (host.json) and the shared secret
 * (cluster.secret, mode 0600), plus the former identity a host keeps after merge-cluster
 * (former-cluster.json, mode 0600) so that hosts not yet told of the merge can still
 * reach it. A merge moves a host to a new identity in three atomic writes; a crash
 * between them is repaired at the next start (`repairIdentity`).
 *
 * The new secret travels to the other hosts of the merged side inside the metadata key
 * `cluster/merge`, sealed (AES-256-GCM) with a key derived from their old secret, so it
 * never crosses the wire in clear and peers of the other side cannot read it.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { MarsError } from '../core/errors.js';
import { FsStorage } from '../storage/fs-storage.js';
import { secretBytesMin } from '../net/limits.js';
import type { Identity } from '../net/index.js';
import type { JsonValue } from '../meta/index.js';
import { paths, type HostConfig } from './state-dir.js';

export const formerIdentityFile = 'former-cluster.json';
const secretHexPattern = /^(?:[0-9a-f]{2}){16,128}$/i;
const sealInfo = 'MARS-MERGE-1';
const sealIvBytes = 12;
const sealTagBytes = 16;

/**
 * Bytes of a secret that join-cluster and merge-cluster take from a secret file. A shorter
 * one could be guessed offline from a recorded handshake; create-cluster writes 32 random
 * bytes. (Members keep reading a shorter secret they already hold: `secretBytesMin`.)
 */
export const secretFileBytesMin = 32;

/** The secret in a secret file's text: hex digits (64 written by create-cluster), a newline. */
export function parseSecret(text: string, file: string): Buffer {
  const hex = text.trim();
  if (!secretHexPattern.test(hex)) throw new MarsError('EINVAL', `${file} does not hold a cluster secret (hexadecimal digits, at least ${secretBytesMin} bytes)`);
  return Buffer.from(hex, 'hex');
}

/** Reads the secret file given to join-cluster or merge-cluster: at least `secretFileBytesMin` bytes. */
export async function readSecretFile(file: string): Promise<Buffer> {
  const secret = await readAnySecretFile(file);
  if (secret.length < secretFileBytesMin) {
    throw new MarsError('EINVAL', `${file} holds a secret of ${secret.length} bytes; a cluster secret has at least ${secretFileBytesMin} (create-cluster writes ${secretFileBytesMin} random bytes)`);
  }
  return secret;
}

async function readAnySecretFile(file: string): Promise<Buffer> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new MarsError('NOT_FOUND', `cannot read the secret file ${file}: ${(err as Error).message}`);
  }
  return parseSecret(text, file);
}

export function secretFileText(secret: Buffer): Buffer {
  return Buffer.from(`${secret.toString('hex')}\n`);
}

/** This host's current identity and, after a merge, the former one. */
export interface HostIdentity {
  readonly current: Identity;
  readonly former: Identity | undefined;
}

async function loadFormer(dir: string): Promise<Identity | undefined> {
  const raw = await new FsStorage(dir).readAll(formerIdentityFile);
  if (raw === undefined) return undefined;
  const file = `${dir}/${formerIdentityFile}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new MarsError('BAD_STATE_DIR', `${file}: not valid JSON`);
  }
  const p = parsed as { formatVersion?: unknown; clusterId?: unknown; secret?: unknown } | null;
  if (p === null || p.formatVersion !== 1) throw new MarsError('BAD_STATE_DIR', `${file}: unknown format version`);
  if (typeof p.clusterId !== 'string' || typeof p.secret !== 'string') throw new MarsError('BAD_STATE_DIR', `${file}: missing clusterId or secret`);
  return { clusterId: p.clusterId, secret: parseSecret(p.secret, file) };
}

/** Reads cluster.secret (and former-cluster.json) for the cluster id of host.json. */
export async function loadIdentity(dir: string, config: HostConfig): Promise<HostIdentity> {
  const secretPath = paths.secretFile(dir);
  let text: string;
  try {
    text = await readFile(secretPath, 'utf8');
  } catch {
    throw new MarsError('BAD_STATE_DIR', `${secretPath} is missing: every member needs the cluster secret`);
  }
  return { current: { clusterId: config.clusterId, secret: parseSecret(text, secretPath) }, former: await loadFormer(dir) };
}

/**
 * Moves this host to a new identity: former-cluster.json (the old one), cluster.secret,
 * then host.json, each replaced atomically. Returns the new host config.
 */
export async function adoptIdentity(dir: string, config: HostConfig, old: Identity, next: Identity): Promise<HostConfig> {
  const storage = new FsStorage(dir);
  await storage.writeAtomic(formerIdentityFile, Buffer.from(`${JSON.stringify({ formatVersion: 1, clusterId: old.clusterId, secret: old.secret.toString('hex') }, null, 2)}\n`));
  await storage.writeAtomic('cluster.secret', secretFileText(next.secret));
  const updated: HostConfig = { ...config, clusterId: next.clusterId };
  await storage.writeAtomic('host.json', Buffer.from(`${JSON.stringify(updated, null, 2)}\n`));
  return updated;
}

/**
 * After a crash between the writes of `adoptIdentity`, host.json still names the former
 * cluster while cluster.secret already holds the new secret: finish the move, taking the
 * new cluster id from the metadata key `cluster/merge`. Returns the repaired config.
 */
export async function repairIdentity(dir: string, config: HostConfig, identity: HostIdentity, merge: JsonValue | undefined): Promise<HostConfig> {
  const former = identity.former;
  if (former === undefined || former.clusterId !== config.clusterId || former.secret.equals(identity.current.secret)) return config;
  const sealed = parseMergeValue(merge);
  if (sealed === undefined || sealed.from !== former.clusterId) {
    throw new MarsError('BAD_STATE_DIR', `${dir}: cluster.secret does not belong to cluster ${config.clusterId} and no merge says which cluster it belongs to`);
  }
  const updated: HostConfig = { ...config, clusterId: sealed.clusterId };
  await new FsStorage(dir).writeAtomic('host.json', Buffer.from(`${JSON.stringify(updated, null, 2)}\n`));
  return updated;
}

/** The value of `cluster/merge`: the merged side (`from`) moves to `clusterId`, whose secret is sealed. */
export interface MergeValue {
  readonly clusterId: string;
  readonly from: string;
  readonly sealed: string;
}

export function parseMergeValue(value: JsonValue | undefined): MergeValue | undefined {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const { clusterId, from, sealed } = value;
  if (typeof clusterId !== 'string' || typeof from !== 'string' || typeof sealed !== 'string') return undefined;
  return { clusterId, from, sealed };
}

function sealKey(old: Identity): Buffer {
  return Buffer.from(hkdfSync('sha256', old.secret, Buffer.from(old.clusterId, 'utf8'), sealInfo, 32));
}

/** The `cluster/merge` value telling the hosts of `old` to adopt `next`. */
export function sealMerge(old: Identity, next: Identity): MergeValue {
  const iv = randomBytes(sealIvBytes);
  const cipher = createCipheriv('aes-256-gcm', sealKey(old), iv);
  const body = Buffer.concat([cipher.update(next.secret), cipher.final()]);
  return { clusterId: next.clusterId, from: old.clusterId, sealed: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64') };
}

/** The new identity in a merge value, if it is meant for `old` and opens with its secret. */
export function openMerge(value: MergeValue, old: Identity): Identity | undefined {
  if (value.from !== old.clusterId) return undefined;
  const bytes = Buffer.from(value.sealed, 'base64');
  if (bytes.length < sealIvBytes + sealTagBytes + secretBytesMin) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealKey(old), bytes.subarray(0, sealIvBytes));
    decipher.setAuthTag(bytes.subarray(sealIvBytes, sealIvBytes + sealTagBytes));
    const secret = Buffer.concat([decipher.update(bytes.subarray(sealIvBytes + sealTagBytes)), decipher.final()]);
    return { clusterId: value.clusterId, secret };
  } catch {
    return undefined;
  }
}
