import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import { formatLogName, LogWriter, parseLogName, recordLengthBytes, type LogEntry } from '../../src/log/index.js';
import { FsStorage } from '../../src/storage/fs-storage.js';
import { truncateFile } from '../support/log-files.js';
import { checkPrefix, prefixCheckSectorBytes, readDeviceImage, type PrefixCheckResult, type PrefixPosition } from '../support/prefix-checker.js';

const seed = Number(process.env['PREFIX_SEED'] ?? 1);
const host = 'alpha';
const sectorBytes = prefixCheckSectorBytes;
const deviceBytes = 128 * 1024;
const recordCount = 200;
const writeBytesMax = 8192;
const zeroBytesMax = 16 * 1024;
/** Small, so that the workload spreads over many log files. */
const rotateBytes = 32 * 1024;

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function newDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'prefix-checker-'));
  dirs.push(dir);
  return dir;
}

/** A random request: unaligned writes, trims and write-zeroes, now and then an empty write. */
function randomEntry(random: Random, i: number, sizeBytes: number): LogEntry {
  const offsetBytes = random.int(sizeBytes);
  const roomBytes = sizeBytes - offsetBytes;
  const lamport = BigInt(i + 1);
  const roll = random.int(100);
  if (roll < 2) return { kind: 'write', lamport, offsetBytes, payload: Buffer.alloc(0) };
  if (roll < 72) return { kind: 'write', lamport, offsetBytes, payload: random.bytes(1 + random.int(Math.min(writeBytesMax, roomBytes))) };
  return { kind: roll < 86 ? 'trim' : 'zeroes', lamport, offsetBytes, lengthBytes: 1 + random.int(Math.min(zeroBytesMax, roomBytes)) };
}

/** The "dumb" reference disk: a write copies its payload, trim and write-zeroes zero their range. */
function applyEntry(image: Buffer, entry: LogEntry): void {
  if (entry.kind === 'write') entry.payload.copy(image, entry.offsetBytes);
  else image.fill(0, entry.offsetBytes, entry.offsetBytes + entry.lengthBytes);
}

function imageAfter(initial: Buffer, entries: readonly LogEntry[], prefixRecords: number): Buffer {
  const image = Buffer.from(initial);
  for (const entry of entries.slice(0, prefixRecords)) applyEntry(image, entry);
  return image;
}

function digest(image: Buffer): string {
  return createHash('sha256').update(image).digest('hex');
}

/**
 * Appends `entries` with the project's LogWriter (one append at a time) to `dir`; returns
 * the stream position after each prefix (index 0: the start).
 */
async function writeLog(dir: string, entries: readonly LogEntry[], options: { host?: string; logNumber?: number; rotateBytes?: number } = {}): Promise<PrefixPosition[]> {
  const logHost = options.host ?? host;
  const logNumber = options.logNumber ?? 1;
  const writer = await LogWriter.open(await FsStorage.create(dir), {
    host: logHost,
    logNumber,
    startOffsetBytes: 0,
    nextSeq: 1n,
    rotateBytes: options.rotateBytes ?? rotateBytes,
  });
  const positions: PrefixPosition[] = [{ logName: formatLogName(logNumber, logHost), offsetBytes: 0 }];
  for (const entry of entries) {
    const at = await writer.append(entry);
    positions.push({ logName: formatLogName(at.logNumber, logHost), offsetBytes: at.endOffsetBytes });
  }
  await writer.close();
  return positions;
}

interface Workload {
  dir: string;
  initial: Buffer;
  entries: LogEntry[];
  positions: PrefixPosition[];
  /** The digest of the reference image after each prefix. */
  digests: string[];
}

let workloadMemo: Promise<Workload> | undefined;

/** One seeded workload over many log files, shared by the tests that only read it. */
function workload(): Promise<Workload> {
  workloadMemo ??= (async () => {
    const random = new Random(seed);
    const initial = random.bytes(deviceBytes);
    const entries = Array.from({ length: recordCount }, (_, i) => randomEntry(random, i, deviceBytes));
    const dir = await newDir();
    const positions = await writeLog(dir, entries);
    const image = Buffer.from(initial);
    const digests = [digest(image)];
    for (const entry of entries) {
      applyEntry(image, entry);
      digests.push(digest(image));
    }
    return { dir, initial, entries, positions, digests };
  })();
  return workloadMemo;
}

function expectOk(result: PrefixCheckResult): Extract<PrefixCheckResult, { ok: true }> {
  assert.ok(result.ok, `seed ${seed}: ${result.detail}`);
  return result;
}

