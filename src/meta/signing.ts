/**
 * Host signing keys (Ed25519, node:crypto) and the signature of an owned metadata entry.
 *
 * Every host has its own key pair; the public key travels in its host record (`signKey`,
 * the 32 raw bytes in base64) and is pinned by every host on first sight. Every version of
 * an owned key (`cluster/NAME/HOST`, `resource/R/NAME/HOST`) carries HOST's signature over
 * the key, the stamp, the writer, the tombstone flag and the canonical value, so a holder
 * of the cluster secret cannot write another host's keys. Ed25519 is deterministic: signing
 * draws no random number, so the metadata core stays pure.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

/** Bytes of a raw Ed25519 public key, of a seed, and of a signature. */
export const publicKeyBytes = 32;
export const signatureBytes = 64;
const seedBytes = 32;

const entryLabel = 'MARS-META-SIG-1';
/** DER prefixes that wrap a raw Ed25519 key (RFC 8410). */
const pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex');
const spkiPrefix = Buffer.from('302a300506032b6570032100', 'hex');

export interface SigningKey {
  /** The public key as it appears in the host record: base64 of 32 raw bytes. */
  readonly publicKeyText: string;
  readonly privateKey: KeyObject;
}

function fromPrivate(privateKey: KeyObject): SigningKey {
  const der = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { publicKeyText: der.subarray(der.length - publicKeyBytes).toString('base64'), privateKey };
}

export function generateSigningKey(): SigningKey {
  return fromPrivate(generateKeyPairSync('ed25519').privateKey);
}

/** A key from a 32-byte seed (the simulator's and tests' reproducible keys). */
export function signingKeyFromSeed(seed: Buffer): SigningKey {
  if (seed.length !== seedBytes) throw new Error(`assertion failed: an Ed25519 seed has ${seedBytes} bytes`);
  return fromPrivate(createPrivateKey({ key: Buffer.concat([pkcs8Prefix, seed]), format: 'der', type: 'pkcs8' }));
}

/** A reproducible key for a name and a number (tests and the simulator only). */
export function testSigningKey(name: string, salt = 0): SigningKey {
  return signingKeyFromSeed(createHash('sha256').update(`mars-test-key\0${name}\0${salt}`).digest());
}

export function signingKeyToPem(key: SigningKey): string {
  return key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** Parses a PEM private key; throws if it is not Ed25519. */
export function signingKeyFromPem(pem: string): SigningKey {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`not an Ed25519 key but ${privateKey.asymmetricKeyType ?? 'a symmetric key'}`);
  return fromPrivate(privateKey);
}

const publicKeyMemoMax = 16_384;
const publicKeyMemo = new Map<string, KeyObject>();

/** The KeyObject of a public key text, or undefined if the text is not 32 bytes of base64. */
export function parsePublicKey(text: string): KeyObject | undefined {
  const memo = publicKeyMemo.get(text);
  if (memo !== undefined) return memo;
  const raw = Buffer.from(text, 'base64');
  if (raw.length !== publicKeyBytes || raw.toString('base64') !== text) return undefined;
  const key = createPublicKey({ key: Buffer.concat([spkiPrefix, raw]), format: 'der', type: 'spki' });
  if (publicKeyMemo.size >= publicKeyMemoMax) publicKeyMemo.clear();
  publicKeyMemo.set(text, key);
  return key;
}

export function signBytes(key: SigningKey, data: Buffer): Buffer {
  return sign(null, data, key.privateKey);
}

/** True if `signature` is the signature of `data` under the public key `publicKeyText`. */
export function verifyBytes(publicKeyText: string, data: Buffer, signature: Buffer): boolean {
  const key = parsePublicKey(publicKeyText);
  if (key === undefined || signature.length !== signatureBytes) return false;
  return verify(null, data, key, signature);
}

export interface SignedFields {
  readonly lamport: bigint;
  readonly owner: string;
  readonly deleted: boolean;
  /** The canonical JSON text of the value (`null` for a tombstone). */
  readonly valueJson: string;
}

/** The bytes an entry's signature covers (docs/metadata.md): label, key, stamp, writer, flag, value. */
export function entrySignedBytes(key: string, f: SignedFields): Buffer {
  return Buffer.from(`${entryLabel}\u0000${key}\u0000${f.lamport}\u0000${f.owner}\u0000${f.deleted ? 1 : 0}\u0000${f.valueJson}`, 'utf8');
}

/** The entry with its signature by `signer` (the owner of `key`). */
export function signEntry<E extends { readonly lamport: bigint; readonly owner: string; readonly deleted: boolean; readonly value: unknown }>(key: string, entry: E, signer: SigningKey): E & { sig: string } {
  const bytes = entrySignedBytes(key, { lamport: entry.lamport, owner: entry.owner, deleted: entry.deleted, valueJson: JSON.stringify(entry.value) });
  return { ...entry, sig: signBytes(signer, bytes).toString('base64') };
}
