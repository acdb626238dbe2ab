/**
 * A real fio verify load across handovers: on the current primary fio writes a region of
 * the export through its nbd engine with crc32c verify headers and no read-back (write
 * phase); the primary is handed over; on the new primary the same job runs with
 * `--verify_only` (verify phase), which must read every block back and find every
 * checksum right. Then the next region, the other way round. At the end every region is
 * verified on the last primary's export and, with fio's file engine, on the other host's
 * device. Skipped when fio is not installed. Seeded (FIO_VERIFY_SEED).
 *
 * Note: `--verify_only` together with `--do_verify=0` verifies nothing (fio reads 0 bytes
 * and succeeds), so the verify phase sets `--do_verify=1` and checks the bytes read.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { run } from '../support/processes.js';
import { findTool } from '../support/daemon-helpers.js';
import { cleanup, type TestHost } from '../support/cluster-helpers.js';
import { MiB, mustAdm, randomDevice, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { view } from '../support/roles-helpers.js';

/** Room for the regions written (two by default) and one never written, which must fail to verify; every byte is synced at the join. */
const sizeBytes = 32 * MiB;
const regionBytes = 8 * MiB;
const handovers = Number(process.env['FIO_VERIFY_HANDOVERS'] ?? 2);
const seed = Number(process.env['FIO_VERIFY_SEED'] ?? 51);
const fioMsMax = 60_000;
const fio = findTool('fio');

interface FioJob {
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
}

/** The job of one region: random 4 KiB writes at depth 16, crc32c verify headers. */
function jobArgs(region: number): string[] {
  return [
    `--name=region${region}`,
    '--rw=randwrite',
    '--bs=4k',
    `--offset=${region * regionBytes}`,
    `--size=${regionBytes}`,
    '--iodepth=16',
    '--verify=crc32c',
    '--verify_fatal=1',
    `--randseed=${seed * 1000 + region}`,
    '--output-format=json',
    '--verify_state_save=0', // fio would leave its state files in the working directory
  ];
}

function nbdTarget(host: TestHost): string[] {
  assert.ok(host.daemon !== undefined, `${host.name} is not running`);
  return ['--ioengine=nbd', `--uri=nbd://${host.ip}:${host.daemon.nbdPort}/r1`];
}

async function runFio(args: string[], what: string): Promise<FioJob> {
  const r = await run(fio!, args, { timeoutMs: fioMsMax });
  assert.equal(r.code, 0, `${what}: fio exited ${r.code}\n${r.stderr}\n${r.stdout.slice(-2000)}`);
  const report = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: FioJob[] };
  const job = report.jobs[0];
  assert.ok(job !== undefined, `${what}: no job in fio's report`);
  assert.equal(job.error, 0, `${what}: fio job error ${job.error}`);
  return job;
}

async function writePhase(host: TestHost, region: number): Promise<void> {
  const job = await runFio([...jobArgs(region), ...nbdTarget(host), '--do_verify=0'], `write phase of region ${region} on ${host.name}`);
  assert.equal(job.write.io_bytes, regionBytes);
  assert.equal(job.read.io_bytes, 0, 'the write phase reads nothing back');
}

/** Verifies a region on an export (`target` = nbd args) or a device file. */
async function verifyPhase(target: string[], region: number, what: string): Promise<void> {
  const job = await runFio([...jobArgs(region), ...target, '--do_verify=1', '--verify_only'], `verify phase of region ${region} on ${what}`);
  assert.equal(job.read.io_bytes, regionBytes, `${what}: every block of region ${region} was read back and verified`);
}

void describe('fio verify across handovers', { skip: fio === undefined ? 'fio is not installed' : false, timeout: 300_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const device = (h: TestHost): string => join(root, `${h.name}.img`);

  before(async () => {
    ({ root, hosts } = await startCluster('mars-fio-verify', 2));
    for (const h of hosts) await randomDevice(device(h), sizeBytes, seed + h.name.length);
    await mustAdm(hosts[0]!, 'create-resource', 'r1', device(hosts[0]!));
    await mustAdm(hosts[1]!, 'join-resource', 'r1', device(hosts[1]!));
    await waitCaughtUp(hosts[0]!, hosts[1]!, 'r1', 120_000);
  });

  after(async () => {
    await cleanup(root, hosts);
  });

  void test(`fio writes a region, the primary is handed over, fio --verify_only passes on the new primary; ${handovers} times back and forth`, async (t) => {
    t.diagnostic(`seed ${seed}`);
    let [current, other] = [hosts[0]!, hosts[1]!];
    const regions = Math.min(handovers, sizeBytes / regionBytes);
    for (let round = 0; round < handovers; round++) {
      const region = round % regions;
      await writePhase(current, region);
      const out = await mustAdm(other, 'primary', 'r1', '--wait');
      assert.match(out, new RegExp(`^this host is now the primary of r1 \\(was ${current.name}\\), in \\d+ ms\\n$`));
      t.diagnostic(`round ${round}: region ${region} written on ${current.name}; ${out.trim()} on ${other.name}`);
      assert.equal(await view(other, 'is-primary', 'r1'), '1');
      await verifyPhase(nbdTarget(other), region, `${other.name}'s export`);
      [current, other] = [other, current];
    }
    // Every region written is still right on the last primary's export and on the other host's device.
    await waitCaughtUp(current, other, 'r1', 60_000);
    for (let region = 0; region < regions; region++) {
      await verifyPhase(nbdTarget(current), region, `${current.name}'s export`);
      await verifyPhase(['--ioengine=psync', `--filename=${device(other)}`], region, `${other.name}'s device`);
    }
    // The check can fail: a region never written (still the device's random bytes) does not verify.
    if (regions < sizeBytes / regionBytes) {
      const r = await run(fio!, [...jobArgs(regions), ...nbdTarget(current), '--do_verify=1', '--verify_only'], { timeoutMs: fioMsMax });
      assert.notEqual(r.code, 0, 'fio --verify_only fails on a region that was never written');
      assert.match(r.stderr, /verify/);
    }
  });
});