function expectRejected(result: PrefixCheckResult): Extract<PrefixCheckResult, { ok: false }> {
  assert.ok(!result.ok, `seed ${seed}: expected a rejection, got: ${result.detail}`);
  return result;
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof MarsError && err.code === code);
}

void test('the workload spans several log files, with writes, trims, write-zeroes and empty writes', async () => {
  const w = await workload();
  const logNames = new Set(w.positions.map((p) => p.logName));
  assert.ok(logNames.size >= 5, `only ${logNames.size} log files`);
  for (const kind of ['write', 'trim', 'zeroes'] as const) assert.ok(w.entries.some((e) => e.kind === kind), `no ${kind} record`);
  assert.ok(w.entries.some((e) => recordLengthBytes(e) === 0), 'no empty write');
});

void test('the image after every prefix k is accepted, at k or at an earlier prefix with the same image', async () => {
  const w = await workload();
  const image = Buffer.from(w.initial);
  for (let k = 0; k <= w.entries.length; k++) {
    if (k > 0) applyEntry(image, w.entries[k - 1]!);
    const result = expectOk(await checkPrefix({ logDir: w.dir, host, initial: w.initial, snapshot: image, sizeBytes: deviceBytes }));
    assert.ok(result.prefixRecords <= k, `prefix ${k} accepted as the later prefix ${result.prefixRecords}`);
    assert.equal(w.digests[result.prefixRecords], w.digests[k], `prefix ${k} accepted as prefix ${result.prefixRecords} with another image`);
    assert.deepEqual(result.at, w.positions[result.prefixRecords]);
  }
});

/** The values a byte takes over all prefixes: the initial one and what each record covering it sets. */
function valuesAt(w: Workload, offsetBytes: number): Set<number> {
  const values = new Set([w.initial[offsetBytes]!]);
  for (const e of w.entries) {
    if (offsetBytes < e.offsetBytes || offsetBytes >= e.offsetBytes + recordLengthBytes(e)) continue;
    values.add(e.kind === 'write' ? e.payload[offsetBytes - e.offsetBytes]! : 0);
  }
  return values;
}

void test('a snapshot with one byte that no prefix explains is rejected, one sector from the closest prefix', async () => {
  const w = await workload();
  const random = new Random(seed + 1);
  for (let round = 0; round < 5; round++) {
    const k = random.int(w.entries.length + 1);
    let offsetBytes = random.int(deviceBytes);
    while (valuesAt(w, offsetBytes).size === 256) offsetBytes = (offsetBytes + 1) % deviceBytes;
    const values = valuesAt(w, offsetBytes);
    const snapshot = imageAfter(w.initial, w.entries, k);
    snapshot[offsetBytes] = [...Array(256).keys()].find((v) => !values.has(v))!;
    const result = expectRejected(await checkPrefix({ logDir: w.dir, host, initial: w.initial, snapshot, sizeBytes: deviceBytes }));
    const sectorStartBytes = offsetBytes - (offsetBytes % sectorBytes);
    assert.equal(result.recordsTotal, w.entries.length);
    assert.equal(result.closest.differingSectors, 1, result.detail);
    assert.equal(result.closest.firstDifferingOffsetBytes, sectorStartBytes, result.detail);
    assert.ok(result.closest.prefixRecords <= k, result.detail);
    assert.deepEqual(result.closest.at, w.positions[result.closest.prefixRecords]);
    // The closest prefix differs from prefix k only in the damaged sector.
    const closest = imageAfter(w.initial, w.entries, result.closest.prefixRecords);
    snapshot.copy(closest, sectorStartBytes, sectorStartBytes, sectorStartBytes + sectorBytes);
    assert.ok(closest.equals(snapshot), result.detail);
  }
});

/** Full sectors a record covers (none for trims: only writes bring new data). */
function fullSectorsOf(entry: LogEntry): number[] {
  if (entry.kind !== 'write') return [];
  const first = Math.ceil(entry.offsetBytes / sectorBytes);
  const end = Math.floor((entry.offsetBytes + entry.payload.length) / sectorBytes);
  return Array.from({ length: Math.max(0, end - first) }, (_, i) => first + i);
}

/**
 * A snapshot with record i2's new data in sector B but the data from before record i1
 * (i1 < i2) in sector A, which no single prefix has; undefined when this pair cannot make one.
 */
