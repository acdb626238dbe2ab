import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import fc from 'fast-check';
import { logInFlight, parsePatternJson, patternJobFile, patternVariants, recycledLogBytes, runPattern, type PatternOptions, type PatternVariant } from '../../bench/ceiling.js';
import { removeDir, tempDir } from '../support/processes.js';

const MiB = 1024 * 1024;
const options: PatternOptions = { dir: '/d', deviceBytes: 64 * MiB, logAppendBytesMax: 4096 * MiB, logSyncMiB: 12, runtimeS: 20, rampS: 2 };

function variant(name: string): PatternVariant {
  const v = patternVariants.find((p) => p.name === name);
  assert.ok(v, name);
  return v;
}

/** The sections of an ini text, each as a map of its keys (a key without a value maps to ''). */
function sections(ini: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of ini.split('\n')) {
    const head = /^\[(.+)\]$/.exec(line);
    if (head !== null) out.set(head[1]!, (current = new Map<string, string>()));
    else if (line.trim() !== '') current!.set(line.split('=')[0]!, line.includes('=') ? line.slice(line.indexOf('=') + 1) : '');
  }
  return out;
}

void test('the pattern appends the log with O_DIRECT to a new file and writes the device through the page cache, both in one flow, with a device fdatasync every 5 s', () => {
  const s = sections(patternJobFile(variant('pattern'), options));
  assert.deepEqual([...s.keys()], ['global', 'log', 'device', 'device-sync']);
  const log = s.get('log')!;
  assert.equal(log.get('direct'), '1');
  assert.equal(log.get('iodepth'), String(logInFlight));
  assert.equal(log.get('file_append'), '1');
  assert.equal(log.get('fallocate'), 'none');
  assert.equal(log.get('fdatasync'), '12');
  assert.equal(log.get('size'), String(4096 * MiB));
  const device = s.get('device')!;
  assert.equal(device.get('direct'), '0');
  assert.equal(device.get('overwrite'), '1');
  assert.equal(device.get('size'), String(64 * MiB));
  assert.equal(log.get('flow_id'), device.get('flow_id'));
  assert.equal(log.get('flow'), device.get('flow'));
  const sync = s.get('device-sync')!;
  assert.equal(sync.get('filename'), device.get('filename'));
  assert.equal(sync.get('fdatasync'), '1');
  assert.equal(sync.get('thinktime'), '5000000');
  assert.equal(sync.get('flow'), undefined, 'the fdatasync job must not be held back by the flow');
  assert.equal(s.get('global')!.get('runtime'), '20');
  assert.equal(s.get('global')!.get('ramp_time'), '2');
});

void test('each variant changes exactly its one thing', () => {
  const base = sections(patternJobFile(variant('pattern'), options));
  const recycled = sections(patternJobFile(variant('log-recycled'), options)).get('log')!;
  assert.equal(recycled.get('file_append'), undefined);
  assert.equal(recycled.get('overwrite'), '1');
  assert.equal(recycled.get('size'), String(recycledLogBytes));
  const hole = sections(patternJobFile(variant('log-hole'), options)).get('log')!;
  assert.equal(hole.get('file_append'), undefined);
  assert.equal(hole.get('overwrite'), undefined);
  assert.equal(hole.get('fallocate'), 'none');
  assert.equal(hole.get('size'), String(4096 * MiB));
  const direct = sections(patternJobFile(variant('device-direct'), options));
  assert.equal(direct.get('device')!.get('direct'), '1');
  assert.deepEqual(direct.get('log'), base.get('log'));
  assert.equal(sections(patternJobFile(variant('device-sync-1s'), options)).get('device-sync')!.get('thinktime'), '1000000');
  assert.deepEqual([...sections(patternJobFile(variant('device-sync-never'), options)).keys()], ['global', 'log', 'device']);
  assert.deepEqual([...sections(patternJobFile(variant('log-alone'), options)).keys()], ['global', 'log']);
  assert.equal(sections(patternJobFile(variant('log-sync-64m'), options)).get('log')!.get('fdatasync'), '64');
});

void test('a device size that is not whole MiB and a log fdatasync interval below 1 MiB are refused', () => {
  assert.throws(() => patternJobFile(variant('pattern'), { ...options, deviceBytes: MiB + 1 }), /whole number of MiB/);
  assert.throws(() => patternJobFile(variant('pattern'), { ...options, logSyncMiB: 0 }), /fdatasync interval/);
});

