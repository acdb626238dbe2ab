/**
 * Helpers for the replication tests (test/replication/): a cluster of real daemons on
 * 127.0.0.N, the daemon's raw `view` answer with the replication fields, waiting for a
 * secondary to be consistent and caught up with its primary, devices filled with seeded
 * random bytes, and byte-exact comparison of devices. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { callDaemon } from '../../src/control/client.js';
import { macroValue, resourceView, type HostStatusJson, type MacroName } from '../../src/cli/view-format.js';
import { Random } from '../../src/core/random.js';
import { NbdClient } from '../../src/nbd/client.js';
import { adm } from './adm.js';
import { waitFor } from './processes.js';
import { must, startTestCluster, testHostNames, type TestHost } from './cluster-helpers.js';

export const MiB = 1024 * 1024;

export interface RawPos {
  logNumber: number;
  logHost: string;
  offsetBytes: number;
  nextSeq: string;
}

export interface ReplicaJson {
  consistent: boolean;
  switches: { fetch: boolean; replay: boolean; sync: boolean };
  sync: { state: string; sizeBytes: number; doneBytes: number; restBytes: number; rateBytesPerS: number; error: string | null } | null;
  fetch: { state: string; source: string; logName: string | null; localBytes: number; restBytes: number | null; rateBytesPerS: number; error: string | null; compression?: string | null; lastContactS?: number | null; connections?: number };
  replay: { state: string; position: RawPos | null; restBytes: number; rateBytesPerS: number; error: string | null };
}

export interface ReplStatus {
  name: string;
  sizeBytes: number;
  devicePath: string;
  primary: string;
  state: string;
  role: 'primary' | 'secondary';
  failure?: string | null;
  replica?: ReplicaJson | null;
  logger?: { logPosition: RawPos; writtenBack: RawPos; shadowBytes: number } | null;
  syncMode?: { mode: string; state: string | null; members: number; timeoutMs: number; waiting: number; fallbacks: number; reason: string | null } | null;
  logFiles: { name: string; sizeBytes: number }[];
  members: { host: string; primary: boolean; state: string | null; consistent: boolean | null; needsLog: number | null; reason: string | null }[];
  logDeleteHeldBy: { host: string; logNumber: number } | null;
}

export async function status(host: TestHost, name: string): Promise<ReplStatus> {
  const answer = (await callDaemon(join(host.dir, 'control.sock'), 'view', { name }, 30_000)) as { resources: ReplStatus[] };
  const r = answer.resources.find((x) => x.name === name);
  assert.ok(r !== undefined, `view ${name} on ${host.name}: missing`);
  return r;
}

/** Hosts alpha, beta, gamma … on 127.0.0.1, .2, .3 …, in one cluster, all running and seeing each other. */
export async function startCluster(prefix: string, count: number, names: readonly string[] = testHostNames, intervals?: string): Promise<{ root: string; hosts: TestHost[] }> {
  return startTestCluster(prefix, count, { names, ...(intervals === undefined ? {} : { intervals }) });
}

/**
 * `lengthBytes` pseudo-random bytes, fixed by the next values of `random`: an AES-128-CTR
 * keystream under a key drawn from it. Fast (about 1 GB/s; filling buffers from
 * `random.uint32()` costs a second of CPU per 64 MiB, which on two CPUs the daemons under
 * test would wait for).
 */
export function seededBytes(random: Random, lengthBytes: number): Buffer {
  const key = Buffer.alloc(16);
  for (let i = 0; i < 16; i += 4) key.writeUInt32LE(random.uint32(), i);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(lengthBytes));
}

/** A file of `sizeBytes` seeded random bytes (a disk that held something else before). */
export async function randomDevice(path: string, sizeBytes: number, seed: number): Promise<string> {
  const random = new Random(seed);
  const key = Buffer.alloc(16);
  for (let i = 0; i < 16; i += 4) key.writeUInt32LE(random.uint32(), i);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(4 * MiB);
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < sizeBytes; at += zeros.length) {
      const chunk = cipher.update(zeros.subarray(0, Math.min(zeros.length, sizeBytes - at)));
      await handle.write(chunk, 0, chunk.length, at);
    }
  } finally {
    await handle.close();
  }
  return path;
}

