/**
 * The primary's cost of serving a fetch, alone: no NBD, no logger writeback, no second
 * daemon. A child process (the server) writes `--mib` MiB of log records with the real
 * LogWriter on FsStorage (through the ring of recent log bytes, as the daemon does), then
 * serves them with the real FetchServer over loopback TCP; this process runs the real
 * FetchClient into a fresh local copy each round and tells the server when a round starts
 * and ends. The server measures its own CPU over each round, per thread, from
 * /proc/self/task/TID/schedstat (nanoseconds, unlike stat's 10 ms ticks): the main thread
 * (event loop) and the others (thread pool, lz4 threads, V8's helpers).
 *
 *   node dist/bench/fetch-serve.js [--dir DIR] [--client-dir DIR] [--mib N] [--record-kib K]
 *     [--rounds R] [--source ring|file] [--compression default|none|lz4] [--profile DIR] [--seed N]
 *
 * `--source ring` (default): the ring holds the whole log (its capacity is raised to the
 * log's size for this), as for a secondary that keeps up with the primary; `file`: the
 * ring is off and the log is read from the file (read once before the first round, so
 * from the page cache). `--compression default` offers what the daemon offers
 * (lz4, brotli, deflate as this host can; the records are random bytes, as fio writes).
 * `--profile DIR` writes one .cpuprofile of the server's main thread per round and prints
 * the functions with the most self time. For an A/B, run two builds alternately.
 */
import { fork } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../src/core/clock.js';
import { Random } from '../src/core/random.js';
import { availableCompressions, type CompressionName } from '../src/compress/index.js';
import { FetchClient, FetchServer, LocalCopies, liveWriterEnd, RecentLogBytes, StorageLogSource, TeeLogStorage } from '../src/fetch/index.js';
import { formatLogName, LogWriter } from '../src/log/index.js';
import { dialPeer, PeerServer, systemTimers } from '../src/net/index.js';
import { FsStorage } from '../src/storage/fs-storage.js';
import { stopBatchWorker } from '../src/storage/batch-writer.js';
import { argValue, clusterId, cpuSplit, resource, roundMsMax, secret, serverHost, threadRunNs, nextMessage, selfTimes, type FromServer, type Profile, type ToServer } from './serve-role.js';

/** Distinct random payloads the records cycle through (random bytes do not compress). */
const payloadPoolSize = 8;

/** The server process: writes the log, listens, measures rounds on request. */
async function serve(): Promise<void> {
  const dir = argValue('--dir', tmpdir());
  const mib = Number(argValue('--mib', '256'));
  const recordBytes = Number(argValue('--record-kib', '1024')) * 1024;
  const sourceMode = argValue('--source', 'ring');
  const compressionArg = argValue('--compression', 'default');
  const profileDir = argValue('--profile', '');
  const random = new Random(Number(argValue('--seed', '1')));
  const compressions: CompressionName[] = compressionArg === 'default' ? availableCompressions() : compressionArg === 'none' ? [] : [compressionArg as CompressionName];
  const storage = await FsStorage.create(dir);
  // In ring mode every read is served from the ring, as views where the tree lends them (a secondary close behind the log end).
  const ringBytes = sourceMode === 'ring' ? mib * 1024 * 1024 + 64 * 1024 * 1024 : 1;
  const recent = new RecentLogBytes(ringBytes, ringBytes);
  if (sourceMode === 'ring') recent.arm(); // held for the whole run: every append is kept
  const writer = await LogWriter.open(new TeeLogStorage(storage, serverHost, recent), { host: serverHost, logNumber: 1, startOffsetBytes: 0, nextSeq: 1n, rotateBytes: 1 << 30 });
  const payloads = Array.from({ length: payloadPoolSize }, () => random.bytes(recordBytes));
  const records = Math.floor((mib * 1024 * 1024) / recordBytes);
  for (let i = 0; i < records; i++) {
    await writer.append({ kind: 'write', lamport: BigInt(i + 1), offsetBytes: (i * recordBytes) % (1 << 30), payload: payloads[i % payloadPoolSize]! });
    if (i % 16 === 15) await writer.sync();
  }
  await writer.sync();
  const logName = formatLogName(1, serverHost);
  const logBytes = writer.durablePosition().endOffsetBytes;
  if (sourceMode === 'file') await storage.readAll(logName); // into the page cache: the rounds measure CPU, not the disk
  const source = new StorageLogSource({ storage, live: liveWriterEnd(writer, serverHost), ...(sourceMode === 'ring' ? { recent } : {}) });
  const fetch = new FetchServer({ sources: (name) => (name === resource ? source : undefined), compressions, yieldTurn: () => new Promise((resolve) => setImmediate(resolve)) });
  const peer = await PeerServer.listen({
    listenHost: '127.0.0.1',
    port: 0,
    auth: { secret, clusterId, localHost: serverHost },
    onLink: (link) => (link.info.channel === 'fetch' ? fetch.adopt(link) : link.close()),
  });
  const session = new Session();
  if (profileDir !== '') {
    session.connect();
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: 200 });
  }
  let before = new Map<number, number>();
  const send = (m: FromServer): void => void process.send!(m);
  process.on('message', (m: ToServer) => {
    void (async () => {
      if (m.kind === 'go') {
        if (profileDir !== '') session.post('Profiler.start');
        before = await threadRunNs();
        send({ kind: 'go-ack' });
      } else if (m.kind === 'stop') {
        const split = cpuSplit(before, await threadRunNs());
        if (profileDir !== '') {
          const profile = await new Promise<unknown>((resolve, reject) => session.post('Profiler.stop', (err, r) => (err === null ? resolve(r.profile) : reject(err))));
          await mkdir(profileDir, { recursive: true });
          await writeFile(join(profileDir, `fetch-serve-${process.pid}-round${m.round}.cpuprofile`), JSON.stringify(profile));
        }
        send({ kind: 'cpu', ...split });
      } else {
        fetch.close();
        await peer.close();
        await writer.close();
        await stopBatchWorker();
        process.exit(0);
      }
    })();
  });
  send({ kind: 'ready', port: peer.port, logBytes, logName });
}

