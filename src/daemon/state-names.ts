/**
 * The names in a host's state directory and the checks of names and addresses: what
 * marsadm needs for every command, without the daemon's code (state-dir.ts re-exports
 * them; it owns the files themselves).
 */
import { join } from 'node:path';
import { MarsError } from '../core/errors.js';

export const defaultStateDir = '/var/lib/mars';

const hostNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const resourceNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function resolveStateDir(dir: string | undefined): string {
  return dir ?? process.env['MARS_DIR'] ?? defaultStateDir;
}

export const paths = {
  hostFile: (dir: string): string => join(dir, 'host.json'),
  secretFile: (dir: string): string => join(dir, 'cluster.secret'),
  controlSocket: (dir: string): string => join(dir, 'control.sock'),
  metaDir: (dir: string): string => join(dir, 'meta'),
  tlsKey: (dir: string): string => join(dir, 'tls.key'),
  tlsCert: (dir: string): string => join(dir, 'tls.crt'),
  tlsCa: (dir: string): string => join(dir, 'tls-ca.crt'),
  resourceDir: (dir: string, resource: string): string => join(dir, `resource-${resource}`),
};

export function checkHostName(name: string): string {
  if (!hostNamePattern.test(name)) throw new MarsError('EINVAL', `bad host name '${name}': use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit`);
  return name;
}

export function checkResourceName(name: string): string {
  if (!resourceNamePattern.test(name)) throw new MarsError('EINVAL', `bad resource name '${name}': use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit`);
  return name;
}

/** Parses IP:PORT (IPv4 or [IPv6]:PORT). Port 0 (any free port) only where `allowAnyPort`. */
export function parseAddress(text: string, allowAnyPort = false): { host: string; port: number } {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (m === null) throw new MarsError('EINVAL', `bad address '${text}': expected IP:PORT`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < (allowAnyPort ? 0 : 1) || port > 65535) throw new MarsError('EINVAL', `bad port in '${text}'`);
  return { host: m[1]!, port };
}
