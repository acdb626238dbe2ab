/**
 * resource-R/resource.json: what a host knows of one resource it is a member of.
 * Human-readable JSON, replaced atomically.
 */
import { MarsError } from '../core/errors.js';
import type { Storage } from '../storage/storage.js';

export const resourceFormatVersion = 1;
export const resourceConfigFile = 'resource.json';

export interface ResourceConfig {
  formatVersion: number;
  name: string;
  /** Absolute path of the underlying device (regular file or block device). */
  devicePath: string;
  sizeBytes: number;
  /** The designated primary host. */
  primary: string;
}

export async function saveResourceConfig(storage: Storage, config: ResourceConfig): Promise<void> {
  await storage.writeAtomic(resourceConfigFile, Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
}

export async function loadResourceConfig(storage: Storage, where: string): Promise<ResourceConfig> {
  const raw = await storage.readAll(resourceConfigFile);
  const file = `${where}/${resourceConfigFile}`;
  if (raw === undefined) throw new MarsError('BAD_STATE_DIR', `${file} is missing`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new MarsError('BAD_STATE_DIR', `${file}: not valid JSON`);
  }
  const p = parsed as Partial<Record<keyof ResourceConfig, unknown>> | null;
  if (p === null || typeof p !== 'object') throw new MarsError('BAD_STATE_DIR', `${file}: not an object`);
  if (p.formatVersion !== resourceFormatVersion) throw new MarsError('BAD_STATE_DIR', `${file}: unknown format version ${String(p.formatVersion)}`);
  const { name, devicePath, sizeBytes, primary } = p;
  if (typeof name !== 'string' || typeof devicePath !== 'string' || typeof primary !== 'string') throw new MarsError('BAD_STATE_DIR', `${file}: missing name, devicePath or primary`);
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new MarsError('BAD_STATE_DIR', `${file}: bad sizeBytes`);
  return { formatVersion: resourceFormatVersion, name, devicePath, sizeBytes, primary };
}
