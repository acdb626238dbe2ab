/**
 * WRITE_ZEROES and TRIM longer than a log record (32 MiB) against marsd's logged export:
 * the logger splits them into records of at most the record limit. Real clients copy a
 * sparse 128 MiB image onto an export whose device held other bytes, and back (the holes
 * between its blocks, up to 93 MiB, are zeroed in requests longer than a record); and the split records replicate to a secondary byte for byte.
 */
import assert from 'node:assert/strict';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { recordPayloadBytesMax } from '../../src/log/index.js';
import { HOST, findTool, runTool } from './helpers.js';
import { adm } from '../support/adm.js';
import { sparseFile, startMarsd, tempDir, type Marsd } from '../support/processes.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import { connect, firstDifference, mustAdm, randomDevice, readDevice, readExport, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { recordLayout } from '../support/log-files.js';

const MiB = 1024 * 1024;
const TOOL_MS_MAX = 90_000;
const imageBytes = 128 * MiB;

/** A sparse image with `blocks` of 64 KiB of `fill` at the given MiB offsets. */
async function sparseImageWith(file: string, atMiB: readonly number[], fill: number): Promise<void> {
  await sparseFile(file, imageBytes);
  const handle = await open(file, 'r+');
  try {
    for (const at of atMiB) await handle.write(Buffer.alloc(64 * 1024, fill), 0, 64 * 1024, at * MiB);
  } finally {
    await handle.close();
  }
}

function assertSucceeded(result: { code: number | null; stdout: string; stderr: string }, what: string): void {
  assert.equal(result.code, 0, `${what} exited with ${result.code}\n${result.stdout}\n${result.stderr}`);
}

void describe('zero ranges longer than a log record, with real clients on a marsd export', { timeout: 300_000 }, () => {
  const missing = ['nbdcopy', 'qemu-img'].filter((tool) => findTool(tool) === undefined);
  let dir = '';
  let daemon: Marsd | undefined;
  const uri = (): string => `nbd://${HOST}:${daemon!.nbdPort}/disk`;

  before(async () => {
    if (missing.length > 0) return;
    dir = await tempDir('mars-zeroes-');
    const state = path.join(dir, 'state');
    assertSucceeded(await adm(state, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777'), 'create-cluster');
    daemon = await startMarsd(state);
    // The device held other bytes: every one of them must be zeroed by the copy.
    const device = path.join(dir, 'disk.img');
    await sparseImageWith(device, [1, 40, 100, 120], 0xff);
    assertSucceeded(await adm(state, 'create-resource', 'disk', device), 'create-resource');
  });

  after(async () => {
    await daemon?.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void test('nbdcopy of a sparse 128 MiB image onto the export and back is byte-identical', async (t) => {
    if (missing.length > 0) return t.skip(`${missing.join(', ')} not installed`);
    const source = path.join(dir, 'source.img');
    const back = path.join(dir, 'back.img');
    await sparseImageWith(source, [0, 33, 127], 0x5a);
    assertSucceeded(await runTool('nbdcopy', [source, uri()], TOOL_MS_MAX), 'nbdcopy to export');
    assertSucceeded(await runTool('nbdcopy', [uri(), back], TOOL_MS_MAX), 'nbdcopy from export');
    const [a, b] = [await readFile(source), await readFile(back)];
    assert.equal(firstDifference(a, b), undefined, 'the copy came back unchanged');
    // Not vacuous: the holes came as requests longer than a record, which the logger split.
    const logDir = path.join(dir, 'state', 'resource-disk');
    const records = (await Promise.all((await readdirLogs(logDir)).map((f) => recordLayout(path.join(logDir, f))))).flat();
    const whole = records.filter((r) => (r.kind === 2 || r.kind === 3) && r.lengthBytes === recordPayloadBytesMax).length;
    t.diagnostic(`${records.length} records, ${whole} zero or trim records of the record limit`);
    assert.ok(whole > 0, `a zero request longer than a record left records of the limit: ${JSON.stringify(records.map((r) => [r.kind, r.lengthBytes]))}`);
  });

  void test('qemu-img convert of a sparse 128 MiB image onto the export and back is byte-identical', async (t) => {
    if (missing.length > 0) return t.skip(`${missing.join(', ')} not installed`);
    const source = path.join(dir, 'source2.img');
    const back = path.join(dir, 'back2.img');
    await sparseImageWith(source, [2, 90, 120], 0xa5);
    assertSucceeded(await runTool('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, uri()], TOOL_MS_MAX), 'qemu-img convert to export');
    assertSucceeded(await runTool('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(), back], TOOL_MS_MAX), 'qemu-img convert from export');
    const [a, b] = [await readFile(source), await readFile(back)];
    assert.equal(firstDifference(a, b), undefined, 'the copy came back unchanged');
    assertSucceeded(await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, uri()], TOOL_MS_MAX), 'qemu-img compare');
  });
});

void describe('a long WRITE_ZEROES and TRIM replicate as records of at most the record limit', { timeout: 180_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const sizeBytes = 48 * MiB;
  const device = (h: TestHost): string => path.join(root, `${h.name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-zeroes-repl', 2));
    await randomDevice(device(hosts[0]!), sizeBytes, 7);
    await randomDevice(device(hosts[1]!), sizeBytes, 8);
    await mustAdm(hosts[0]!, 'create-resource', 'r1', device(hosts[0]!));
    await mustAdm(hosts[1]!, 'join-resource', 'r1', device(hosts[1]!));
    await waitCaughtUp(hosts[0]!, hosts[1]!, 'r1', 120_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test('40 MiB of zeroes and a 36 MiB trim: the log holds pieces of at most 32 MiB, the secondary ends byte-identical', async () => {
    const [alpha, beta] = hosts as [TestHost, TestHost];
    const c = await connect(alpha, 'r1');
    try {
      await c.writeZeroes(4 * MiB, 40 * MiB);
      await c.trim(8 * MiB, 36 * MiB);
      await c.write(30 * MiB, Buffer.alloc(4096, 0x33));
      await c.flush();
      const image = await readExport(c, sizeBytes);
      assert.ok(image.subarray(4 * MiB, 30 * MiB).equals(Buffer.alloc(26 * MiB)), 'the zeroed range reads as zeroes');
      assert.ok(image.subarray(30 * MiB, 30 * MiB + 4096).equals(Buffer.alloc(4096, 0x33)), 'the write after them reads back');
      await waitCaughtUp(alpha, beta, 'r1', 120_000);
      assert.equal(firstDifference(image, await readDevice(device(beta), sizeBytes)), undefined, 'beta byte-identical');
    } finally {
      await c.close();
    }
    const logs = (await readdirLogs(path.join(alpha.dir, 'resource-r1'))).map((f) => path.join(alpha.dir, 'resource-r1', f));
    const records = (await Promise.all(logs.map((f) => recordLayout(f)))).flat();
    const zeroes = records.filter((r) => r.kind === 3).map((r) => r.lengthBytes);
    const trims = records.filter((r) => r.kind === 2).map((r) => r.lengthBytes);
    assert.deepEqual(zeroes.slice(-2), [32 * MiB, 8 * MiB], '40 MiB of zeroes in two records');
    assert.deepEqual(trims.slice(-2), [32 * MiB, 4 * MiB], 'a 36 MiB trim in two records');
    assert.ok(records.every((r) => r.lengthBytes <= recordPayloadBytesMax), 'no record describes more than the record limit');
  });
});

async function readdirLogs(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.startsWith('log-')).sort();
}
