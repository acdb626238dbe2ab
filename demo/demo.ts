/**
 * The README's demo: a cluster of three hosts on 127.0.0.1–3 in a temporary directory,
 * each with its own state directory and marsd. alpha creates a resource on a sparse file
 * and writes through NBD with the project's own client; beta and gamma join with disks
 * full of other random bytes and sync while alpha keeps writing; both catch up and end
 * byte-identical to alpha's export. Then pause-replay on gamma freezes its disk while
 * fetch goes on, resume-replay catches up, and beta survives a kill -9 of its marsd.
 *
 * Every wait is bounded; the daemons are stopped and the directory removed also on
 * failure. Scripts poll the `view-MACRO` commands, and so does the demo; each marsadm
 * call starts Node, so it polls gently. Needs nothing but Node.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Random } from '../src/core/random.js';
import { NbdClient } from '../src/nbd/client.js';
import { marsadm, removeDir, sparseFile, startMarsd, tempDir, type Marsd, type RunResult } from '../test/support/processes.js';
import { newHost, waitHosts, type TestHost } from '../test/support/cluster-helpers.js';
import { digest, firstDifference, MiB, readDevice, readExport, status } from '../test/support/replication-helpers.js';

const resource = 'demo';
const deviceBytes = 64 * MiB;
const seed = 2024;
/** Writes per batch (each followed by a FLUSH), and the largest write in 4 KiB blocks. */
const batchWrites = 16;
const writeBlocksMax = 16;
/** While beta and gamma sync, alpha writes a batch every `syncBatchGapMs`, at most `syncBatchesMax` of them. */
const syncBatchesMax = 400;
const syncBatchGapMs = 200;
const waitMsMax = 120_000;
const pollMs = 500;
/** `marsadm view` on beta while it syncs, besides the one right after its join: this many, this far apart. */
const syncViewsMax = 1;
const syncViewGapMs = 1000;
const stopMsMax = 10_000;
/** Lines of each marsd's log shown when the demo fails. */
const diagnoseLogLines = 30;

const startedMs = performance.now();
let root = '';

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function elapsed(): string {
  return `${((performance.now() - startedMs) / 1000).toFixed(1)} s`;
}

function section(title: string): void {
  say(`\n=== ${title}   [${elapsed()}]`);
}

/** The temporary root printed as $DEMO, so that commands stay readable. */
function shown(text: string): string {
  return root === '' ? text : text.split(root).join('$DEMO');
}

