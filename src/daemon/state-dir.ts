/**
 * The host's state directory (DESIGN.md "State directory"): host.json, cluster.secret,
 * control.sock, meta/, resource-R/. This module owns its files and the host.json codec; the
 * names and the checks of names and addresses are in state-names.ts.
 */
import { createHostKey } from './host-key.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { lstat, mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MarsError } from '../core/errors.js';
import { FsStorage } from '../storage/fs-storage.js';
import { checkHostName, parseAddress, paths } from './state-names.js';

export { checkHostName, checkResourceName, defaultStateDir, parseAddress, paths, resolveStateDir } from './state-names.js';

export const hostFormatVersion = 1;
export const defaultPeerPort = 7777;
export const defaultNbdAddress = '127.0.0.1:10809';
export const clusterSecretBytes = 32;

export interface HostConfig {
  formatVersion: number;
  host: string;
  listen: string;
  /**
   * Where peers reach this host, if not at `listen` (behind NAT, a proxy, a port
   * forward): the address of its host record. Peers must connect *from* its IP.
   */
  advertise?: string;
  clusterId: string;
}

/** The address peers dial: `advertise` if set, else `listen`. */
export function advertisedAddress(config: Pick<HostConfig, 'listen' | 'advertise'>): string {
  return config.advertise ?? config.listen;
}

export function decodeHostConfig(raw: string, file: string): HostConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new MarsError('BAD_STATE_DIR', `${file}: not valid JSON`);
  }
  const p = parsed as Partial<Record<keyof HostConfig, unknown>> | null;
  if (p === null || typeof p !== 'object') throw new MarsError('BAD_STATE_DIR', `${file}: not an object`);
  if (p.formatVersion !== hostFormatVersion) throw new MarsError('BAD_STATE_DIR', `${file}: unknown format version ${String(p.formatVersion)}`);
  if (typeof p.host !== 'string' || typeof p.listen !== 'string' || typeof p.clusterId !== 'string') {
    throw new MarsError('BAD_STATE_DIR', `${file}: missing host, listen or clusterId`);
  }
  if (p.advertise !== undefined && typeof p.advertise !== 'string') throw new MarsError('BAD_STATE_DIR', `${file}: advertise is not a string`);
  const advertise = p.advertise === undefined ? {} : { advertise: p.advertise };
  return { formatVersion: hostFormatVersion, host: checkHostName(p.host), listen: p.listen, ...advertise, clusterId: p.clusterId };
}

export async function loadHostConfig(dir: string): Promise<HostConfig> {
  const file = paths.hostFile(dir);
  const raw = await new FsStorage(dir).readAll('host.json').catch((err: unknown) => {
    if (err instanceof MarsError && err.code === 'BAD_STATE_DIR') throw err;
    return undefined;
  });
  if (raw === undefined) throw new MarsError('BAD_STATE_DIR', `${dir} is not a MARS state directory (no ${file}; run 'marsadm create-cluster' first)`);
  return decodeHostConfig(raw.toString('utf8'), file);
}

const insecureHint = 'or pass --insecure-dir to accept it';

function writers(mode: number): string {
  const group = (mode & 0o020) !== 0;
  const others = (mode & 0o002) !== 0;
  return group && others ? 'group and others' : group ? 'group' : 'others';
}

/**
 * Refuses a directory that another user could change under us: not ours (nor root's
 * when we are root), or writable by group or others. Unless `insecureDir`.
 */
export async function checkDirPermissions(dir: string, insecureDir: boolean): Promise<void> {
  if (insecureDir) return;
  let st;
  try {
    st = await stat(dir);
  } catch {
    return; // created by us, with mode 0700
  }
  if (!st.isDirectory()) throw new MarsError('BAD_STATE_DIR', `${dir} is not a directory`);
  const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
  if ((st.mode & 0o022) !== 0) {
    throw new MarsError('BAD_STATE_DIR', `state directory ${dir} is writable by ${writers(st.mode)} (mode ${mode}): chmod go-w ${dir}, ${insecureHint}`);
  }
  const euid = process.geteuid?.();
  if (euid !== undefined && st.uid !== euid) {
    throw new MarsError('BAD_STATE_DIR', `state directory ${dir} belongs to uid ${st.uid}, not to this user (uid ${euid}): chown it, ${insecureHint}`);
  }
}

/**
 * marsd's check of its state directory at start: DIR is ours and not writable by group
 * or others (unless `insecureDir`), and neither DIR's entries nor those of its
 * subdirectories (meta/, resource-R/) are symbolic links. marsd opens files in it with
 * O_NOFOLLOW as well, so a link planted later is refused when it is met.
 */
export async function checkStateDir(dir: string, insecureDir: boolean): Promise<void> {
  await checkDirPermissions(dir, insecureDir);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return; // loadHostConfig names what is missing
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) throw symlinkRefused(path);
    if (!entry.isDirectory()) continue;
    if (!insecureDir && ((await lstat(path)).mode & 0o022) !== 0) {
      throw new MarsError('BAD_STATE_DIR', `${path} is writable by group or others: chmod go-w ${path}, ${insecureHint}`);
    }
    for (const inner of await readdir(path, { withFileTypes: true })) {
      if (inner.isSymbolicLink()) throw symlinkRefused(join(path, inner.name));
    }
  }
}

function symlinkRefused(path: string): MarsError {
  return new MarsError('BAD_STATE_DIR', `${path} is a symbolic link: marsd follows no links inside its state directory (replace it by the file or directory itself)`);
}

/** `marsadm create-cluster`: prepares DIR for a new cluster with this host as its first member. */
export async function createCluster(dir: string, host: string, listen: string, insecureDir = false, advertise?: string): Promise<HostConfig> {
  checkHostName(host);
  parseAddress(listen);
  if (advertise !== undefined) parseAddress(advertise);
  await checkDirPermissions(dir, insecureDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (await exists(paths.hostFile(dir))) throw new MarsError('EXISTS', `${dir} already belongs to a cluster (${paths.hostFile(dir)} exists)`);
  const config: HostConfig = { formatVersion: hostFormatVersion, host, listen, ...(advertise === undefined ? {} : { advertise }), clusterId: randomUUID() };
  await mkdir(paths.metaDir(dir), { recursive: true, mode: 0o700 });
  const secretHandle = await open(paths.secretFile(dir), 'wx', 0o600);
  try {
    await secretHandle.writeFile(`${randomBytes(clusterSecretBytes).toString('hex')}\n`);
    await secretHandle.sync();
  } finally {
    await secretHandle.close();
  }
  await createHostKey(dir);
  const storage = new FsStorage(dir);
  await storage.writeAtomic('host.json', Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
  return config;
}

/**
 * The TLS material of `--tls`: DIR/tls.key and DIR/tls.crt (PEM), and DIR/tls-ca.crt if
 * present (then peers' certificates must be signed by it). Missing key or certificate:
 * BAD_STATE_DIR naming the file.
 */
export async function loadTls(dir: string): Promise<{ key: Buffer; cert: Buffer; ca?: Buffer }> {
  const read = async (file: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch {
      throw new MarsError('BAD_STATE_DIR', `--tls needs ${file} (see docs/operations.md, "Encrypting peer traffic")`);
    }
  };
  const key = await read(paths.tlsKey(dir));
  const cert = await read(paths.tlsCert(dir));
  return (await exists(paths.tlsCa(dir))) ? { key, cert, ca: await readFile(paths.tlsCa(dir)) } : { key, cert };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
