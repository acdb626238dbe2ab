/**
 * Slices a V8 .cpuprofile (bench/cpu-profile.ts) into time windows and says, for each
 * window, what the profiled main thread did: idle, garbage collection, serving fetch
 * (a sample whose stack holds a frame of src/fetch/ or src/net/: the fetch server, the
 * peer links it writes to), or anything else (NBD, the logger, writeback, metadata).
 * The profiler's timestamps are CLOCK_MONOTONIC microseconds, the clock of
 * `process.hrtime`, so windows measured by the bench process apply to the daemon's
 * profile as they are.
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export type SampleKind = 'idle' | 'gc' | 'fetch' | 'rest';

/** A window in the profile's clock (µs of CLOCK_MONOTONIC). */
export interface Window {
  readonly fromUs: number;
  readonly toUs: number;
}

export interface WindowShares {
  /** Milliseconds the samples of the window cover. */
  readonly sampledMs: number;
  /** Percent of the window's sampled time, per kind. */
  readonly percent: Record<SampleKind, number>;
  /** The functions with the most self time among fetch's samples: name (file), percent of the window. */
  readonly fetchTop: readonly { readonly name: string; readonly percent: number }[];
}

/** The current time in the profile's clock. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

const fetchCodePattern = /\/src\/(fetch|net)\//;

function kindsOf(profile: CpuProfile): Map<number, SampleKind> {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const kinds = new Map<number, SampleKind>();
  for (const n of profile.nodes) {
    const name = n.callFrame.functionName;
    let kind: SampleKind = name === '(idle)' ? 'idle' : name === '(garbage collector)' ? 'gc' : 'rest';
    if (kind === 'rest') {
      for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
        if (fetchCodePattern.test(byId.get(id)!.callFrame.url)) {
          kind = 'fetch';
          break;
        }
      }
    }
    kinds.set(n.id, kind);
  }
  return kinds;
}

/** Shares of each window; a window with no samples gets zeroes. */
export function windowShares(profile: CpuProfile, windows: readonly Window[], topCount = 8): WindowShares[] {
  const kinds = kindsOf(profile);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const sums = windows.map(() => ({ total: 0, idle: 0, gc: 0, fetch: 0, rest: 0, top: new Map<string, number>() }));
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const deltaUs = profile.timeDeltas[i] ?? 0;
    t += deltaUs;
    const w = windows.findIndex((x) => t >= x.fromUs && t < x.toUs);
    if (w < 0) continue;
    const id = profile.samples[i]!;
    const kind = kinds.get(id) ?? 'rest';
    const s = sums[w]!;
    // The sample stands for the time since the previous one.
    s.total += deltaUs;
    s[kind] += deltaUs;
    if (kind === 'fetch') {
      const f = byId.get(id)!.callFrame;
      const name = `${f.functionName || '(anonymous)'} (${f.url.split('/').pop() ?? ''})`;
      s.top.set(name, (s.top.get(name) ?? 0) + deltaUs);
    }
  }
  return sums.map((s) => {
    const pct = (us: number): number => (s.total === 0 ? 0 : (100 * us) / s.total);
    const fetchTop = [...s.top.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, topCount)
      .map(([name, us]) => ({ name, percent: pct(us) }));
    return { sampledMs: s.total / 1000, percent: { idle: pct(s.idle), gc: pct(s.gc), fetch: pct(s.fetch), rest: pct(s.rest) }, fetchTop };
  });
}

export async function readProfile(path: string): Promise<CpuProfile> {
  return JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
}
