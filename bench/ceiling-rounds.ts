/**
 * The ceiling of job (b) without marsd: interleaved rounds of the disk's own 1 MiB
 * sequential write rate (`fio --direct=1`, QD8, as bench/run.ts measures it) and of the
 * pattern variants of bench/ceiling.ts, each round in a rotated order, with the load
 * average beside every figure. For studying which change of the I/O pattern lifts the
 * ceiling; `npm run bench` runs the pattern itself next to job (b).
 *
 *   node dist/bench/ceiling-rounds.js [--dir DIR] [--rounds R] [--seconds S] [--ramp S]
 *        [--size-mib M] [--log-sync-mib N] [--variants pattern,log-recycled,...]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { patternVariants, runPattern, type PatternVariant } from './ceiling.js';
import { measuredJobs, runFio } from './fio.js';
import { onCleanup, runMain, say, table, writeResults } from './support.js';

const bytesPerMiB = 1024 * 1024;

function argValue(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

function wholeNumber(name: string, min: number): number {
  const text = argValue(name, '');
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} ${text}: expected a whole number >= ${min}`);
  return n;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Row {
  readonly round: number;
  readonly name: string;
  readonly load1: number;
  readonly mibPerS: number;
  readonly diskShare: number;
  readonly cpuUsPerMiB: number;
  readonly detail: string;
}

async function main(): Promise<void> {
  const defaults: Record<string, string> = { '--rounds': '3', '--seconds': '10', '--ramp': '1', '--size-mib': '1024', '--log-sync-mib': '16' };
  for (const [k, v] of Object.entries(defaults)) if (!process.argv.includes(k)) process.argv.push(k, v);
  const rounds = wholeNumber('--rounds', 1);
  const runtimeS = wholeNumber('--seconds', 1);
  const rampS = wholeNumber('--ramp', 0);
  const sizeBytes = wholeNumber('--size-mib', 1) * bytesPerMiB;
  const logSyncMiB = wholeNumber('--log-sync-mib', 1);
  const wanted = argValue('--variants', patternVariants.map((v) => v.name).join(',')).split(',');
  const variants: PatternVariant[] = [];
  for (const name of wanted) {
    const v = patternVariants.find((p) => p.name === name);
    if (v === undefined) throw new Error(`--variants: unknown ${name} (known: ${patternVariants.map((p) => p.name).join(', ')})`);
    variants.push(v);
  }
  const diskJob = measuredJobs.find((j) => j.name === 'seqwrite-1m');
  if (diskJob === undefined) throw new Error('no seqwrite-1m job');
  const dir = await mkdtemp(join(argValue('--dir', tmpdir()), 'mars-ceiling-'));
  const cleanup = onCleanup(() => rm(dir, { recursive: true, force: true }));
  const rows: Row[] = [];
  try {
    say(`directory ${dir}; ${rounds} rounds, ${runtimeS} s + ramp ${rampS} s per run, device ${sizeBytes / bytesPerMiB} MiB, log fdatasync every ${logSyncMiB} MiB`);
    for (let round = 1; round <= rounds; round++) {
      const names = ['disk', ...variants.map((v) => v.name)];
      const shift = (round - 1) % names.length;
      const order = [...names.slice(shift), ...names.slice(0, shift)];
      let diskMiBPerS: number | undefined;
      const pending: Omit<Row, 'diskShare'>[] = [];
      for (const name of order) {
        const load1 = loadavg()[0] ?? 0;
        if (name === 'disk') {
          const path = join(dir, 'disk.img');
          const fio = await runFio({ ...diskJob, name: 'disk-seqwrite-1m' }, { uri: '', directFile: path, sizeBytes, runtimeS, rampS, passTimeoutMs: 600_000 });
          await rm(path, { force: true });
          diskMiBPerS = fio.mibPerS;
          pending.push({ round, name, load1, mibPerS: fio.mibPerS, cpuUsPerMiB: Number.NaN, detail: `p99 ${fio.p99Ms.toFixed(1)} ms` });
        } else {
          const variant = variants.find((v) => v.name === name)!;
          const logAppendBytesMax = Math.max(4096 * bytesPerMiB, Math.ceil((runtimeS + rampS) * 3000) * bytesPerMiB);
          const p = await runPattern(variant, { dir, deviceBytes: sizeBytes, logAppendBytesMax, logSyncMiB, runtimeS, rampS });
          const sync = p.deviceSync === undefined ? 'no device sync' : `device syncs ${p.deviceSync.syncs} mean ${p.deviceSync.syncMeanMs.toFixed(0)} max ${p.deviceSync.syncMaxMs.toFixed(0)} ms`;
          pending.push({
            round,
            name,
            load1,
            mibPerS: p.clientMiBPerS,
            cpuUsPerMiB: p.cpuUsPerMiB,
            detail: `log ${p.log.mibPerS.toFixed(0)} / device ${p.device === undefined ? '-' : p.device.mibPerS.toFixed(0)} MiB/s; log syncs ${p.log.syncs} mean ${p.log.syncMeanMs.toFixed(1)} max ${p.log.syncMaxMs.toFixed(0)} ms; ${sync}${p.logWrapped ? '; LOG WRAPPED' : ''}`,
          });
        }
        const last = pending[pending.length - 1]!;
        say(`round ${round} ${name}: ${last.mibPerS.toFixed(0)} MiB/s (load ${load1.toFixed(1)}) ${last.detail}`);
      }
      for (const r of pending) rows.push({ ...r, diskShare: diskMiBPerS === undefined ? Number.NaN : r.mibPerS / diskMiBPerS });
    }
    say();
    const summary: string[][] = [['run', 'client MiB/s per round', 'median', 'share of disk --direct=1, median', 'fio µs CPU per MiB, median', 'load']];
    for (const name of ['disk', ...variants.map((v) => v.name)]) {
      const mine = rows.filter((r) => r.name === name);
      summary.push([
        name,
        mine.map((r) => r.mibPerS.toFixed(0)).join(' · '),
        median(mine.map((r) => r.mibPerS)).toFixed(0),
        median(mine.map((r) => r.diskShare)).toFixed(2),
        name === 'disk' ? '' : median(mine.map((r) => r.cpuUsPerMiB)).toFixed(0),
        mine.map((r) => r.load1.toFixed(1)).join(' · '),
      ]);
    }
    say(table(summary));
    await writeResults(argValue('--results', join(tmpdir(), 'mars-ceiling-rounds.json')), { date: new Date().toISOString(), rounds: rows });
  } finally {
    await cleanup();
  }
}

runMain(main);
