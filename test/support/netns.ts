/**
 * Two network namespaces for partition tests, as in test/cluster/partition.test.ts: a
 * veth pair joins namespace 0 (the primary's) and namespace 1 (the secondary's); that is
 * the replication link, which a test cuts (its end in namespace 0 goes down) and heals.
 * A second veth pair joins the root namespace to namespace 0, so that the test process
 * reaches the primary's NBD export directly; it is never cut. Every name includes a tag
 * and the pid; `tearDown` removes both namespaces (and with them every veth) and never
 * throws. Needs root and `ip netns`.
 */
import { findTool, isRoot } from './daemon-helpers.js';
import { run } from './processes.js';

export interface NetnsPair {
  readonly namespaces: readonly [string, string];
  /** The replication addresses, in namespace 0 and 1. */
  readonly addresses: readonly [string, string];
  /** The end of the NBD link in namespace 0 (listen there; the test process reaches it). */
  readonly nbdAddress: string;
  /** A command prefix that runs a command inside namespace `i` (`ip netns exec NS`). */
  inNs(i: 0 | 1): string[];
  /** The replication link goes down (its end in namespace 0). */
  cut(): Promise<void>;
  heal(): Promise<void>;
  /** Limits what namespace 0 sends on the replication link (tbf); false when tbf is unavailable. */
  limitRate(rateMbit: number): Promise<boolean>;
  unlimitRate(): Promise<void>;
  tearDown(): Promise<void>;
}

const ipTimeoutMs = 10_000;

async function ip(...args: string[]): Promise<void> {
  const r = await run('ip', args, { timeoutMs: ipTimeoutMs });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** Why namespaces cannot be used here, or undefined when they can. */
export async function netnsSkipReason(): Promise<string | undefined> {
  if (!isRoot()) return 'needs root (network namespaces)';
  if (findTool('ip') === undefined) return 'needs the ip tool (iproute2)';
  const probe = `mars-probe-${process.pid}`;
  const added = await run('ip', ['netns', 'add', probe], { timeoutMs: ipTimeoutMs });
  if (added.code !== 0) return `ip netns is not available here: ${added.stderr.trim()}`;
  await run('ip', ['netns', 'del', probe], { timeoutMs: ipTimeoutMs });
  return undefined;
}

/** Creates the namespaces and links; on failure removes what it made and throws. `tag`: 2 letters. */
export async function createNetnsPair(tag: string): Promise<NetnsPair> {
  const suffix = String(process.pid % 100_000);
  const namespaces = [`mars-${tag}0-${process.pid}`, `mars-${tag}1-${process.pid}`] as const;
  const veths = [`m${tag}a${suffix}`, `m${tag}b${suffix}`] as const;
  const nbdVeths = [`m${tag}n${suffix}`, `m${tag}r${suffix}`] as const; // in namespace 0, in the root namespace
  const addresses = ['10.199.88.1', '10.199.88.2'] as const;
  const nbdSubnet = `10.203.${process.pid % 250}`;
  const tearDown = async (): Promise<void> => {
    for (const ns of namespaces) await run('ip', ['netns', 'del', ns], { timeoutMs: ipTimeoutMs }).catch(() => undefined);
    await run('ip', ['link', 'del', nbdVeths[1]], { timeoutMs: ipTimeoutMs }).catch(() => undefined);
  };
  try {
    for (const ns of namespaces) await ip('netns', 'add', ns);
    await ip('link', 'add', veths[0], 'type', 'veth', 'peer', 'name', veths[1]);
    for (const i of [0, 1] as const) {
      await ip('link', 'set', veths[i], 'netns', namespaces[i]);
      await ip('-n', namespaces[i], 'addr', 'add', `${addresses[i]}/24`, 'dev', veths[i]);
      await ip('-n', namespaces[i], 'link', 'set', veths[i], 'up');
      await ip('-n', namespaces[i], 'link', 'set', 'lo', 'up');
    }
    await ip('link', 'add', nbdVeths[1], 'type', 'veth', 'peer', 'name', nbdVeths[0]);
    await ip('link', 'set', nbdVeths[0], 'netns', namespaces[0]);
    await ip('-n', namespaces[0], 'addr', 'add', `${nbdSubnet}.2/24`, 'dev', nbdVeths[0]);
    await ip('-n', namespaces[0], 'link', 'set', nbdVeths[0], 'up');
    await ip('addr', 'add', `${nbdSubnet}.1/24`, 'dev', nbdVeths[1]);
    await ip('link', 'set', nbdVeths[1], 'up');
  } catch (err) {
    await tearDown();
    throw err;
  }
  return {
    namespaces,
    addresses,
    nbdAddress: `${nbdSubnet}.2`,
    inNs: (i) => ['ip', 'netns', 'exec', namespaces[i]],
    cut: () => ip('-n', namespaces[0], 'link', 'set', veths[0], 'down'),
    heal: () => ip('-n', namespaces[0], 'link', 'set', veths[0], 'up'),
    limitRate: async (rateMbit) => {
      const r = await run('tc', ['-n', namespaces[0], 'qdisc', 'add', 'dev', veths[0], 'root', 'tbf', 'rate', `${rateMbit}mbit`, 'burst', '256kb', 'latency', '200ms'], { timeoutMs: ipTimeoutMs }).catch(() => undefined);
      return r?.code === 0;
    },
    unlimitRate: async () => {
      await run('tc', ['-n', namespaces[0], 'qdisc', 'del', 'dev', veths[0], 'root'], { timeoutMs: ipTimeoutMs }).catch(() => undefined);
    },
    tearDown,
  };
}