async function main(): Promise<void> {
  const rounds = Number(argValue('--rounds', '5'));
  const dir = await mkdtemp(join(argValue('--dir', tmpdir()), 'mars-fetch-serve-'));
  const clientParent = await mkdtemp(join(argValue('--client-dir', '/dev/shm'), 'mars-fetch-serve-client-'));
  const profileDir = argValue('--profile', '');
  const passOn = ['--mib', '--record-kib', '--source', '--compression', '--profile', '--seed'].flatMap((name) => (process.argv.includes(name) ? [name, argValue(name, '')] : []));
  const child = fork(fileURLToPath(import.meta.url), ['--serve', '--dir', dir, ...passOn], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const ready = await nextMessage(child);
    if (ready.kind !== 'ready') throw new Error('the server did not start');
    const mib = ready.logBytes / (1024 * 1024);
    const compressions = argValue('--compression', 'default') === 'default' ? availableCompressions() : [];
    const figures: { mibPerS: number; mainUsPerMiB: number; otherUsPerMiB: number }[] = [];
    for (let round = 0; round < rounds; round++) {
      const copyDir = join(clientParent, `round${round}`);
      await mkdir(copyDir);
      const copies = await LocalCopies.open(await FsStorage.create(copyDir));
      const client = new FetchClient({
        resource,
        copies,
        dial: () => dialPeer({ host: '127.0.0.1', port: ready.port, auth: { secret, clusterId, localHost: 'beta' }, peerHost: serverHost, channel: 'fetch' }),
        clock: systemClock,
        timers: systemTimers,
        random: new Random(round + 1),
        compressions,
      });
      child.send({ kind: 'go' } satisfies ToServer);
      await nextMessage(child);
      const t0 = process.hrtime.bigint();
      client.start();
      for (;;) {
        const s = client.status();
        if (s.logName === ready.logName && s.localBytes >= ready.logBytes) break;
        if (s.state === 'failed') throw new Error(`fetch failed: ${s.error?.message}`);
        if (Number(process.hrtime.bigint() - t0) / 1e6 > roundMsMax) throw new Error(`round ${round} did not finish within ${roundMsMax} ms`);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
      child.send({ kind: 'stop', round } satisfies ToServer);
      const cpu = await nextMessage(child);
      await client.stop();
      await rm(copyDir, { recursive: true, force: true });
      if (cpu.kind !== 'cpu') throw new Error('no CPU figures from the server');
      const f = { mibPerS: mib / wallS, mainUsPerMiB: cpu.mainNs / 1000 / mib, otherUsPerMiB: cpu.otherNs / 1000 / mib };
      figures.push(f);
      console.log(`round ${round}: ${f.mibPerS.toFixed(0)} MiB/s  server CPU per MiB: main ${f.mainUsPerMiB.toFixed(0)} us, other threads ${f.otherUsPerMiB.toFixed(0)} us, all ${(f.mainUsPerMiB + f.otherUsPerMiB).toFixed(0)} us`);
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(
      `median of ${rounds} rounds (${mib.toFixed(0)} MiB each): ${median(figures.map((f) => f.mibPerS)).toFixed(0)} MiB/s  server CPU per MiB: main ${median(figures.map((f) => f.mainUsPerMiB)).toFixed(0)} us, other ${median(figures.map((f) => f.otherUsPerMiB)).toFixed(0)} us, all ${median(figures.map((f) => f.mainUsPerMiB + f.otherUsPerMiB)).toFixed(0)} us`,
    );
    if (profileDir !== '') {
      for (const name of (await readdir(profileDir)).filter((n) => n.startsWith(`fetch-serve-${child.pid}-`)).sort()) {
        console.log(`self time of the server's main thread, ${name}:`);
        for (const line of selfTimes(JSON.parse(await readFile(join(profileDir, name), 'utf8')) as Profile, 20)) console.log(`  ${line}`);
      }
    }
    child.send({ kind: 'exit' } satisfies ToServer);
    await new Promise((resolve) => child.once('exit', resolve));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    await rm(clientParent, { recursive: true, force: true });
    await stopBatchWorker();
  }
}

if (process.argv.includes('--serve')) await serve();
else await main();
