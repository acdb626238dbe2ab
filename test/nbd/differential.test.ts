/**
 * Differential test: one seeded random sequence of operations, sent with our client to
 * our server (MemBackend) and to `nbdkit memory`, must give the same read data and the
 * same error values. nbdkit is the reference nobody here wrote. The seed comes from
 * NBD_DIFF_SEED (default 1) and is printed on failure.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { Random } from '../../src/core/random.js';
import { NbdClient, NbdRequestError } from '../../src/nbd/client.js';
import { join } from 'node:path';
import { HOST, findTool, freePort, startMemServer, stopChild, type ChildServer } from './helpers.js';
import { adm } from '../support/adm.js';
import { removeDir, sparseFile, startMarsd, tempDir, type Marsd } from '../support/processes.js';

const SEED = Number(process.env['NBD_DIFF_SEED'] ?? 1);
const SIZE_BYTES = 16 * 1024 * 1024;
const OPS = 600;
const LENGTH_BYTES_MAX = 256 * 1024;
const CONNECT_MS_MAX = 10_000;
const PORT_ATTEMPTS_MAX = 3;

type Op =
  | { readonly kind: 'write'; readonly offset: number; readonly data: Buffer; readonly fua: boolean }
  | { readonly kind: 'read' | 'trim' | 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'flush' };

function randomOp(random: Random): Op {
  const roll = random.int(100);
  if (roll < 3) return { kind: 'flush' };
  // Mostly aligned, sometimes odd; sometimes reaching past the end.
  const aligned = random.chance(0.6);
  const length = 1 + (aligned ? random.int(LENGTH_BYTES_MAX / 512) * 512 + 511 : random.int(LENGTH_BYTES_MAX));
  const nearEnd = random.chance(0.08);
  const start = nearEnd ? SIZE_BYTES - length + random.int(2 * length) : random.int(SIZE_BYTES - length);
  const offset = aligned ? Math.floor(start / 512) * 512 : start;
  if (roll < 45) return { kind: 'write', offset, data: random.bytes(length), fua: random.chance(0.2) };
  if (roll < 85) return { kind: 'read', offset, length };
  return { kind: random.chance(0.5) ? 'trim' : 'zero', offset, length };
}

async function apply(client: NbdClient, op: Op): Promise<Buffer | number> {
  try {
    switch (op.kind) {
      case 'write':
        await client.write(op.offset, op.data, { fua: op.fua });
        return 0;
      case 'read':
        return await client.read(op.offset, op.length);
      case 'trim':
        await client.trim(op.offset, op.length);
        return 0;
      case 'zero':
        await client.writeZeroes(op.offset, op.length);
        return 0;
      case 'flush':
        await client.flush();
        return 0;
    }
  } catch (err) {
    if (err instanceof NbdRequestError) return err.nbdError;
    throw err;
  }
}

/** Connects, retrying while the server process is still starting. */
async function connectWhenUp(port: number, exited: () => boolean): Promise<NbdClient> {
  const deadline = Date.now() + CONNECT_MS_MAX;
  for (;;) {
    try {
      return await NbdClient.connect({ host: HOST, port, exportName: '' });
    } catch (err) {
      if (exited() || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function startNbdkit(): Promise<ChildServer & { client: NbdClient }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', HOST, '-p', String(port), 'memory', String(SIZE_BYTES)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr.resume();
    try {
      const client = await connectWhenUp(port, () => child.exitCode !== null);
      return { port, child, client, stop: () => stopChild(child) };
    } catch (err) {
      await stopChild(child);
      if (attempt >= PORT_ATTEMPTS_MAX) throw err;
    }
  }
}

function describe(outcome: Buffer | number): string {
  return typeof outcome === 'number' ? `error ${outcome}` : `${outcome.length} bytes`;
}

/** Runs the op sequence on both clients, then compares the whole device. */
async function compare(client: NbdClient, reference: NbdClient, label: string): Promise<void> {
  assert.equal(reference.sizeBytes, client.sizeBytes);
  const random = new Random(SEED);
  for (let i = 0; i < OPS; i++) {
    const op = randomOp(random);
    const [mine, theirs] = await Promise.all([apply(client, op), apply(reference, op)]);
    const where = `${label}, seed ${SEED}, op ${i}: ${op.kind}${'offset' in op ? ` at ${op.offset}` : ''}: ours ${describe(mine)}, nbdkit ${describe(theirs)}`;
    assert.deepEqual(mine, theirs, where);
  }
  const chunkBytes = 4 * 1024 * 1024;
  for (let offset = 0; offset < SIZE_BYTES; offset += chunkBytes) {
    const [mine, theirs] = await Promise.all([client.read(offset, chunkBytes), reference.read(offset, chunkBytes)]);
    assert.ok(mine.equals(theirs), `${label}, seed ${SEED}: final contents differ in ${offset}+${chunkBytes}`);
  }
}

void test(`a seeded random op sequence gives the same results on our server and on nbdkit memory (seed ${SEED})`, { timeout: 120_000 }, async (t) => {
  if (findTool('nbdkit') === undefined) {
    t.skip('nbdkit not installed');
    return;
  }
  const ours = await startMemServer(SIZE_BYTES);
  ours.registry.set('', ours.backend);
  const nbdkit = await startNbdkit();
  const client = await NbdClient.connect({ host: HOST, port: ours.port, exportName: '' });
  try {
    await compare(client, nbdkit.client, 'MemBackend');
  } finally {
    await client.close();
    await nbdkit.client.close().catch(() => undefined);
    await nbdkit.stop();
    await ours.close();
  }
});

void test(`the same op sequence gives the same results on a marsd export and on nbdkit memory (seed ${SEED})`, { timeout: 180_000 }, async (t) => {
  if (findTool('nbdkit') === undefined) {
    t.skip('nbdkit not installed');
    return;
  }
  const dir = await tempDir('mars-diff');
  let daemon: Marsd | undefined;
  const nbdkit = await startNbdkit();
  try {
    assert.equal((await adm(dir, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777')).code, 0);
    daemon = await startMarsd(dir);
    const disk = await sparseFile(join(dir, 'disk0'), SIZE_BYTES);
    const created = await adm(dir, 'create-resource', 'r0', disk);
    assert.equal(created.code, 0, created.stderr);
    const client = await NbdClient.connect({ host: HOST, port: daemon.nbdPort, exportName: 'r0' });
    try {
      await compare(client, nbdkit.client, 'marsd');
    } finally {
      await client.close();
    }
  } finally {
    await nbdkit.client.close().catch(() => undefined);
    await nbdkit.stop();
    await daemon?.stop();
    await removeDir(dir);
  }
});
