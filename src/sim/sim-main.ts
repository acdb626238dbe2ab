/**
 * npm run sim -- [--seeds N | --from S --seeds N | --seed S] [--hosts H] [--steps K]
 *                [--no-crash] [--no-partition] [--no-net-faults] [--no-disk-latency]
 *                [--no-bit-rot] [--no-handover] [--no-pause] [--no-log-delete] [--no-membership]
 *                [--no-emergency] [--full-log-fs] [--mutation NAME] [--trace N]
 *
 * Many seeds: one line per failing seed and a summary line; exit 1 on any failure.
 * One seed: its result and, on failure, the last events before it; the output is the
 * same every time (virtual time only, nothing of the machine it runs on).
 */
import { allFaults, describeResult, runSimulation, simOptionsDefault, type FaultSwitches, type SimOptions } from './cluster-sim.js';
import { noMutations, type Mutations } from './sim-host.js';

const mutationNames: Record<string, keyof Mutations> = {
  'ship-past-durable': 'shipPastDurable',
  'skip-replay-sync': 'skipReplaySync',
  'skip-dirty-mark': 'skipDirtyMark',
  'early-handover': 'earlyHandover',
  'delete-needed-log': 'deleteNeededLog',
  'consistent-at-sync-done': 'consistentAtSyncDone',
  'skip-emergency-sync': 'skipEmergencySync',
};

const faultFlags: Record<string, keyof FaultSwitches> = {
  '--no-crash': 'crash',
  '--no-partition': 'partition',
  '--no-net-faults': 'netFaults',
  '--no-disk-latency': 'diskLatency',
  '--no-bit-rot': 'bitRot',
  '--no-handover': 'handover',
  '--no-pause': 'pause',
  '--no-log-delete': 'logDelete',
  '--no-membership': 'membership',
  '--no-emergency': 'emergency',
};

interface Args {
  seed: number | undefined;
  from: number;
  seeds: number;
  options: Omit<SimOptions, 'seed'>;
}

class UsageError extends Error {}

function positiveInt(flag: string, value: string | undefined, max: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n) || n < 1 || n > max) throw new UsageError(`${flag} needs a whole number from 1 to ${max}`);
  return n;
}

export function parseSimArgs(argv: readonly string[]): Args {
  const faults: Record<keyof FaultSwitches, boolean> = { ...allFaults };
  const mutations: Record<keyof Mutations, boolean> = { ...noMutations };
  let seed: number | undefined;
  let from = 1;
  let seeds = 1;
  let hosts = simOptionsDefault.hosts;
  let steps = simOptionsDefault.steps;
  let traceLines = simOptionsDefault.traceLines;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string | undefined => argv[++i];
    if (a === '--seed') seed = positiveInt(a, next(), 2 ** 31);
    else if (a === '--seeds') seeds = positiveInt(a, next(), 1_000_000);
    else if (a === '--from') from = positiveInt(a, next(), 2 ** 31);
    else if (a === '--hosts') hosts = positiveInt(a, next(), 8);
    else if (a === '--steps') steps = positiveInt(a, next(), 100_000);
    else if (a === '--trace') traceLines = positiveInt(a, next(), 10_000);
    else if (a === '--mutation') {
      const name = next() ?? '';
      const key = mutationNames[name];
      if (key === undefined) throw new UsageError(`--mutation is one of: ${Object.keys(mutationNames).join(', ')}`);
      mutations[key] = true;
    } else if (a === '--full-log-fs') faults.fullLogFs = true;
    else if (faultFlags[a] !== undefined) faults[faultFlags[a]] = false;
    else throw new UsageError(`unknown argument ${a}`);
  }
  if (hosts < 2) throw new UsageError('--hosts needs at least 2');
  return { seed, from, seeds, options: { hosts, steps, traceLines, faults, mutations } };
}

async function main(argv: readonly string[]): Promise<number> {
  let args: Args;
  try {
    args = parseSimArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`sim: ${err.message}\n`);
    return 2;
  }
  if (args.seed !== undefined) {
    const r = await runSimulation({ ...args.options, seed: args.seed });
    process.stdout.write(`${describeResult(r)}\n`);
    if (!r.ok) process.stdout.write(`last events before the failure:\n${r.trace.map((t) => `  ${t}`).join('\n')}\n`);
    return r.ok ? 0 : 1;
  }
  let failed = 0;
  const totals = { writes: 0, crashes: 0, handovers: 0 };
  for (let seed = args.from; seed < args.from + args.seeds; seed++) {
    const r = await runSimulation({ ...args.options, seed });
    totals.writes += r.stats.writes;
    totals.crashes += r.stats.crashes;
    totals.handovers += r.stats.handovers;
    if (!r.ok) {
      failed++;
      process.stdout.write(`${describeResult(r)}\n`);
    }
  }
  process.stdout.write(`${args.seeds} seeds from ${args.from}: ${failed === 0 ? 'all passed' : `${failed} failed`} (${totals.writes} writes, ${totals.crashes} crashes, ${totals.handovers} handovers)\n`);
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`sim: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
