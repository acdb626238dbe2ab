/**
 * Gossip peer selection: a bounded number of distinct random hosts, drawn from the seeded
 * random source the shell passes in (so a simulation replays exactly). Bounded fan-out
 * is what keeps the cost of one cluster-wide change at O(fan-out) per host that learns it,
 * and the number of rounds until every host has it at O(log n).
 */
import type { Random } from '../core/random.js';

/** Attempts at drawing a fresh candidate before falling back to a scan. */
const drawAttemptsPerPick = 8;

/** Up to `count` distinct hosts from `candidates`, none of them in `exclude`. */
export function pickPeers(random: Random, candidates: readonly string[], count: number, exclude: ReadonlySet<string>): string[] {
  const picked = new Set<string>();
  const limit = Math.min(count, candidates.length);
  for (let attempt = 0; picked.size < limit && attempt < limit * drawAttemptsPerPick; attempt++) {
    const host = candidates[random.int(candidates.length)];
    if (host !== undefined && !exclude.has(host)) picked.add(host);
  }
  if (picked.size < limit) {
    // Few eligible hosts (a small cluster): take them from a random starting point.
    const start = random.int(candidates.length);
    for (let i = 0; i < candidates.length && picked.size < limit; i++) {
      const host = candidates[(start + i) % candidates.length];
      if (host !== undefined && !exclude.has(host)) picked.add(host);
    }
  }
  return [...picked];
}
