/**
 * What bench/fetch-serve.ts (its server role) and bench/secondary-cpu.ts share: the bench
 * cluster's identity, the messages between the bench and its server process, and the
 * per-thread CPU of this process.
 */
import type { ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';

export const secret = Buffer.from('a bench cluster secret of 32 B..');
export const clusterId = 'bench';
export const resource = 'r0';
export const serverHost = 'alpha';
/** A round that has not finished in this long fails the bench. */
export const roundMsMax = 120_000;

export function argValue(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

/** Nanoseconds each thread of this process has run so far (schedstat's first field). */
export async function threadRunNs(): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const t of await readdir('/proc/self/task')) {
    try {
      out.set(Number(t), Number((await readFile(`/proc/self/task/${t}/schedstat`, 'utf8')).split(' ')[0]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

export function cpuSplit(before: Map<number, number>, after: Map<number, number>): { mainNs: number; otherNs: number } {
  let mainNs = 0;
  let otherNs = 0;
  for (const [tid, ns] of after) {
    const d = ns - (before.get(tid) ?? 0);
    if (tid === process.pid) mainNs += d;
    else otherNs += d;
  }
  return { mainNs, otherNs };
}

/** The bench to its server process, and back. */
export type ToServer = { kind: 'go' } | { kind: 'stop'; round: number } | { kind: 'exit' };
export type FromServer = { kind: 'ready'; port: number; logBytes: number; logName: string } | { kind: 'go-ack' } | { kind: 'cpu'; mainNs: number; otherNs: number };

/** The next message of the server process; rejects if it exits first. */
export function nextMessage(child: ChildProcess): Promise<FromServer> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`the server exited (${code})`));
    child.once('exit', onExit);
    child.once('message', (m: FromServer) => {
      child.off('exit', onExit);
      resolve(m);
    });
  });
}

/** A .cpuprofile as node:inspector writes it (what selfTimes reads). */
export interface Profile {
  nodes: { id: number; callFrame: { functionName: string; url: string } }[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function of a profile (top `count`), in % of the sampled time, or of the busy time with `idle: 'left out'`. */
export function selfTimes(profile: Profile, count: number, idle: 'counted' | 'left out' = 'counted'): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const sums = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    if (idle === 'left out' && f.functionName === '(idle)') return;
    const d = profile.timeDeltas[i] ?? 0;
    total += d;
    const name = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop() ?? ''}`.trim();
    sums.set(name, (sums.get(name) ?? 0) + d);
  });
  const of = idle === 'left out' ? ' of busy' : '';
  return [...sums.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => `${((100 * us) / total).toFixed(1).padStart(5)} %${of}  ${name}`);
}
