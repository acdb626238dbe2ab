/**
 * `npm run bench` (emergency part): what the application sees when the log filesystem
 * fills up. marsd's state directory is a small tmpfs (root needed for the mount; the
 * bench says so and skips otherwise); the devices are sparse files in the bench directory.
 *
 * 1. Transition: 1 MiB writes at QD8 (a FLUSH every 64 writes) through marsd while another
 *    file takes all but a little of the tmpfs, so the primary goes into emergency mode in
 *    the middle of the load. Printed: the write rate before and after, and the longest gap
 *    between two completed writes (the aim: no stall longer than 1 s).
 * 2. In emergency mode (the tmpfs is filled again and stays full), the same fio jobs against marsd and against
 *    `nbdkit file` on the same filesystem: the ratio (the aim: ≥ 0.8, straight to the device).
 *
 * Settings: BENCH_DIR (parent of the temporary directory), BENCH_EMERGENCY_RUNTIME_S
 * (each fio job, default 8), BENCH_EMERGENCY_TMPFS (bytes of the tmpfs, default 64M).
 * Everything started here is stopped by PID; the tmpfs is unmounted and the directory removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, open, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callDaemon } from '../src/control/client.js';
import { paths } from '../src/daemon/state-dir.js';
import { NbdClient } from '../src/nbd/client.js';
import { freePort, marsadm, removeDir, run, sparseFile, startMarsd, waitFor, type Marsd } from '../test/support/processes.js';
import { measuredJobs, runFio, type FioJob } from './fio.js';
import { onCleanup, runMain, say, table, writeResults } from './support.js';

const MiB = 1024 * 1024;
const loopback = '127.0.0.1';
const exportName = 'r0';
const deviceBytes = 256 * MiB;
const writeBytes = MiB;
const queueDepth = 8;
const flushEvery = 64;
/** Free bytes the filler leaves in the tmpfs: the log fills that within a second of writes. */
const fillerLeavesBytes = 6 * MiB;
/** Writes before the filler goes in, and after emergency mode was seen. */
const writesBefore = 96;
const writesAfter = 160;
const stallAimMs = 1000;
const nbdkitReadyMsMax = 10_000;
const controlMsMax = 30_000;
const emergencyWaitMsMax = 30_000;
const jobs: readonly FioJob[] = measuredJobs.filter((j) => j.direction === 'write');

interface Transition {
  rateBeforeMiBPerS: number;
  rateAfterMiBPerS: number;
  longestGapMs: number;
  emergencyAfterMs: number;
}

function mibPerS(bytes: number, ms: number): number {
  return ms > 0 ? bytes / MiB / (ms / 1000) : 0;
}

async function isEmergency(dir: string): Promise<boolean> {
  const answer = (await callDaemon(paths.controlSocket(dir), 'view', { name: exportName }, controlMsMax)) as { resources: { emergency?: { active: boolean } | null }[] };
  return answer.resources[0]?.emergency?.active === true;
}

async function logFileCount(dir: string): Promise<number> {
  const answer = (await callDaemon(paths.controlSocket(dir), 'view', { name: exportName }, controlMsMax)) as { resources: { logFiles: unknown[] }[] };
  return answer.resources[0]?.logFiles.length ?? 0;
}

/** Takes all but `leaveBytes` of the filesystem at `dir` with one file. */
async function fill(path: string, dir: string, leaveBytes: number): Promise<void> {
  const s = await statfs(dir);
  const bytes = Math.max(0, s.bavail * s.bsize - leaveBytes);
  const handle = await open(path, 'w');
  try {
    const chunk = Buffer.alloc(MiB);
    for (let at = 0; at < bytes; at += chunk.length) await handle.write(chunk, 0, Math.min(chunk.length, bytes - at), at);
  } finally {
    await handle.close();
  }
}

/** The load of phase 1: returns the completion times (ms) of every write. */
async function transition(daemon: Marsd, dir: string, filler: string): Promise<Transition> {
  const client = await NbdClient.connect({ host: loopback, port: daemon.nbdPort, exportName });
  const data = Buffer.alloc(writeBytes, 0x5a);
  const done: number[] = [];
  let issued = 0;
  let emergencyAt: number | undefined;
  let filled: Promise<void> | undefined;
  let afterEmergency = 0;
  let stop = false;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (!stop) {
      const n = issued++;
      await client.write((n * writeBytes) % deviceBytes, data);
      done.push(performance.now());
      if (emergencyAt !== undefined && ++afterEmergency >= writesAfter) stop = true;
      if (n % flushEvery === flushEvery - 1) await client.flush();
      if (n === writesBefore) filled ??= fill(filler, dir, fillerLeavesBytes);
    }
  };
  const watch = (async () => {
    const deadline = performance.now() + emergencyWaitMsMax;
    while (emergencyAt === undefined && performance.now() < deadline) {
      if (await isEmergency(dir)) emergencyAt = performance.now();
      else await new Promise((r) => setTimeout(r, 20));
    }
    if (emergencyAt === undefined) stop = true;
  })();
  await Promise.all([...Array.from({ length: queueDepth }, worker), watch]);
  await filled;
  await client.flush();
  await client.close();
  if (emergencyAt === undefined) throw new Error(`marsd did not enter emergency mode within ${emergencyWaitMsMax / 1000} s of the filler`);
  let longestGapMs = done[0]! - started;
  for (let i = 1; i < done.length; i++) longestGapMs = Math.max(longestGapMs, done[i]! - done[i - 1]!);
  const before = done.filter((t) => t < emergencyAt!);
  const after = done.filter((t) => t >= emergencyAt!);
  return {
    rateBeforeMiBPerS: mibPerS(before.length * writeBytes, (before.at(-1) ?? started) - started),
    rateAfterMiBPerS: mibPerS(after.length * writeBytes, (after.at(-1) ?? emergencyAt) - emergencyAt),
    longestGapMs,
    emergencyAfterMs: emergencyAt - started,
  };
}

