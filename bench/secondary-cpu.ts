/**
 * The secondary's cost of a replicated MiB, alone: no NBD, no primary daemon, no fio. A
 * child process serves a log (bench/fetch-serve.js in its server role: the real LogWriter
 * through the ring of recent log bytes, the real FetchServer on loopback TCP); this process
 * is the secondary, with the parts a secondary's marsd runs for a resource: the real
 * FetchClient (receive, verify every record, append to the local copy, fdatasync every
 * 16 MiB) into fresh LocalCopies, and the real Replayer (read the copy back, apply it to a
 * device file, dirty marks, checkpoints with the position saved after the copy's
 * fdatasync), each round from an empty directory until the whole log is replayed. It
 * measures its own CPU over each round, per thread, from /proc/self/task/TID/schedstat:
 * the main thread (event loop) and the others (thread pool: pwrite, pread, fdatasync;
 * V8's helpers: garbage collection), in µs per MiB replicated.
 *
 *   node dist/bench/secondary-cpu.js [--dir DIR] [--server-dir DIR] [--mib N]
 *     [--record-kib K] [--rounds R] [--rate-mibs M] [--compression default|none|lz4]
 *     [--profile DIR] [--seed N]
 *
 * `--dir` (default /dev/shm): the secondary's copies and device, a tmpfs by default so
 * that the figure is CPU, not a disk. `--compression default` offers what the daemon
 * offers (lz4, brotli, deflate as this host can; the records are random bytes, as fio
 * writes, so the server sends them plain). `--profile DIR` writes one .cpuprofile of this
 * process's main thread per round and prints the functions with the most self time. For
 * an A/B, run two builds alternately. Not part of `npm run bench`.
 *
 * `--rate-mibs M`: fetch under a bandwidth limit of M MiB/s (the daemon's fetch limit,
 * src/daemon/bandwidth.ts), so that the log arrives at a steady pace and replay follows
 * fetch closely, as on a secondary of a primary that writes at that rate; without it the
 * server sends as fast as it can and replay reads the copy in full chunks.
 */
import { fork } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../src/core/clock.js';
import { Random } from '../src/core/random.js';
import { availableCompressions, type CompressionName } from '../src/compress/index.js';
import { Bandwidth } from '../src/daemon/bandwidth.js';
import { replayIdleCheckpointMs } from '../src/daemon/replica.js';
import { FetchClient, LocalCopies, Replayer } from '../src/fetch/index.js';
import { parseLogName } from '../src/log/index.js';
import { dialPeer, systemTimers } from '../src/net/index.js';
import { saveDirtyMark, savePosition } from '../src/replay/position.js';
import { FsStorage } from '../src/storage/fs-storage.js';
import { stopBatchWorker } from '../src/storage/batch-writer.js';
import { argValue, clusterId, cpuSplit, resource, roundMsMax, secret, serverHost, threadRunNs, nextMessage, selfTimes, type Profile, type ToServer } from './serve-role.js';

const localHost = 'beta';
/** The server writes records at offsets modulo 1 GiB (bench/fetch-serve.ts). */
const deviceBytesMax = 1 << 30;
/** How often the round's end is looked for (the bench's own main-thread cost). */
const pollMs = 10;

/** What the client offers: what the daemon offers by default, nothing, or the one named. */
function offeredCompressions(): CompressionName[] {
  const arg = argValue('--compression', 'default');
  return arg === 'default' ? availableCompressions() : arg === 'none' ? [] : [arg as CompressionName];
}

interface RoundFigures {
  readonly mibPerS: number;
  readonly mainUsPerMiB: number;
  readonly otherUsPerMiB: number;
  readonly serverUsPerMiB: number;
}

/** One round: fetch and replay the whole log into `dir`; returns the wall time (the CPU is measured around it). */
/** Replay's state saves of the round (each a writeAtomic: a new file, fsync, rename, directory fsync). */
const saves = { positions: 0, marks: 0 };