function deviceOf(host: TestHost): string {
  return join(root, `${host.name}.img`);
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

interface AdmRun {
  readonly host: TestHost;
  readonly args: readonly string[];
  readonly result: RunResult;
}

/** Runs marsadm on `host` without printing; throws with its one-line reason when it fails. */
async function run(host: TestHost, ...args: string[]): Promise<AdmRun> {
  const result = await marsadm(host.dir, ...args);
  if (result.code !== 0) throw new Error(`marsadm ${args.join(' ')} on ${host.name} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return { host, args, result };
}

/** Prints a marsadm call as a shell line of its host, with its output. */
function show(r: AdmRun): string {
  say(`\n${r.host.name}$ ${shown(['marsadm', ...r.args].join(' '))}`);
  if (r.result.stdout.trim() !== '') say(shown(r.result.stdout.trimEnd()));
  return r.result.stdout;
}

async function adm(host: TestHost, ...args: string[]): Promise<string> {
  return show(await run(host, ...args));
}

async function macro(host: TestHost, name: string): Promise<AdmRun> {
  return run(host, `view-${name}`, resource);
}

function value(r: AdmRun): string {
  return r.result.stdout.trim();
}

async function startDaemon(host: TestHost): Promise<Marsd> {
  host.daemon = await startMarsd(host.dir, { nbdHost: host.ip });
  say(`\n${host.name}: marsd runs as pid ${host.daemon.child.pid}, peers on ${host.listen}, NBD on ${host.ip}:${host.daemon.nbdPort}`);
  return host.daemon;
}

/**
 * A file of `sizeBytes` seeded pseudo-random bytes (AES-CTR keyed by the seed: fast, and
 * the same on every run), standing for a disk that held something else; returns its SHA-256.
 */
async function randomDevice(path: string, sizeBytes: number, deviceSeed: number): Promise<string> {
  const key = createHash('sha256').update(`mars-demo-device-${deviceSeed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(4 * MiB);
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < sizeBytes; at += zeros.length) {
      const chunk = cipher.update(zeros.subarray(0, Math.min(zeros.length, sizeBytes - at)));
      hash.update(chunk);
      await handle.write(chunk, 0, chunk.length, at);
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** `batches` × `batchWrites` seeded random writes of 4–64 KiB at aligned offsets, each batch followed by a FLUSH. */
async function writeBatches(client: NbdClient, random: Random, batches: number): Promise<number> {
  let bytes = 0;
  for (let b = 0; b < batches; b++) {
    const writes: Promise<void>[] = [];
    for (let i = 0; i < batchWrites; i++) {
      const lengthBytes = (1 + random.int(writeBlocksMax)) * 4096;
      const offsetBytes = random.int((deviceBytes - lengthBytes) / 4096 + 1) * 4096;
      writes.push(client.write(offsetBytes, random.bytes(lengthBytes)));
      bytes += lengthBytes;
    }
    await Promise.all(writes);
    await client.flush();
  }
  return bytes;
}

async function writeAndSay(client: NbdClient, random: Random, batches: number, what: string): Promise<void> {
  const started = performance.now();
  const bytes = await writeBatches(client, random, batches);
  const ms = performance.now() - started;
  say(`\nalpha: ${what}: wrote ${batches * batchWrites} blocks (${(bytes / MiB).toFixed(1)} MiB) through NBD and flushed in ${ms.toFixed(0)} ms`);
}

/** Writes on alpha in the background until `stop.now` is set (or `syncBatchesMax` is reached); resolves with the bytes written. */
async function writeUntilStopped(client: NbdClient, random: Random, stop: { now: boolean }): Promise<number> {
  let bytes = 0;
  for (let batches = 0; !stop.now && batches < syncBatchesMax; batches++) {
    bytes += await writeBatches(client, random, 1);
    await sleep(syncBatchGapMs);
  }
  return bytes;
}

async function createCluster(hosts: readonly TestHost[]): Promise<void> {
  const [alpha, ...others] = hosts;
  if (alpha === undefined) throw new Error('no hosts');
  await adm(alpha, 'create-cluster', '--host', alpha.name, '--listen', alpha.listen);
  await startDaemon(alpha);
  for (const host of others) {
    await adm(host, 'join-cluster', alpha.listen, '--host', host.name, '--listen', host.listen, '--secret-file', join(alpha.dir, 'cluster.secret'));
    await startDaemon(host);
  }
  const alive = Object.fromEntries(hosts.map((h) => [h.name, 'alive']));
  for (const host of hosts) await waitHosts(host, alive, waitMsMax);
  await adm(alpha, 'view-hosts');
}

/** Throws once `deadlineMs` has passed, saying what was awaited and what was seen last. */
function checkDeadline(deadlineMs: number, what: string, last: string): void {
  if (performance.now() > deadlineMs) throw new Error(`gave up after ${waitMsMax / 1000} s waiting for ${what} (last seen: ${last})`);
}

/**
 * Polls is-consistent on the secondaries until all say 1, showing beta's view while it
 * does not (its sync, or the replay from the sync's start, still runs).
 */
async function watchSync(secondaries: readonly TestHost[], beta: TestHost): Promise<void> {
  const deadlineMs = performance.now() + waitMsMax;
  const last = new Map<TestHost, AdmRun>();
  let views = 0;
  let lastViewMs = performance.now();
  for (;;) {
    for (const host of secondaries) if (last.get(host) === undefined || value(last.get(host)!) !== '1') last.set(host, await macro(host, 'is-consistent'));
    const waiting = secondaries.filter((h) => value(last.get(h)!) !== '1');
    if (waiting.length === 0) break;
    if (waiting.includes(beta) && views < syncViewsMax && performance.now() - lastViewMs >= syncViewGapMs) {
      await adm(beta, 'view', resource);
      views++;
      lastViewMs = performance.now();
    }
    checkDeadline(deadlineMs, `${waiting.map((h) => h.name).join(' and ')} to be consistent`, 'is-consistent 0');
    await sleep(pollMs);
  }
  for (const host of secondaries) {
    show(last.get(host)!);
    show(await macro(host, 'sync-rest'));
  }
}

/**
 * Polls disk-state, fetch-rest and replay-rest of `secondary` until it is UpToDate with
 * nothing left to fetch or replay, and its replay position has reached the end of alpha's
 * log as of the start of the wait (the macros alone could answer before the news of the
 * latest writes has arrived). Prints the last answers.
 */
async function waitCaughtUp(alpha: TestHost, secondary: TestHost): Promise<void> {
  const deadlineMs = performance.now() + waitMsMax;
  const want = BigInt((await status(alpha, resource)).logger?.logPosition.nextSeq ?? '0');
  let last = '';
  for (;;) {
    const runs = [await macro(secondary, 'disk-state')];
    if (value(runs[0]!) === 'UpToDate') runs.push(await macro(secondary, 'fetch-rest'), await macro(secondary, 'replay-rest'));
    const at = (await status(secondary, resource)).replica?.replay.position?.nextSeq;
    if (runs.length === 3 && runs.every((r, i) => i === 0 || value(r) === '0') && at !== undefined && BigInt(at) >= want) {
      runs.forEach(show);
      return;
    }
    last = `${runs.map((r) => `${r.args[0] ?? ''} ${value(r)}`).join(', ')}; replayed up to seq ${at ?? 'none'} of ${want}`;
    checkDeadline(deadlineMs, `${secondary.name} to catch up with alpha`, last);
    await sleep(pollMs);
  }
}

/** Reads alpha's export through NBD and the secondaries' device files; all must be equal. */
async function compare(client: NbdClient, secondaries: readonly TestHost[]): Promise<void> {
  const image = await readExport(client, deviceBytes);
  say(`\nsha256 ${'alpha (export, read through NBD)'.padEnd(33)}  ${digest(image)}`);
  for (const host of secondaries) {
    const copy = await readDevice(deviceOf(host), deviceBytes);
    say(`sha256 ${`${host.name} (device ${shown(deviceOf(host))})`.padEnd(33)}  ${digest(copy)}`);
    const at = firstDifference(image, copy);
    if (at !== undefined) throw new Error(`${host.name}'s device differs from alpha's export at byte ${at}`);
  }
  say('identical');
}

/** beta and gamma join with other random bytes on their disks and sync while alpha writes. */
async function joinAndSync(client: NbdClient, random: Random, beta: TestHost, gamma: TestHost): Promise<void> {
  for (const [i, host] of [beta, gamma].entries()) {
    const sha = await randomDevice(deviceOf(host), deviceBytes, seed + 1 + i);
    say(`${host.name}: ${shown(deviceOf(host))} holds other random bytes, sha256 ${sha}`);
  }
  const stop = { now: false };
  const started = performance.now();
  const writer = writeUntilStopped(client, random, stop);
  try {
    await adm(beta, 'join-resource', resource, deviceOf(beta));
    await adm(beta, 'view', resource);
    await adm(gamma, 'join-resource', resource, deviceOf(gamma));
    await watchSync([beta, gamma], beta);
  } finally {
    stop.now = true;
    const bytes = await writer;
    say(`\nalpha: wrote ${(bytes / MiB).toFixed(1)} MiB through NBD in ${((performance.now() - started) / 1000).toFixed(1)} s while beta and gamma synced`);
  }
}

/** pause-replay on gamma: fetch goes on, the disk stays frozen; resume-replay catches up. */
async function pauseReplay(client: NbdClient, random: Random, alpha: TestHost, gamma: TestHost): Promise<void> {
  await adm(gamma, 'pause-replay', resource);
  const frozen = digest(await readDevice(deviceOf(gamma), deviceBytes));
  await writeAndSay(client, random, 10, 'while gamma does not replay');
  const deadlineMs = performance.now() + waitMsMax;
  for (;;) {
    const runs = [await macro(gamma, 'fetch-rest'), await macro(gamma, 'replay-rest')];
    if (value(runs[0]!) === '0' && value(runs[1]!) !== '0') {
      runs.forEach(show);
      break;
    }
    checkDeadline(deadlineMs, 'gamma to fetch the new writes', `fetch-rest ${value(runs[0]!)}, replay-rest ${value(runs[1]!)}`);
    await sleep(pollMs);
  }
  await adm(gamma, 'view', resource);
  if (digest(await readDevice(deviceOf(gamma), deviceBytes)) !== frozen) throw new Error("gamma's disk changed while its replay was paused");
  say("\ngamma's disk did not change while its replay was paused: it stays alpha's disk as of an earlier moment");
  await adm(gamma, 'resume-replay', resource);
  await waitCaughtUp(alpha, gamma);
}

/** kill -9 of beta's marsd while alpha writes on; after a restart beta catches up. */
async function crashBeta(client: NbdClient, random: Random, alpha: TestHost, beta: TestHost): Promise<void> {
  const daemon = beta.daemon;
  if (daemon === undefined) throw new Error('beta is not running');
  say(`\nkill -9 ${daemon.child.pid} (beta's marsd, no clean shutdown)`);
  await daemon.kill9();
  beta.daemon = undefined;
  await writeAndSay(client, random, 10, 'while beta is down');
  await startDaemon(beta);
  await waitCaughtUp(alpha, beta);
}

/** SIGTERM to every running marsd; kill -9 after `stopMsMax`. Says how each one ended when `loud`. */
async function stopAll(hosts: readonly TestHost[], loud: boolean): Promise<void> {
  for (const host of hosts) {
    const daemon = host.daemon;
    if (daemon === undefined) continue;
    host.daemon = undefined;
    const late = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), stopMsMax).unref());
    const code = await Promise.race([daemon.stop(), late]);
    if (code === 'late') {
      say(`${host.name}: marsd did not stop within ${stopMsMax / 1000} s of SIGTERM; kill -9`);
      await daemon.kill9();
    } else if (loud) say(`${host.name}: marsd stopped with SIGTERM (exit ${code})`);
  }
}

async function demo(hosts: readonly [TestHost, TestHost, TestHost]): Promise<void> {
  const [alpha, beta, gamma] = hosts;
  const random = new Random(seed);
  section('a cluster of three hosts');
  await createCluster(hosts);

  section('alpha creates the resource and writes to it through NBD');
  await sparseFile(deviceOf(alpha), deviceBytes);
  await adm(alpha, 'create-resource', resource, deviceOf(alpha));
  const port = alpha.daemon?.nbdPort ?? 0;
  const client = await NbdClient.connect({ host: alpha.ip, port, exportName: resource });
  try {
    say(`\nNBD client connected to ${alpha.ip}:${port}, export ${resource}, ${client.sizeBytes} bytes`);
    await writeAndSay(client, random, 20, 'before anyone joins');
    await adm(alpha, 'view', resource);

    section('beta and gamma join with disks full of other random bytes; alpha keeps writing');
    await joinAndSync(client, random, beta, gamma);

    section('beta and gamma catch up');
    await waitCaughtUp(alpha, beta);
    await waitCaughtUp(alpha, gamma);
    await adm(beta, 'view', resource);
    await compare(client, [beta, gamma]);

    section('pause-replay on gamma');
    await pauseReplay(client, random, alpha, gamma);
    await compare(client, [beta, gamma]);

    section("kill -9 of beta's marsd");
    await crashBeta(client, random, alpha, beta);
    await compare(client, [beta, gamma]);
  } finally {
    await client.close().catch(() => client.destroy());
  }
  section('clean stop');
  await stopAll(hosts, true);
}

/** On failure: what each running host says of the resource, and the end of its marsd's log. */
async function diagnose(hosts: readonly TestHost[]): Promise<void> {
  for (const host of hosts) {
    if (host.daemon === undefined) continue;
    const view = await marsadm(host.dir, 'view', resource);
    const logLines = host.daemon.stderr().trimEnd().split('\n').slice(-diagnoseLogLines);
    process.stderr.write(`\n--- ${host.name}: marsadm view ${resource} (exit ${view.code})\n${view.stdout}${view.stderr}`);
    process.stderr.write(`--- ${host.name}: the last ${logLines.length} lines of marsd's log\n${logLines.join('\n')}\n`);
  }
}

async function main(): Promise<void> {
  root = await tempDir('mars-demo');
  const hosts: TestHost[] = [];
  try {
    say(`DEMO=${root}   (one state directory per host; marsadm runs with --dir $DEMO/HOST, left out below)`);
    for (const [i, name] of ['alpha', 'beta', 'gamma'].entries()) hosts.push(await newHost(root, name, `127.0.0.${i + 1}`));
    const [alpha, beta, gamma] = hosts;
    if (alpha === undefined || beta === undefined || gamma === undefined) throw new Error('three hosts expected');
    await demo([alpha, beta, gamma]).catch(async (err: unknown) => {
      await diagnose(hosts);
      throw err;
    });
    say(`\ndemo finished in ${elapsed()}: all good`);
  } finally {
    await stopAll(hosts, false);
    await removeDir(root);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