function job(name: string, mib: number, syncs: number, error = 0): unknown {
  return {
    jobname: name,
    error,
    usr_cpu: 10,
    sys_cpu: 30,
    write: { bw_bytes: mib * MiB, io_bytes: mib * MiB * 10, runtime: 10_000 },
    sync: { lat_ns: syncs === 0 ? { N: 0, mean: 0, max: 0 } : { N: syncs, mean: 20e6, max: 90e6 } },
  };
}

void test("the client's rate is the slower stream's, and fio's CPU is counted per MiB the client wrote", () => {
  const out = `fio: a warning first\n${JSON.stringify({ jobs: [job('log', 300, 10), job('device', 320, 0), job('device-sync', 0, 2)] })}`;
  const f = parsePatternJson(out, false);
  assert.equal(f.clientMiBPerS, 300);
  assert.equal(f.log.syncs, 10);
  assert.equal(f.log.syncMeanMs, 20);
  assert.equal(f.log.syncMaxMs, 90);
  assert.equal(f.deviceSync?.syncs, 2);
  // Three jobs at 40 % of a CPU for 10 s = 12 CPU seconds over 3,000 MiB.
  assert.equal(Math.round(f.cpuUsPerMiB), 4000);
  const alone = parsePatternJson(JSON.stringify({ jobs: [job('log', 500, 4)] }), true);
  assert.equal(alone.clientMiBPerS, 500);
  assert.equal(alone.device, undefined);
  assert.equal(alone.logWrapped, true);
});

void test('a pattern report with a failed job, without the log job, or without JSON is an error', () => {
  assert.throws(() => parsePatternJson(JSON.stringify({ jobs: [job('log', 300, 1, 5), job('device', 300, 0)] }), false), /error 5/);
  assert.throws(() => parsePatternJson(JSON.stringify({ jobs: [job('device', 300, 0)] }), false), /named log/);
  assert.throws(() => parsePatternJson('fio: no such option', false), /no JSON/);
  assert.throws(() => parsePatternJson(JSON.stringify({ jobs: [job('log', 0, 1), job('device', 300, 0)] }), false), /wrote nothing/);
});

void test("for any two streams the client's rate is the slower one's", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100_000 }), fc.integer({ min: 1, max: 100_000 }), (logMiB, deviceMiB) => {
      const f = parsePatternJson(JSON.stringify({ jobs: [job('log', logMiB, 1), job('device', deviceMiB, 0)] }), false);
      return f.clientMiBPerS === Math.min(logMiB, deviceMiB) && f.log.mibPerS === logMiB && f.device?.mibPerS === deviceMiB;
    }),
    { seed: 42 },
  );
});

void test('fio accepts the job files of the pattern (device fdatasync every 1 s) and of the log alone on real files, reports both streams, and the files are removed', async () => {
  const dir = await tempDir('mars-ceiling');
  try {
    const real: PatternOptions = { dir, deviceBytes: 16 * MiB, logAppendBytesMax: 4096 * MiB, logSyncMiB: 4, runtimeS: 2, rampS: 0 };
    // The device's fdatasync comes after its first think time (1 s here): within 2 s, at least one.
    const p = await runPattern(variant('device-sync-1s'), real);
    assert.ok(p.log.ioBytes > 0 && p.device !== undefined && p.device.ioBytes > 0);
    assert.ok(p.log.syncs >= 1, 'the log is fdatasync-ed');
    assert.ok(p.deviceSync !== undefined && p.deviceSync.syncs >= 1, 'the device is fdatasync-ed after 1 s');
    assert.equal(p.clientMiBPerS, Math.min(p.log.mibPerS, p.device.mibPerS));
    assert.equal(p.logWrapped, false);
    const hole = await runPattern(variant('log-hole'), { ...real, runtimeS: 1, logAppendBytesMax: 64 * MiB });
    assert.ok(hole.log.ioBytes > 0);
    const alone = await runPattern(variant('log-alone'), { ...real, runtimeS: 1 });
    assert.equal(alone.device, undefined);
    assert.ok(alone.log.ioBytes > 0);
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await removeDir(dir);
  }
});
