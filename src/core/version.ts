/**
 * The version of marsadm and marsd: package.json's, read once at start (dist/src/core/ is
 * three levels below the package root, as src/core/ is two below it in a checkout).
 */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8'));
      if (typeof parsed === 'object' && parsed !== null && (parsed as { name?: unknown }).name === 'mars-ts') {
        const version = (parsed as { version?: unknown }).version;
        if (typeof version === 'string') return version;
      }
    } catch {
      // not there: try the next level
    }
  }
  return 'unknown';
}

export const marsVersion = readVersion();
