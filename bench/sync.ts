/**
 * Benchmark of fast full sync (docs/sync.md). Standalone:
 *   npx tsc -p . && node dist/bench/sync.js
 * (a) full sync MiB/s: a random source file to an all-zero target of the same size, our
 *     source (a child process, as on another host) and target over loopback TCP, against
 *     `nbdcopy` between two `nbdkit file` exports of the same files, in the same run;
 * (b) fast full sync of two identical random files: bytes moved over the link (frames
 *     counted at the target's PeerLink, both directions) as % of the device size;
 * (c) the block digest candidates on 4 KiB blocks, which is why the digest is xxh64.
 * Settings: BENCH_DIR (parent of the temporary directory, default os.tmpdir()),
 * BENCH_SYNC_SIZE (bytes or K/M/G, default 1G), BENCH_SYNC_ROUNDS (default 3; the best
 * round of each contender counts). Everything started here is stopped by PID; the
 * temporary directory is removed. Wall-clock time is read here on purpose.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32c } from '@node-rs/crc32';
import { xxh3, xxh64 } from '@node-rs/xxhash';
import { PeerServer, dialPeer } from '../src/net/index.js';
import { FsStorage, openDevice } from '../src/storage/fs-storage.js';
import { SyncSourceSession, SyncTarget, syncLimits, type SyncProgress } from '../src/sync/index.js';
import { freePort, run, sparseFile, waitFor } from '../test/support/processes.js';
import { randomFile, sameFiles } from './support.js';

const bytesPerMiB = 1024 * 1024;
const sizeDefaultBytes = 1024 * bytesPerMiB;
const roundsDefault = 3;
const loopback = '127.0.0.1';
const clusterId = 'bench';
/** Bounds on one copy, on a child's start, and on a clean stop. */
const copyMsMax = 600_000;
const startMsMax = 10_000;
const stopMsMax = 10_000;
/** How long each digest candidate is measured. */
const digestMeasureMs = 1000;
const fastSyncMovedPercentMax = 2;
const position = { logNumber: 1, logHost: 'source', offsetBytes: 0, nextSeq: 1n };

function parseSize(text: string | undefined): number {
  if (text === undefined || text === '') return sizeDefaultBytes;
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (m === null) throw new Error(`bad BENCH_SYNC_SIZE ${text}`);
  const unit = { '': 1, K: 1024, M: bytesPerMiB, G: 1024 * bytesPerMiB }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * unit;
}

function mibPerS(bytes: number, ms: number): number {
  return bytes / bytesPerMiB / (ms / 1000);
}

// ---- the source host: a child process serving one file on the sync channel ----

async function serveSource(path: string, port: number, secretHex: string): Promise<void> {
  const device = await openDevice(path);
  const sizeBytes = await device.size();
  const resource = { device, sizeBytes, startPosition: () => position, endPosition: () => position };
  const sessions: SyncSourceSession[] = [];
  await PeerServer.listen({
    listenHost: loopback,
    port,
    auth: { secret: Buffer.from(secretHex, 'hex'), clusterId, localHost: 'source' },
    onLink: (link) => {
      sessions.push(
        SyncSourceSession.serve(link, {
          resolve: () => resource,
          onEnd: (s) => process.stdout.write(`${JSON.stringify({ sentBytes: s.sentBytes, receivedBytes: s.receivedBytes })}\n`),
        }),
      );
    },
  });
  // A clean exit on SIGTERM (lets --cpu-prof write its profile).
  process.once('SIGTERM', () => process.exit(0));
  process.stdout.write('ready\n');
}

interface Child {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

/** Starts a child; its stderr is passed on (`forwardStderr`) or kept for an error message. */
function spawnChild(command: string, args: string[], forwardStderr: boolean): Child {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (forwardStderr ? process.stderr.write(d) : (err += d.toString())));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, stdout: () => out, stderr: () => err };
}

async function stop(c: Child): Promise<void> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.kill('SIGTERM');
  const timer = setTimeout(() => c.child.kill('SIGKILL'), stopMsMax);
  await c.exited;
  clearTimeout(timer);
}

// ---- contenders ----

interface OurRun {
  readonly ms: number;
  readonly progress: SyncProgress;
}

