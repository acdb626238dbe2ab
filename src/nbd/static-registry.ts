/**
 * An ExportRegistry backed by a Map: exports are added and removed by name. Enough for
 * tests and the demo; the daemon may use it too, adding a resource's backend while the
 * host is primary and removing it (then NbdServer.closeExport) when it stops being one.
 */
import type { BlockBackend, ExportRegistry } from './backend.js';

export class StaticExportRegistry implements ExportRegistry {
  private readonly exports = new Map<string, BlockBackend>();

  constructor(entries: Iterable<readonly [string, BlockBackend]> = []) {
    for (const [name, backend] of entries) this.exports.set(name, backend);
  }

  set(name: string, backend: BlockBackend): void {
    this.exports.set(name, backend);
  }

  delete(name: string): boolean {
    return this.exports.delete(name);
  }

  get(name: string): BlockBackend | undefined {
    return this.exports.get(name);
  }

  names(): string[] {
    return [...this.exports.keys()];
  }
}
