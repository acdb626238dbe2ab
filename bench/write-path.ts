/**
 * The primary's write path without NBD and without a client: a Logger (log writer, shadow
 * index, writeback to a device file) on real files, fed the pattern of bench/run.ts job (a)
 * by default: 16 random 4 KiB writes in flight, a FLUSH after every 64; with `--sequential
 * --write-kib 1024 --in-flight 8 --flush-every 0` the pattern of job (b): 1 MiB sequential
 * writes, 8 in flight, no FLUSH. It prints the rate, and the CPU per write of the main
 * thread and of the whole process (all threads, /proc/self/task/*\/stat), which move less
 * than rates on a shared machine. Run it on the tree before and after a change,
 * interleaved:
 *
 *   node dist/bench/write-path.js [--dir DIR] [--seconds S] [--size-mib M] [--seed N]
 *        [--write-kib K] [--in-flight N] [--flush-every N (0: never)] [--sequential]
 */
import { readFile, readdir, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { Random } from '../src/core/random.js';
import { systemTimers } from '../src/core/timers.js';
import { Logger } from '../src/logger/logger.js';
import { FsFile, FsStorage } from '../src/storage/fs-storage.js';
import { stopBatchWorker } from '../src/storage/batch-writer.js';

/** USER_HZ of /proc/PID/stat. */
const clockTicksPerS = 100;

function argValue(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

async function threadTicks(tid: string): Promise<number> {
  const fields = (await readFile(`/proc/self/task/${tid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function cpuSeconds(): Promise<{ main: number; all: number }> {
  let all = 0;
  for (const tid of await readdir('/proc/self/task')) all += await threadTicks(tid).catch(() => 0);
  return { main: (await threadTicks(String(process.pid))) / clockTicksPerS, all: all / clockTicksPerS };
}

/** fdatasyncs of the device file and of the log files, counted and timed (FsFile.sync wrapped). */
const syncs = { log: { count: 0, ms: 0 }, device: { count: 0, ms: 0 } };

function countSyncs(): void {
  const original = Object.getOwnPropertyDescriptor(FsFile.prototype, 'sync')?.value as (this: FsFile) => Promise<void>;
  FsFile.prototype.sync = async function (this: FsFile): Promise<void> {
    const figures = this.name === 'device' ? syncs.device : syncs.log;
    const t0 = process.hrtime.bigint();
    try {
      await original.call(this);
    } finally {
      figures.count++;
      figures.ms += Number(process.hrtime.bigint() - t0) / 1e6;
    }
  };
}

async function main(): Promise<void> {
  countSyncs();
  const seconds = Number(argValue('--seconds', '6'));
  const writeBytes = Number(argValue('--write-kib', '4')) * 1024;
  const inFlight = Number(argValue('--in-flight', '16'));
  const writesPerFlush = Number(argValue('--flush-every', '64'));
  const sequential = process.argv.includes('--sequential');
  for (const [name, n, min] of [['--write-kib', writeBytes, 4096], ['--in-flight', inFlight, 1], ['--flush-every', writesPerFlush, 0]] as const) {
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${name}: expected a whole number (at least ${min === 4096 ? 4 : min})`);
  }
  const sizeBytes = Number(argValue('--size-mib', '256')) * 1024 * 1024;
  const random = new Random(Number(argValue('--seed', '1')));
  const dir = await mkdtemp(join(argValue('--dir', tmpdir()), 'mars-write-path-'));
  try {
    const storage = await FsStorage.create(dir);
    const device = await storage.open('device', 'create');
    await device.truncate(sizeBytes);
    const logger = await Logger.open({
      storage,
      device,
      sizeBytes,
      host: 'bench',
      clock: systemClock,
      timers: systemTimers,
      start: { logNumber: 1, logHost: 'bench', offsetBytes: 0, nextSeq: 1n },
    });
    const payloads = Array.from({ length: Math.max(8, Math.min(256, (64 * 1024 * 1024) / writeBytes)) }, () => random.bytes(writeBytes));
    const blocks = sizeBytes / writeBytes;
    let issued = 0;
    let done = 0;
    let stop = false;
    // One lane per request in flight; the lane of every 64th write (--flush-every) also sends a FLUSH, as fio's --fsync=64.
    const lane = async (): Promise<void> => {
      while (!stop) {
        const n = issued++;
        const data = Buffer.from(payloads[n % payloads.length]!);
        await logger.write((sequential ? n % blocks : random.int(blocks)) * writeBytes, data, false);
        done++;
        if (writesPerFlush > 0 && n % writesPerFlush === writesPerFlush - 1) await logger.flush();
      }
    };
    const warmup = Promise.all(Array.from({ length: inFlight }, lane));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const cpu0 = await cpuSeconds();
    const syncs0 = { log: { ...syncs.log }, device: { ...syncs.device } };
    const done0 = done;
    const t0 = process.hrtime.bigint();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const cpu1 = await cpuSeconds();
    const logSyncs = syncs.log.count - syncs0.log.count;
    const logSyncMs = syncs.log.ms - syncs0.log.ms;
    const deviceSyncs = syncs.device.count - syncs0.device.count;
    const deviceSyncMs = syncs.device.ms - syncs0.device.ms;
    const writes = done - done0;
    const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
    stop = true;
    await warmup;
    await logger.close();
    await device.close();
    const us = (s: number): string => ((s * 1e6) / writes).toFixed(1);
    const mib = (writes * writeBytes) / 1024 / 1024;
    const perSync = (count: number, ms: number): string =>
      count === 0 ? 'none' : `${count}, every ${(mib / count).toFixed(1)} MiB / ${((wallS * 1000) / count).toFixed(0)} ms, mean ${(ms / count).toFixed(1)} ms`;
    console.log(`log fdatasyncs ${perSync(logSyncs, logSyncMs)}; device fdatasyncs ${perSync(deviceSyncs, deviceSyncMs)} (completed while measured)`);
    console.log(
      `writes/s ${Math.round(writes / wallS)} (${((writes * writeBytes) / wallS / 1024 / 1024).toFixed(1)} MiB/s)  us CPU per write: main thread ${us(cpu1.main - cpu0.main)}, all threads ${us(cpu1.all - cpu0.all)}  (${writes} writes in ${wallS.toFixed(1)} s)`,
    );
  } finally {
    await stopBatchWorker();
    await rm(dir, { recursive: true, force: true });
  }
}

await main().catch((err: unknown) => {
  process.stderr.write(`write-path: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
