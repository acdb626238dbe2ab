/**
 * A stand-alone NBD server over in-memory exports, for tests with real clients (nbdinfo,
 * qemu, fio) and for trying the server by hand:
 *
 *   node dist/src/nbd/serve-mem.js --port 0 --size 64M --name disk [--name other]
 *
 * Prints one JSON line {"host":..., "port":...} once listening; closes cleanly on SIGTERM
 * or SIGINT (answers in-flight requests, then exits 0).
 */
import { parseArgs } from 'node:util';
import { MemBackend } from './mem-backend.js';
import { NbdServer } from './server.js';
import { StaticExportRegistry } from './static-registry.js';

const UNITS: Readonly<Record<string, number>> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  const unit = match === null ? undefined : UNITS[(match[2] ?? '').toUpperCase()];
  if (match === null || unit === undefined) throw new Error(`bad size ${JSON.stringify(text)} (use e.g. 65536, 64K, 64M)`);
  return Number(match[1]) * unit;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      size: { type: 'string', default: '64M' },
      name: { type: 'string', multiple: true },
      verbose: { type: 'boolean', default: false },
    },
  });
  const sizeBytes = parseSize(values.size);
  const names = values.name ?? ['mem'];
  const registry = new StaticExportRegistry(names.map((name) => [name, new MemBackend(sizeBytes)] as const));
  const logger = values.verbose ? (message: string): void => void process.stderr.write(`${message}\n`) : undefined;
  const server = new NbdServer(registry, logger === undefined ? {} : { logger });
  await server.listen(values.host, Number(values.port));
  process.stdout.write(`${JSON.stringify(server.address())}\n`);
  const stop = (): void => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`serve-mem: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
