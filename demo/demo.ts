/**
 * The README's demo: one host in a temporary directory. It creates a resource on a sparse
 * file, writes and reads it through NBD with the project's own client, shows the
 * resource's state, kills the daemon with SIGKILL, restarts it (recovery replays the
 * log), checks every flushed byte, and cleans up. Needs nothing but Node.
 */
import { join } from 'node:path';
import { Random } from '../src/core/random.js';
import { NbdClient } from '../src/nbd/client.js';
import { marsadm, removeDir, sparseFile, startMarsd, tempDir, type Marsd } from '../test/support/processes.js';

const deviceBytes = 64 * 1024 * 1024;
const chunkBytes = 256 * 1024;
const chunks = 32;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function step(title: string, dir: string, ...args: string[]): Promise<string> {
  const result = await marsadm(dir, ...args);
  say(`\n$ marsadm ${args.join(' ')}`);
  if (result.stdout.trim() !== '') say(result.stdout.trimEnd());
  if (result.code !== 0) throw new Error(`${title} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

async function writePattern(client: NbdClient, random: Random): Promise<Map<number, Buffer>> {
  const written = new Map<number, Buffer>();
  const started = process.hrtime.bigint();
  const writes: Promise<void>[] = [];
  for (let i = 0; i < chunks; i++) {
    const offset = random.int(deviceBytes / chunkBytes) * chunkBytes;
    const data = random.bytes(chunkBytes);
    written.set(offset, data);
    writes.push(client.write(offset, data));
  }
  await Promise.all(writes);
  await client.flush();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  say(`wrote ${chunks} × ${chunkBytes / 1024} KiB at random offsets and flushed in ${ms.toFixed(1)} ms`);
  return written;
}

async function verify(client: NbdClient, written: Map<number, Buffer>, when: string): Promise<void> {
  let bad = 0;
  for (const [offset, data] of written) {
    const got = await client.read(offset, data.length);
    if (!got.equals(data)) bad++;
  }
  if (bad > 0) throw new Error(`${when}: ${bad} of ${written.size} chunks differ`);
  say(`${when}: read back all ${written.size} chunks, every byte matches`);
}

async function main(): Promise<void> {
  const dir = await tempDir('mars-demo');
  let daemon: Marsd | undefined;
  try {
    say(`state directory: ${dir}`);
    const disk = await sparseFile(join(dir, 'disk0.img'), deviceBytes);
    await step('create-cluster', dir, 'create-cluster', '--host', 'demo-a', '--listen', '127.0.0.1:7777');
    daemon = await startMarsd(dir);
    say(`\nmarsd runs as pid ${daemon.child.pid}, NBD on 127.0.0.1:${daemon.nbdPort}`);
    await step('create-resource', dir, 'create-resource', 'r0', disk);

    const exportAddress = { host: '127.0.0.1', port: daemon.nbdPort, exportName: 'r0' };
    let client = await NbdClient.connect(exportAddress);
    say(`\nNBD client connected: export r0, ${client.sizeBytes} bytes`);
    const written = await writePattern(client, new Random(2024));
    await verify(client, written, 'through NBD');
    await step('view', dir, 'view', 'r0');
    client.destroy();

    say(`\nkill -9 ${daemon.child.pid} (no clean shutdown), then restart: recovery replays the log`);
    await daemon.kill9();
    daemon = await startMarsd(dir);
    client = await NbdClient.connect({ ...exportAddress, port: daemon.nbdPort });
    await verify(client, written, 'after kill -9 and recovery');
    await client.close();

    await step('log-rotate', dir, 'log-rotate', 'r0');
    await step('view-replay-rest', dir, 'view-replay-rest', 'r0');
    await step('view-disk-state', dir, 'view-disk-state', 'r0');
    await step('view', dir, 'view', 'r0');
    const code = await daemon.stop();
    daemon = undefined;
    say(`\nmarsd stopped with SIGTERM (exit ${code})`);
    say('demo finished: all good');
  } finally {
    if (daemon !== undefined) await daemon.kill9();
    await removeDir(dir);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
