/**
 * Prints the metadata scale table (docs/metadata.md) for the given host counts:
 *   npx tsc -p . && node dist/bench/meta-scale.js 10 100 1000 5000 [--seed N]
 * 5,000 hosts need a few minutes and several GiB of heap:
 *   node --max-old-space-size=8192 dist/bench/meta-scale.js 5000
 * Beside each row, the original's full mesh (every host polls every other every 5 s),
 * computed from its design: (n-1)/5 polls per host per second, each returning the whole tree.
 * Wall-clock time is read here on purpose: it is reported, it never steers the run.
 */
import { runMetaScale, type MetaScaleResult } from '../src/sim/meta-sim.js';

const originalPollIntervalS = 5;

function parseArgs(argv: readonly string[]): { hosts: number[]; seed: number } {
  const hosts: number[] = [];
  let seed = 1;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--seed') seed = Number(argv[++i]);
    else hosts.push(Number(arg));
  }
  if (hosts.some((n) => !Number.isInteger(n) || n < 2) || !Number.isInteger(seed)) {
    throw new Error('usage: meta-scale [HOSTS...] [--seed N]   (HOSTS are integers >= 2)');
  }
  return { hosts: hosts.length > 0 ? hosts : [10, 100, 1000], seed };
}

function row(r: MetaScaleResult): string {
  const originalRest = (r.hosts - 1) / originalPollIntervalS;
  return [
    r.hosts,
    r.resources,
    r.restMessagesPerHostPerS.toFixed(2),
    Math.round(r.restBytesPerHostPerS),
    `${r.resourceUpdate.messages.toFixed(1)} (${r.resourceUpdate.members.toFixed(1)} members)`,
    r.resourceUpdate.hostsTouched.toFixed(1),
    r.clusterUpdate.rounds,
    r.clusterUpdate.messages,
    r.clusterUpdateAntiEntropyOnly.rounds,
    originalRest.toFixed(1),
    r.hosts - 1,
    (r.wallMs / 1000).toFixed(1),
  ].join(' | ');
}

function main(): void {
  const { hosts, seed } = parseArgs(process.argv.slice(2));
  console.log(`seed ${seed}`);
  console.log(
    '| hosts | resources | msgs/host/s at rest | bytes/host/s at rest | msgs per resource-key update (mean of 10) | hosts touched | rounds to all (push+gossip) | msgs per cluster-key update | rounds to all (anti-entropy only) | original: msgs/host/s at rest | original: hosts touched per update | wall s |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const n of hosts) {
    const result = runMetaScale({ hosts: n, seed }, () => performance.now());
    console.log(`| ${row(result)} |`);
  }
}

main();