/** Syncs `sourcePath` (served by a child process) onto `targetPath`; the state file goes to `stateDir`. */
async function ourSync(sourcePath: string, targetPath: string, stateDir: string, copyMode = true): Promise<OurRun> {
  const secret = randomBytes(32);
  const port = await freePort(loopback);
  const source = spawnChild(process.execPath, [fileURLToPath(import.meta.url), 'source', sourcePath, String(port), secret.toString('hex')], true);
  try {
    await waitFor('the sync source to listen', () => source.stdout().includes('ready'), startMsMax);
    const storage = await FsStorage.create(stateDir);
    await storage.remove('sync-state');
    const device = await openDevice(targetPath);
    const startMs = performance.now();
    const target = await SyncTarget.open({ resource: 'r0', device, storage, copyMode });
    target.attach(await dialPeer({ host: loopback, port, auth: { secret, clusterId, localHost: 'target' }, peerHost: 'source', channel: 'sync' }));
    const timer = setTimeout(() => void target.close(), copyMsMax);
    await target.whenDone();
    const ms = performance.now() - startMs;
    clearTimeout(timer);
    const progress = target.progress();
    await device.close();
    return { ms, progress };
  } finally {
    await stop(source);
  }
}

async function nbdkitFile(path: string): Promise<{ nbdkit: Child; port: number }> {
  const port = await freePort(loopback);
  // Its stderr is kept: the readiness probe below makes it log a reset connection.
  const nbdkit = spawnChild('nbdkit', ['-f', '--exit-with-parent', '-i', loopback, '-p', String(port), 'file', `file=${path}`], false);
  const answers = (): Promise<boolean> =>
    new Promise((resolve) => {
      const s = connect(port, loopback);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  await waitFor('nbdkit to listen', answers, startMsMax);
  return { nbdkit, port };
}

/** nbdcopy between two nbdkit file exports; `flush` makes nbdcopy flush the destination at the end. */
async function nbdcopy(sourcePath: string, targetPath: string, flush: boolean): Promise<number> {
  const a = await nbdkitFile(sourcePath);
  const b = await nbdkitFile(targetPath);
  try {
    const startMs = performance.now();
    const args = [...(flush ? ['--flush'] : []), `nbd://${loopback}:${a.port}`, `nbd://${loopback}:${b.port}`];
    const r = await run('nbdcopy', args, { timeoutMs: copyMsMax });
    if (r.code !== 0) throw new Error(`nbdcopy failed: ${r.stderr}\nnbdkit: ${a.nbdkit.stderr()}${b.nbdkit.stderr()}`);
    return performance.now() - startMs;
  } finally {
    await stop(a.nbdkit);
    await stop(b.nbdkit);
  }
}

// ---- files ----



// ---- (c) digests ----

function digestRate(digest: (block: Buffer) => unknown): number {
  const range = randomFillSync(Buffer.allocUnsafe(syncLimits.rangeBytesMax));
  const out = Buffer.allocUnsafe(8);
  let bytes = 0;
  const startMs = performance.now();
  while (performance.now() - startMs < digestMeasureMs) {
    for (let at = 0; at < range.length; at += syncLimits.blockBytes) {
      const v = digest(range.subarray(at, at + syncLimits.blockBytes));
      if (typeof v === 'bigint') out.writeBigUInt64LE(v, 0);
    }
    bytes += range.length;
  }
  return mibPerS(bytes, performance.now() - startMs);
}

function digestFigures(): void {
  console.log('\n(c) block digests, 4 KiB blocks of a 1 MiB range, one call per block (MiB/s):');
  console.log('| digest | MiB/s |');
  console.log('|---|---:|');
  const seed = 0x1234n;
  const candidates: [string, (b: Buffer) => unknown][] = [
    ['xxh64 (seeded)', (b) => xxh64(b, seed)],
    ['xxh3-64 (seeded)', (b) => xxh3.xxh64(b, seed)],
    ['crc32c (32 bits: too short)', (b) => crc32c(b)],
  ];
  for (const [name, digest] of candidates) console.log(`| ${name} | ${Math.round(digestRate(digest))} |`);
}

// ---- main ----

async function fullSync(dir: string, sourcePath: string, targetPath: string, sizeBytes: number, rounds: number): Promise<void> {
  const ours: number[] = [];
  const digestsOnly: number[] = [];
  const plain: number[] = [];
  const flushed: number[] = [];
  for (let round = 0; round < rounds; round++) {
    await rm(targetPath, { force: true });
    await sparseFile(targetPath, sizeBytes);
    const r = await ourSync(sourcePath, targetPath, join(dir, 'state'));
    if (r.progress.dataBytes !== sizeBytes) throw new Error(`our sync moved ${r.progress.dataBytes} data bytes, expected ${sizeBytes}`);
    ours.push(r.ms);
    await rm(targetPath, { force: true });
    await sparseFile(targetPath, sizeBytes);
    digestsOnly.push((await ourSync(sourcePath, targetPath, join(dir, 'state'), false)).ms);
    for (const [flush, list] of [[false, plain], [true, flushed]] as const) {
      await rm(targetPath, { force: true });
      await sparseFile(targetPath, sizeBytes);
      list.push(await nbdcopy(sourcePath, targetPath, flush));
    }
    console.log(`round ${round + 1}: ours ${Math.round(ours[round]!)} ms (copy mode off ${Math.round(digestsOnly[round]!)} ms), nbdcopy ${Math.round(plain[round]!)} ms, nbdcopy --flush ${Math.round(flushed[round]!)} ms`);
  }
  const best = (list: number[]): number => mibPerS(sizeBytes, Math.min(...list));
  const median = (list: number[]): number => mibPerS(sizeBytes, [...list].sort((x, y) => x - y)[Math.floor(list.length / 2)]!);
  console.log(`\n(a) full sync of a random file onto an all-zero one, ${rounds} rounds:`);
  console.log('| copy | best MiB/s | median MiB/s | ours / it (best) | ours / it (median) |');
  console.log('|---|---:|---:|---:|---:|');
  const row = (name: string, list: number[]): void => {
    const ratios = `${(best(ours) / best(list)).toFixed(2)} | ${(median(ours) / median(list)).toFixed(2)}`;
    console.log(`| ${name} | ${Math.round(best(list))} | ${Math.round(median(list))} | ${ratios} |`);
  };
  row('ours: source and target processes, loopback TCP, ends with fdatasync', ours);
  row('ours with copy mode off (the target reads and digests its blank disk)', digestsOnly);
  row('nbdcopy between two nbdkit file exports', plain);
  row('nbdcopy --flush (ends with a flush, like ours)', flushed);
}

async function fastSync(dir: string, sourcePath: string, targetPath: string, sizeBytes: number): Promise<void> {
  await rm(targetPath, { force: true });
  await copyFile(sourcePath, targetPath);
  const r = await ourSync(sourcePath, targetPath, join(dir, 'state'));
  const moved = r.progress.sentBytes + r.progress.receivedBytes;
  const percent = (100 * moved) / sizeBytes;
  console.log('\n(b) fast full sync of two identical random files:');
  console.log(`moved ${moved} bytes over the link for ${sizeBytes} bytes of device: ${percent.toFixed(3)} % (limit ${fastSyncMovedPercentMax} %), ${Math.round(mibPerS(sizeBytes, r.ms))} MiB/s of device compared`);
  if (percent >= fastSyncMovedPercentMax || r.progress.dataBytes !== 0) throw new Error('fast full sync moved too much');
}

async function main(): Promise<void> {
  const sizeBytes = parseSize(process.env['BENCH_SYNC_SIZE']);
  const rounds = Number(process.env['BENCH_SYNC_ROUNDS'] ?? roundsDefault);
  const dir = await mkdtemp(join(process.env['BENCH_DIR'] ?? tmpdir(), 'mars-bench-sync-'));
  console.log(`node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), device ${sizeBytes / bytesPerMiB} MiB, ${dir}`);
  try {
    const sourcePath = join(dir, 'source.img');
    const targetPath = join(dir, 'target.img');
    await randomFile(sourcePath, sizeBytes);
    await fullSync(dir, sourcePath, targetPath, sizeBytes, rounds);
    if (!(await sameFiles(sourcePath, targetPath, sizeBytes))) throw new Error('after nbdcopy the files differ');
    await fastSync(dir, sourcePath, targetPath, sizeBytes);
    digestFigures();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'source') {
  void serveSource(process.argv[3]!, Number(process.argv[4]), process.argv[5]!);
} else {
  main().catch((err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exitCode = 1;
  });
}
