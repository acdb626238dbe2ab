/**
 * What bench/fetch-serve.ts (its server role) and bench/secondary-cpu.ts share: the bench
 * cluster's identity, the messages between the bench and its server process, and the
 * per-thread CPU of this process.
 */
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