interface Nbdkit {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<number>;
}

async function startNbdkit(file: string): Promise<Nbdkit> {
  const port = await freePort(loopback);
  const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', loopback, '-p', String(port), '-e', exportName, 'file', `file=${file}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number>((r) => child.on('exit', (code, signal) => r(code ?? (signal === null ? -1 : 128))));
  await waitFor(
    'nbdkit to accept an NBD handshake',
    async () => {
      if (child.exitCode !== null) throw new Error(`nbdkit exited with ${child.exitCode}`);
      const client = await NbdClient.connect({ host: loopback, port, exportName }).catch(() => undefined);
      await client?.close();
      return client !== undefined;
    },
    nbdkitReadyMsMax,
  );
  return { child, port, exited };
}

async function main(): Promise<void> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    say('emergency bench: skipped (needs root to mount a small tmpfs as the log filesystem)');
    return;
  }
  const runtimeS = Number(process.env['BENCH_EMERGENCY_RUNTIME_S'] ?? 8);
  const tmpfsBytes = Number(process.env['BENCH_EMERGENCY_TMPFS'] ?? 64 * MiB);
  const root = await mkdtemp(join(process.env['BENCH_DIR'] ?? tmpdir(), 'mars-bench-emergency-'));
  const dir = join(root, 'state');
  let daemon: Marsd | undefined;
  let nbdkit: Nbdkit | undefined;
  const cleanup = onCleanup(async () => {
    nbdkit?.child.kill('SIGKILL');
    if (daemon !== undefined) await daemon.kill9();
    await run('umount', ['-l', dir], { timeoutMs: 30_000 }).catch(() => undefined);
    await removeDir(root);
  });
  try {
    await mkdir(dir);
    const mounted = await run('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes},mode=0700`, 'tmpfs', dir], { timeoutMs: 30_000 });
    if (mounted.code !== 0) throw new Error(`mount tmpfs: ${mounted.stderr.trim()}`);
    const ours = await sparseFile(join(root, 'disk-ours.img'), deviceBytes);
    const reference = await sparseFile(join(root, 'disk-nbdkit.img'), deviceBytes);
    const created = await marsadm(dir, 'create-cluster', '--host', 'bench', '--listen', '127.0.0.1:7777');
    if (created.code !== 0) throw new Error(created.stderr.trim());
    daemon = await startMarsd(dir, { extraArgs: ['--log-rotate-bytes', String(8 * MiB)] });
    const resource = await marsadm(dir, 'create-resource', exportName, ours);
    if (resource.code !== 0) throw new Error(resource.stderr.trim());

    say(`emergency bench: log filesystem a ${tmpfsBytes / MiB} MiB tmpfs; devices ${deviceBytes / MiB} MiB sparse files in ${root}`);
    const t = await transition(daemon, dir, join(dir, 'filler'));
    say(
      table([
        ['transition into emergency mode (1 MiB writes, QD8)', 'MiB/s before', 'MiB/s after', 'longest gap ms', `aim < ${stallAimMs}`],
        ['ours', t.rateBeforeMiBPerS.toFixed(1), t.rateAfterMiBPerS.toFixed(1), t.longestGapMs.toFixed(0), t.longestGapMs < stallAimMs ? 'met' : 'MISSED'],
      ]),
    );
    say();
    // Emergency mode deleted the written-back logs, and with that room marsd may have logged
    // again: take the room once more and wait until it is in emergency mode.
    // Once in emergency mode it deletes what it has written back; take that room too.
    await fill(join(dir, 'filler-2'), dir, 2 * MiB);
    await waitFor('marsd to be in emergency mode', () => isEmergency(dir), emergencyWaitMsMax, 50);
    await waitFor('marsd to delete the logs it wrote back', async () => (await logFileCount(dir)) <= 1, emergencyWaitMsMax, 50);
    await fill(join(dir, 'filler-3'), dir, 2 * MiB);
    await waitFor('marsd to be in emergency mode', () => isEmergency(dir), emergencyWaitMsMax, 50);
    nbdkit = await startNbdkit(reference);
    const rows: string[][] = [['in emergency mode (fio, ' + String(runtimeS) + ' s each)', 'ours MiB/s', 'nbdkit MiB/s', 'ratio', 'aim ≥ 0.8']];
    const figures: Record<string, { ours: number; nbdkit: number; ratio: number }> = {};
    for (const job of jobs) {
      if (!(await isEmergency(dir))) throw new Error('marsd left emergency mode while the tmpfs was still full');
      const options = { sizeBytes: deviceBytes, runtimeS, rampS: 1, passTimeoutMs: 300_000 };
      const o = await runFio(job, { ...options, uri: `nbd://${loopback}:${daemon.nbdPort}/${exportName}` });
      const n = await runFio(job, { ...options, uri: `nbd://${loopback}:${nbdkit.port}/${exportName}` });
      const ratio = o.mibPerS / n.mibPerS;
      figures[job.name] = { ours: o.mibPerS, nbdkit: n.mibPerS, ratio };
      rows.push([job.label, o.mibPerS.toFixed(1), n.mibPerS.toFixed(1), ratio.toFixed(2), ratio >= 0.8 ? 'met' : 'MISSED']);
    }
    say(table(rows));
    await writeResults(process.env['BENCH_EMERGENCY_RESULTS'] ?? join('dist', 'bench-emergency-results.json'), { transition: t, emergency: figures, tmpfsBytes, deviceBytes, runtimeS });
  } finally {
    await cleanup();
  }
}

runMain(main);
