/**
 * This host's signing key, DIR/host.key: an Ed25519 private key (PKCS#8 PEM, mode 0600),
 * made by create-cluster and join-cluster. Its public key is in the host's record and is
 * pinned by every other host; with it the host signs every version of the metadata keys
 * it owns and its side of every peer handshake (docs/network.md). A state directory from
 * before host keys gets one at the next start of marsd (the host's record then carries it
 * on first sight by the others).
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MarsError } from '../core/errors.js';
import { generateSigningKey, signingKeyFromPem, signingKeyToPem, type SigningKey } from '../meta/index.js';

export const hostKeyFileName = 'host.key';

export function hostKeyPath(dir: string): string {
  return join(dir, hostKeyFileName);
}

/** Writes a new key to DIR/host.key (mode 0600, never over an existing file). */
export async function createHostKey(dir: string): Promise<SigningKey> {
  const key = generateSigningKey();
  const handle = await open(hostKeyPath(dir), 'wx', 0o600);
  try {
    await handle.writeFile(signingKeyToPem(key));
    await handle.sync();
  } finally {
    await handle.close();
  }
  return key;
}

/** Reads DIR/host.key; undefined if there is none. Throws BAD_STATE_DIR if it is not an Ed25519 key. */
export async function readHostKey(dir: string): Promise<SigningKey | undefined> {
  let pem: string;
  try {
    pem = await readFile(hostKeyPath(dir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MarsError('BAD_STATE_DIR', `cannot read ${hostKeyPath(dir)}: ${(err as Error).message}`);
  }
  try {
    return signingKeyFromPem(pem);
  } catch (err) {
    throw new MarsError('BAD_STATE_DIR', `${hostKeyPath(dir)} does not hold an Ed25519 private key: ${(err as Error).message}`);
  }
}

/** The host's key, made now if the state directory has none yet (`created` says so). */
export async function loadOrCreateHostKey(dir: string): Promise<{ key: SigningKey; created: boolean }> {
  const key = await readHostKey(dir);
  if (key !== undefined) return { key, created: false };
  return { key: await createHostKey(dir), created: true };
}