function mixedSnapshot(w: Workload, i1: number, i2: number): Buffer | undefined {
  const sectorA = fullSectorsOf(w.entries[i1]!)[0];
  const sectorB = fullSectorsOf(w.entries[i2]!).find((s) => s !== sectorA);
  if (sectorA === undefined || sectorB === undefined) return undefined;
  const older = imageAfter(w.initial, w.entries, i1);
  const snapshot = imageAfter(w.initial, w.entries, i2 + 1);
  older.copy(snapshot, sectorA * sectorBytes, sectorA * sectorBytes, (sectorA + 1) * sectorBytes);
  return w.digests.includes(digest(snapshot)) ? undefined : snapshot;
}

void test('a snapshot with newer data in one block and older data in another is rejected', async () => {
  const w = await workload();
  let tried = 0;
  for (let i1 = 0; i1 < w.entries.length && tried < 3; i1++) {
    for (let i2 = i1 + 1; i2 < w.entries.length; i2++) {
      const snapshot = mixedSnapshot(w, i1, i2);
      if (snapshot === undefined) continue;
      const result = expectRejected(await checkPrefix({ logDir: w.dir, host, initial: w.initial, snapshot, sizeBytes: deviceBytes }));
      assert.ok(result.closest.differingSectors >= 1, result.detail);
      tried++;
      i1 += 20; // spread the pairs over the stream
      break;
    }
  }
  assert.equal(tried, 3, `seed ${seed}: found only ${tried} mixed snapshots`);
});

void test('example: block 0 rewritten while block 1 still shows its state before both writes is no prefix', async () => {
  const dir = await newDir();
  const block = (fill: number): Buffer => Buffer.alloc(sectorBytes, fill);
  const entries: LogEntry[] = [
    { kind: 'write', lamport: 1n, offsetBytes: 0, payload: block(0xa1) },
    { kind: 'write', lamport: 2n, offsetBytes: sectorBytes, payload: block(0xb1) },
    { kind: 'write', lamport: 3n, offsetBytes: 0, payload: block(0xa2) },
  ];
  const positions = await writeLog(dir, entries);
  const sizeBytes = 4 * sectorBytes;
  const snapshot = Buffer.concat([block(0xa2), Buffer.alloc(3 * sectorBytes)]);
  const result = expectRejected(await checkPrefix({ logDir: dir, initial: 'zero', snapshot, sizeBytes }));
  // Prefixes 0, 1 and 3 all differ in one sector; the earliest is reported.
  assert.deepEqual(result.closest, { prefixRecords: 0, at: positions[0], differingSectors: 1, firstDifferingOffsetBytes: 0 });
  assert.match(result.detail, /matches no prefix of the 3 records/);
  const newest = Buffer.concat([block(0xa2), block(0xb1), Buffer.alloc(2 * sectorBytes)]);
  assert.deepEqual(expectOk(await checkPrefix({ logDir: dir, initial: 'zero', snapshot: newest, sizeBytes })).prefixRecords, 3);
});

void test('the initial image may be zeroes or a function, and a check may start in the middle of the stream', async () => {
  const w = await workload();
  const zeroImage = Buffer.alloc(deviceBytes);
  const k = 150;
  const fromZero = imageAfter(zeroImage, w.entries, k);
  const zeroDigests = Array.from({ length: k + 1 }, (_, i) => digest(imageAfter(zeroImage, w.entries, i)));
  const zero = expectOk(await checkPrefix({ logDir: w.dir, initial: 'zero', snapshot: fromZero, sizeBytes: deviceBytes }));
  assert.equal(zeroDigests[zero.prefixRecords], digest(fromZero));

  const byFunction = (offsetBytes: number, lengthBytes: number): Buffer => w.initial.subarray(offsetBytes, offsetBytes + lengthBytes);
  const snapshot = imageAfter(w.initial, w.entries, k);
  const viaFunction = expectOk(await checkPrefix({ logDir: w.dir, initial: byFunction, snapshot, sizeBytes: deviceBytes }));
  assert.equal(w.digests[viaFunction.prefixRecords], w.digests[k]);

  for (const m of [0, 37, 100, k]) {
    const start = w.positions[m]!;
    const from = { logNumber: parseLogName(start.logName)!.logNumber, offsetBytes: start.offsetBytes };
    const initial = imageAfter(w.initial, w.entries, m);
    const result = expectOk(await checkPrefix({ logDir: w.dir, host, initial, snapshot, sizeBytes: deviceBytes, from }));
    assert.ok(result.prefixRecords <= k - m);
    assert.equal(w.digests[m + result.prefixRecords], w.digests[k]);
    assert.deepEqual(result.at, w.positions[m + result.prefixRecords]);
  }
});