async function replicate(dir: string, port: number, logName: string, logBytes: number, round: number, rateMiBPerS: number): Promise<number> {
  saves.positions = 0;
  saves.marks = 0;
  const storage = await FsStorage.create(dir);
  const deviceStorage = await FsStorage.create(join(dir, 'dev'));
  const device = await deviceStorage.open('device', 'create');
  const deviceSizeBytes = Math.min(deviceBytesMax, Math.ceil(logBytes / (1 << 20)) << 20);
  await device.truncate(deviceSizeBytes);
  const copies = await LocalCopies.open(storage);
  const client = new FetchClient({
    resource,
    copies,
    dial: () => dialPeer({ host: '127.0.0.1', port, auth: { secret, clusterId, localHost }, peerHost: serverHost, channel: 'fetch' }),
    clock: systemClock,
    timers: systemTimers,
    random: new Random(round + 1),
    compressions: offeredCompressions(),
    ...(rateMiBPerS > 0 ? { pacer: new Bandwidth(systemClock, { fetch: rateMiBPerS * 1024 * 1024 }).pacer(resource, 'fetch') } : {}),
  });
  const logNumber = parseLogName(logName)!.logNumber;
  const replayer = new Replayer({
    source: copies.source,
    device,
    deviceSizeBytes,
    start: { logNumber, logHost: serverHost, offsetBytes: 0, nextSeq: 1n },
    persist: async (p) => {
      await copies.sync(); // as the daemon does (src/daemon/replica.ts persist)
      await savePosition(storage, localHost, p);
      saves.positions++;
    },
    persistDirtyMark: async (mark) => {
      await saveDirtyMark(storage, localHost, mark);
      saves.marks++;
    },
    idleCheckpointMs: replayIdleCheckpointMs,
    timers: systemTimers,
  });
  const t0 = process.hrtime.bigint();
  client.start();
  replayer.start();
  for (;;) {
    const r = replayer.status();
    if (r.appliedPosition.logNumber === logNumber && r.appliedPosition.offsetBytes >= logBytes) break;
    const f = client.status();
    if (f.state === 'failed') throw new Error(`fetch failed: ${f.error?.message}`);
    if (r.state === 'failed') throw new Error(`replay failed: ${r.error?.message}`);
    if (Number(process.hrtime.bigint() - t0) / 1e6 > roundMsMax) throw new Error(`round ${round} did not finish within ${roundMsMax} ms`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  const wallNs = Number(process.hrtime.bigint() - t0);
  await replayer.stop();
  await client.stop();
  await device.close();
  return wallNs;
}

async function main(): Promise<void> {
  const rounds = Number(argValue('--rounds', '5'));
  const serverDir = await mkdtemp(join(argValue('--server-dir', tmpdir()), 'mars-secondary-cpu-server-'));
  const parent = await mkdtemp(join(argValue('--dir', '/dev/shm'), 'mars-secondary-cpu-'));
  const profileDir = argValue('--profile', '');
  const passOn = ['--mib', '--record-kib', '--compression', '--seed'].flatMap((name) => (process.argv.includes(name) ? [name, argValue(name, '')] : []));
  const serverScript = join(fileURLToPath(new URL('.', import.meta.url)), 'fetch-serve.js');
  const child = fork(serverScript, ['--serve', '--dir', serverDir, '--source', 'ring', ...passOn], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const session = new Session();
  if (profileDir !== '') {
    session.connect();
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: 200 });
    await mkdir(profileDir, { recursive: true });
  }
  try {
    const ready = await nextMessage(child);
    if (ready.kind !== 'ready') throw new Error('the server did not start');
    const mib = ready.logBytes / (1024 * 1024);
    const figures: RoundFigures[] = [];
    for (let round = 0; round < rounds; round++) {
      const dir = join(parent, `round${round}`);
      await mkdir(join(dir, 'dev'), { recursive: true });
      child.send({ kind: 'go' } satisfies ToServer);
      await nextMessage(child);
      if (profileDir !== '') session.post('Profiler.start');
      const before = await threadRunNs();
      const wallNs = await replicate(dir, ready.port, ready.logName, ready.logBytes, round, Number(argValue('--rate-mibs', '0')));
      const split = cpuSplit(before, await threadRunNs());
      if (profileDir !== '') {
        const profile = await new Promise<unknown>((resolve, reject) => session.post('Profiler.stop', (err, r) => (err === null ? resolve(r.profile) : reject(err))));
        await writeFile(join(profileDir, `secondary-cpu-${process.pid}-round${round}.cpuprofile`), JSON.stringify(profile));
      }
      child.send({ kind: 'stop', round } satisfies ToServer);
      const server = await nextMessage(child);
      if (server.kind !== 'cpu') throw new Error('no CPU figures from the server');
      await rm(dir, { recursive: true, force: true });
      const f: RoundFigures = {
        mibPerS: mib / (wallNs / 1e9),
        mainUsPerMiB: split.mainNs / 1000 / mib,
        otherUsPerMiB: split.otherNs / 1000 / mib,
        serverUsPerMiB: (server.mainNs + server.otherNs) / 1000 / mib,
      };
      figures.push(f);
      console.log(
        `round ${round}: ${f.mibPerS.toFixed(0)} MiB/s  secondary CPU per MiB: main ${f.mainUsPerMiB.toFixed(0)} us, other threads ${f.otherUsPerMiB.toFixed(0)} us, all ${(f.mainUsPerMiB + f.otherUsPerMiB).toFixed(0)} us  (server all ${f.serverUsPerMiB.toFixed(0)} us); state saves: ${saves.positions} positions, ${saves.marks} dirty marks`,
      );
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(
      `median of ${rounds} rounds (${mib.toFixed(0)} MiB each): ${median(figures.map((f) => f.mibPerS)).toFixed(0)} MiB/s  secondary CPU per MiB: main ${median(figures.map((f) => f.mainUsPerMiB)).toFixed(0)} us, other ${median(figures.map((f) => f.otherUsPerMiB)).toFixed(0)} us, all ${median(figures.map((f) => f.mainUsPerMiB + f.otherUsPerMiB)).toFixed(0)} us`,
    );
    if (profileDir !== '') {
      for (const name of (await readdir(profileDir)).filter((n) => n.startsWith(`secondary-cpu-${process.pid}-`)).sort()) {
        console.log(`self time of the secondary's main thread, ${name}:`);
        for (const line of selfTimes(JSON.parse(await readFile(join(profileDir, name), 'utf8')) as Profile, 20, 'left out')) console.log(`  ${line}`);
      }
    }
    child.send({ kind: 'exit' } satisfies ToServer);
    await new Promise((resolve) => child.once('exit', resolve));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(serverDir, { recursive: true, force: true });
    await rm(parent, { recursive: true, force: true });
    await stopBatchWorker();
  }
}

await main();
