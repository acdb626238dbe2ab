/**
 * Metadata on disk, over the Storage interface (DIR/meta/ for the daemon, an in-memory
 * disk in tests): one file per scope, replaced atomically (temporary file, fsync, rename,
 * fsync of the directory: Storage.writeAtomic). A file that cannot be read back exactly
 * stops the start with its name; it is never taken as empty.
 */
import { MarsError } from '../core/errors.js';
import type { Storage } from '../storage/storage.js';
import type { Entry } from './entry.js';
import type { ScopeId } from './keys.js';
import type { MetaSnapshot } from './meta-node.js';
import { decodeScopeFile, encodeScopeFile, scopeFileName, scopeOfFileName } from './scope-file.js';

export interface LoadedMeta {
  readonly snapshot: MetaSnapshot;
  /** Files in the directory that are not metadata files (left alone). */
  readonly ignored: readonly string[];
}

export class MetaStore {
  /** `location` (the directory, for the daemon) is shown before the file names in errors. */
  constructor(
    private readonly storage: Storage,
    private readonly location?: string,
  ) {}

  /** Reads every metadata file. Throws META_CORRUPT naming every file that is damaged. */
  async load(): Promise<LoadedMeta> {
    const snapshot = new Map<ScopeId, ReadonlyMap<string, Entry>>();
    const ignored: string[] = [];
    const failures: string[] = [];
    for (const name of (await this.storage.list()).sort()) {
      if (name.startsWith('.')) continue; // a temporary file of an interrupted writeAtomic
      if (scopeOfFileName(name) === undefined) {
        ignored.push(name);
        continue;
      }
      const bytes = await this.storage.readAll(name);
      if (bytes === undefined) continue; // removed meanwhile
      try {
        const { scope, entries } = decodeScopeFile(name, bytes, this.location === undefined ? name : `${this.location}/${name}`);
        snapshot.set(scope, entries);
      } catch (err) {
        if (!(err instanceof MarsError)) throw err;
        failures.push(err.message);
      }
    }
    if (failures.length > 0) throw new MarsError('META_CORRUPT', failures.join('; '));
    return { snapshot, ignored };
  }

  /** Replaces the file of a scope atomically; an empty scope's file is removed. */
  async save(scope: ScopeId, entries: ReadonlyMap<string, Entry>): Promise<void> {
    const name = scopeFileName(scope);
    if (entries.size === 0) await this.storage.remove(name);
    else await this.storage.writeAtomic(name, encodeScopeFile(scope, entries));
  }

  /** Persists the scopes a Ready lists, from the node's current state (step 1 of a Ready). */
  async persist(node: { exportScope(scope: ScopeId): ReadonlyMap<string, Entry> }, scopes: readonly ScopeId[]): Promise<void> {
    for (const scope of scopes) await this.save(scope, node.exportScope(scope));
  }
}
