/**
 * Helpers for the log space tests: a cluster of real daemons on 127.0.0.N whose first
 * host (alpha, the primary) has its state directory on a small tmpfs (devices live
 * outside it), mounts always undone; a write load through NBD that remembers what it
 * wrote where; and a sampler that watches the primary's emergency flag continuously.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Random } from '../../src/core/random.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { isMountPoint, mustRun, unmountQuietly } from './daemon-helpers.js';
import { startTestCluster, stopAll, type TestHost } from './cluster-helpers.js';
import { removeDir } from './processes.js';
import { status } from './replication-helpers.js';

export const MiB = 1024 * 1024;

export interface SmallCluster {
  root: string;
  hosts: TestHost[];
  /** State directories on a tmpfs. */
  mounted: string[];
}

/**
 * alpha (started with `alphaArgs`), then the others, all seeing each other; the hosts at
 * the indexes `tmpfsOn` (default alpha only) have their state directory on a tmpfs of
 * `tmpfsBytes`.
 */
export async function startSmallCluster(
  prefix: string,
  names: readonly string[],
  tmpfsBytes: number,
  alphaArgs: string[],
  othersArgs: string[] = [],
  tmpfsOn: readonly number[] = [0],
): Promise<SmallCluster> {
  const cluster: SmallCluster = { root: '', hosts: [], mounted: [] };
  try {
    const started = await startTestCluster(prefix, names.length, {
      names,
      onHost: (h) => cluster.hosts.push(h),
      prepare: async (h, i) => {
        if (!tmpfsOn.includes(i)) return;
        cluster.root = dirname(h.dir);
        await mkdir(h.dir, { recursive: true });
        await mustRun('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes},mode=0700`, 'tmpfs', h.dir]);
        cluster.mounted.push(h.dir);
      },
      marsdArgs: (_h, i) => (i === 0 ? alphaArgs : othersArgs),
    });
    cluster.root = started.root;
  } catch (err) {
    if (cluster.hosts[0] !== undefined) cluster.root = dirname(cluster.hosts[0].dir);
    await stopSmallCluster(cluster);
    throw err;
  }
  return cluster;
}

/** Stops every daemon this test started (SIGTERM, then kill -9), unmounts the tmpfs mounts, removes the root (unless one is still mounted). */
export async function stopSmallCluster(c: SmallCluster): Promise<string | undefined> {
  await stopAll(c.hosts);
  for (const dir of c.mounted) {
    const note = await unmountQuietly(dir);
    if (await isMountPoint(dir)) return `tmpfs at ${dir} is still mounted (${note}); ${c.root} is left in place`;
  }
  await removeDir(c.root);
  return undefined;
}

/** Writes of `writeBytes` at aligned random offsets, remembering the last data at each; flushed in groups. */
export class WriteLoad {
  readonly last = new Map<number, Buffer>();
  writes = 0;

  constructor(
    private readonly random: Random,
    public client: NbdClient,
    private readonly deviceBytes: number,
    private readonly writeBytes = 256 * 1024,
  ) {}

  /** `totalBytes` of writes, `inflightMax` at a time at distinct offsets, each group flushed; every one must succeed. */
  async write(totalBytes: number, inflightMax = 8): Promise<void> {
    const slots = this.deviceBytes / this.writeBytes;
    for (let done = 0; done < totalBytes; done += inflightMax * this.writeBytes) {
      const offsets = new Set<number>();
      while (offsets.size < Math.min(inflightMax, slots)) offsets.add(this.random.int(slots) * this.writeBytes);
      await Promise.all(
        [...offsets].map(async (offset) => {
          const data = this.random.bytes(this.writeBytes);
          await this.client.write(offset, data);
          this.last.set(offset, data);
          this.writes++;
        }),
      );
      await this.client.flush();
    }
  }

  /** Every offset reads back its last write. */
  async verify(client: NbdClient, when: string): Promise<void> {
    for (const [offset, data] of this.last) {
      assert.ok((await client.read(offset, this.writeBytes)).equals(data), `${when}: the last write at ${offset} does not read back`);
    }
  }
}

export function seededRandom(): { random: Random; seed: number } {
  const seed = Number(process.env['MARS_TEST_SEED'] ?? Date.now() % 2_147_483_647);
  return { random: new Random(seed), seed };
}

/** Watches a host's view of R every `intervalMs`: whether it was ever in emergency mode, and the highest hole seen. */
export class EmergencySampler {
  everEmergency = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private busy = false;

  constructor(
    private readonly host: TestHost,
    private readonly name: string,
    intervalMs = 100,
  ) {
    this.timer = setInterval(() => void this.sample(), intervalMs);
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const s = (await status(this.host, this.name)) as { emergency?: { active: boolean } | null };
      if (s.emergency?.active === true) this.everEmergency = true;
    } catch {
      // the daemon may be busy or restarting; the next sample counts
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

export function resourceDirOf(host: TestHost, name: string): string {
  return join(host.dir, `resource-${name}`);
}