export function connect(host: TestHost, name: string): Promise<NbdClient> {
  assert.ok(host.daemon !== undefined, `${host.name} is not running`);
  return NbdClient.connect({ host: host.ip, port: host.daemon.nbdPort, exportName: name });
}

/** Writes `count` seeded random blocks of 4 KiB to 1 MiB at random aligned offsets; returns after a FLUSH. */
export async function randomWrites(client: NbdClient, sizeBytes: number, count: number, random: Random): Promise<void> {
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const blocks = 1 + random.int(256);
    const lengthBytes = Math.min(blocks * 4096, sizeBytes);
    const offsetBytes = random.int((sizeBytes - lengthBytes) / 4096 + 1) * 4096;
    const data = seededBytes(random, lengthBytes);
    inflight.push(client.write(offsetBytes, data));
    if (inflight.length >= 16) await Promise.all(inflight.splice(0));
  }
  await Promise.all(inflight);
  await client.flush();
}

/** The whole export as the primary serves it now. */
export async function readExport(client: NbdClient, sizeBytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < sizeBytes; at += 4 * MiB) parts.push(await client.read(at, Math.min(4 * MiB, sizeBytes - at)));
  return Buffer.concat(parts);
}

export async function readDevice(path: string, sizeBytes: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(sizeBytes);
    let at = 0;
    while (at < sizeBytes) {
      const { bytesRead } = await handle.read(buffer, at, sizeBytes - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    return buffer;
  } finally {
    await handle.close();
  }
}

export function digest(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Where the two images first differ (for a readable failure), or undefined. */
export function firstDifference(a: Buffer, b: Buffer): number | undefined {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let at = 0; at < a.length; at += 4096) {
    if (!a.subarray(at, at + 4096).equals(b.subarray(at, at + 4096))) return at;
  }
  return undefined;
}

/**
 * Waits until the secondary is consistent and has replayed everything the primary has
 * logged (its replay position's seq equals the primary's log end), with fetch caught up.
 */
export async function waitCaughtUp(primary: TestHost, secondary: TestHost, name: string, timeoutMs = 60_000): Promise<ReplStatus> {
  let last: ReplStatus | undefined;
  let want = '';
  await waitFor(
    `${secondary.name} to catch up with ${primary.name} on ${name}`,
    async () => {
      const p = await status(primary, name);
      want = p.logger?.logPosition.nextSeq ?? '?';
      last = await status(secondary, name);
      const r = last.replica;
      return r !== null && r !== undefined && r.consistent && r.fetch.state === 'caught-up' && r.replay.position?.nextSeq === want && r.replay.restBytes === 0;
    },
    timeoutMs,
    100,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; primary log at seq ${want}; last: ${JSON.stringify(last?.replica)}`);
  });
  return last!;
}

/** The device of a secondary equals the primary's export, byte for byte. */
export async function assertSameAsPrimary(primaryImage: Buffer, secondary: TestHost, devicePath: string, what: string): Promise<void> {
  const image = await readDevice(devicePath, primaryImage.length);
  const at = firstDifference(primaryImage, image);
  assert.equal(at, undefined, `${what}: ${secondary.name}'s device differs from the primary's at byte ${at}`);
}

/**
 * What `marsadm view-MACRO R` prints on `host` (trimmed), computed here from the same
 * control request with marsadm's own functions: polls cost no marsadm process each (which
 * on two CPUs slows the daemons under test). test/cli checks marsadm itself.
 */
export async function viewMacro(host: TestHost, macro: MacroName, name: string): Promise<string> {
  const answer = (await callDaemon(join(host.dir, 'control.sock'), 'view', { name }, 30_000)) as HostStatusJson;
  return answer.resources.map((r) => macroValue(resourceView(answer.host, r), macro)).join('\n');
}

/** What `marsadm ARGS…` prints on `host` (run in this process: support/adm.ts); fails the test unless it exits 0. */
export async function mustAdm(host: TestHost, ...args: string[]): Promise<string> {
  return must(adm(host.dir, ...args), `${args.join(' ')} on ${host.name}`);
}