void test('a torn tail ends the stream in the last log file', async () => {
  const dir = await newDir();
  const entries = Array.from({ length: 4 }, (_, i): LogEntry => ({ kind: 'write', lamport: BigInt(i), offsetBytes: i * 1000, payload: Buffer.alloc(900, i + 1) }));
  const positions = await writeLog(dir, entries);
  await truncateFile(join(dir, positions[4]!.logName), positions[4]!.offsetBytes - 10);
  const snapshot = imageAfter(Buffer.alloc(8192), entries, 3);
  assert.equal(expectOk(await checkPrefix({ logDir: dir, initial: 'zero', snapshot, sizeBytes: 8192 })).prefixRecords, 3);
  const all = imageAfter(Buffer.alloc(8192), entries, 4);
  assert.equal(expectRejected(await checkPrefix({ logDir: dir, initial: 'zero', snapshot: all, sizeBytes: 8192 })).recordsTotal, 3);
});

void test('a torn tail in a log file that is not the last one is LOG_CORRUPT', async () => {
  const dir = await newDir();
  const entries = Array.from({ length: 6 }, (_, i): LogEntry => ({ kind: 'write', lamport: BigInt(i), offsetBytes: i * 1000, payload: Buffer.alloc(900, i + 1) }));
  const positions = await writeLog(dir, entries, { rotateBytes: 2000 });
  const firstLog = positions.filter((p) => p.logName === positions[0]!.logName);
  assert.ok(firstLog.length < positions.length, 'the log did not rotate');
  await truncateFile(join(dir, positions[0]!.logName), firstLog.at(-1)!.offsetBytes - 10);
  await rejectsWith(checkPrefix({ logDir: dir, initial: 'zero', snapshot: Buffer.alloc(8192, 0xff), sizeBytes: 8192 }), 'LOG_CORRUPT');
});

void test('a record past the device end is LOG_CORRUPT', async () => {
  const dir = await newDir();
  await writeLog(dir, [{ kind: 'zeroes', lamport: 1n, offsetBytes: 4000, lengthBytes: 200 }]);
  await rejectsWith(checkPrefix({ logDir: dir, initial: 'zero', snapshot: Buffer.alloc(4096, 1), sizeBytes: 4096 }), 'LOG_CORRUPT');
});

void test('bad options are EINVAL: sizes, a missing start log, no logs, two hosts with the same log number', async () => {
  const w = await workload();
  const snapshot = Buffer.alloc(deviceBytes);
  const base = { logDir: w.dir, initial: 'zero' as const, snapshot, sizeBytes: deviceBytes };
  await rejectsWith(checkPrefix({ ...base, snapshot: Buffer.alloc(deviceBytes - 1) }), 'EINVAL');
  await rejectsWith(checkPrefix({ ...base, initial: Buffer.alloc(1) }), 'EINVAL');
  await rejectsWith(checkPrefix({ ...base, initial: () => Buffer.alloc(1) }), 'EINVAL');
  await rejectsWith(checkPrefix({ ...base, sizeBytes: 0 }), 'EINVAL');
  await rejectsWith(checkPrefix({ ...base, from: { logNumber: 999, offsetBytes: 0 } }), 'EINVAL');
  await rejectsWith(checkPrefix({ ...base, host: 'nobody' }), 'EINVAL');
  await rejectsWith(checkPrefix({ ...base, logDir: await newDir() }), 'EINVAL');

  const dir = await newDir();
  const one: LogEntry[] = [{ kind: 'write', lamport: 1n, offsetBytes: 0, payload: Buffer.alloc(512, 7) }];
  await writeLog(dir, one, { host: 'alpha' });
  await writeLog(dir, [{ kind: 'trim', lamport: 1n, offsetBytes: 0, lengthBytes: 512 }], { host: 'beta' });
  const image = imageAfter(Buffer.alloc(1024), one, 1);
  await rejectsWith(checkPrefix({ logDir: dir, initial: 'zero', snapshot: image, sizeBytes: 1024 }), 'EINVAL');
  assert.equal(expectOk(await checkPrefix({ logDir: dir, host: 'alpha', initial: 'zero', snapshot: image, sizeBytes: 1024 })).prefixRecords, 1);
});

void test('readDeviceImage copies a device file, and refuses one shorter than the size', async () => {
  const dir = await newDir();
  const path = join(dir, 'device');
  const data = new Random(seed).bytes(10_000);
  await writeFile(path, data);
  assert.ok((await readDeviceImage(path, 10_000)).equals(data));
  assert.ok((await readDeviceImage(path, 4096)).equals(data.subarray(0, 4096)));
  await rejectsWith(readDeviceImage(path, 10_001), 'BAD_DEVICE');
  await rejectsWith(readDeviceImage(path, 0), 'EINVAL');
});
