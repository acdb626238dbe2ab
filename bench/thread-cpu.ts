/**
 * CPU time of a process split by thread (/proc/PID/task/TID/stat), for the benchmarks: is
 * the event loop the limit, or the other threads (the thread pool: file reads and writes,
 * lz4, fdatasync; V8's helpers: garbage collection)? The main thread is TID = PID. Threads
 * are grouped further by name where they have one (`libuv-worker`, `V8 ...`); Node 20
 * names every thread `node`, so there they all count as `other`. A thread that ends
 * between two readings loses its time (none of ours do while the bench measures).
 */
import { readdir, readFile } from 'node:fs/promises';

/** USER_HZ of /proc/PID/task/TID/stat. */
const clockTicksPerS = 100;

export type ThreadGroup = 'main' | 'pool' | 'v8' | 'other';
export const threadGroups: readonly ThreadGroup[] = ['main', 'pool', 'v8', 'other'];

/** CPU seconds per thread id so far, with each thread's group. */
export type ThreadTimes = ReadonlyMap<number, { readonly group: ThreadGroup; readonly cpuS: number }>;

export function groupOf(pid: number, tid: number, comm: string): ThreadGroup {
  if (tid === pid) return 'main';
  if (comm.startsWith('libuv-worker')) return 'pool';
  if (comm.startsWith('V8 ')) return 'v8';
  return 'other';
}

/** One line of /proc/PID/task/TID/stat: the thread's name and its user + system seconds. */
export function parseTaskStat(line: string): { comm: string; cpuS: number } {
  const open = line.indexOf('(');
  const close = line.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`not a stat line: ${line.slice(0, 80)}`);
  const fields = line.slice(close + 2).split(' ');
  // Fields 14 and 15 of stat(5) (utime, stime); fields[0] is field 3.
  return { comm: line.slice(open + 1, close), cpuS: (Number(fields[14 - 3]) + Number(fields[15 - 3])) / clockTicksPerS };
}

/** Every thread's CPU seconds now; an empty map once the process is gone. */
export async function threadTimes(pid: number | undefined): Promise<ThreadTimes> {
  const out = new Map<number, { group: ThreadGroup; cpuS: number }>();
  if (pid === undefined) return out;
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    const tid = Number(t);
    try {
      const { comm, cpuS } = parseTaskStat(await readFile(`/proc/${pid}/task/${t}/stat`, 'utf8'));
      out.set(tid, { group: groupOf(pid, tid, comm), cpuS });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Percent of one core each group used between two readings `ms` apart (threads born meanwhile count from 0). */
export function groupPercents(before: ThreadTimes, after: ThreadTimes, ms: number): Record<ThreadGroup | 'total', number> {
  const out: Record<ThreadGroup | 'total', number> = { main: 0, pool: 0, v8: 0, other: 0, total: 0 };
  for (const [tid, now] of after) {
    const s = now.cpuS - (before.get(tid)?.cpuS ?? 0);
    out[now.group] += (100 * s * 1000) / ms;
    out.total += (100 * s * 1000) / ms;
  }
  return out;
}
