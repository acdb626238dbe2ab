/**
 * Helpers for the observation tests (test/metrics/, test/web/, test/cli/events): a
 * cluster whose daemons serve `--metrics` on their own 127.0.0.N, scrapes parsed into
 * samples, and a write load that runs until stopped. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Random } from '../../src/core/random.js';
import { startTestCluster, type TestHost } from './cluster-helpers.js';
import { freePort } from './processes.js';
import { connect, mustAdm, randomDevice, randomWrites, waitCaughtUp } from './replication-helpers.js';

export interface ObservedHost extends TestHost {
  readonly metrics: string;
}

/** alpha, beta, gamma on 127.0.0.1–3 in one cluster, each with `--metrics IP:PORT`. */
export async function startObservedCluster(prefix: string, count = 3): Promise<{ root: string; hosts: ObservedHost[] }> {
  return startTestCluster<ObservedHost>(prefix, count, {
    extend: async (h) => Object.assign(h, { metrics: `${h.ip}:${await freePort(h.ip)}` }),
    marsdArgs: (h) => ['--metrics', h.metrics],
  });
}

/**
 * The observed cluster with one resource r0 of `sizeBytes` on all three hosts (alpha
 * primary; each disk random bytes of its own seed), both secondaries caught up.
 */
export async function startObservedResource(prefix: string, sizeBytes: number, seed: number): Promise<{ root: string; hosts: ObservedHost[] }> {
  const { root, hosts } = await startObservedCluster(prefix);
  for (const h of hosts) await randomDevice(devicePath(root, h), sizeBytes, seed + h.name.length);
  await mustAdm(hosts[0]!, 'create-resource', 'r0', devicePath(root, hosts[0]!));
  await mustAdm(hosts[1]!, 'join-resource', 'r0', devicePath(root, hosts[1]!));
  await mustAdm(hosts[2]!, 'join-resource', 'r0', devicePath(root, hosts[2]!));
  await waitCaughtUp(hosts[0]!, hosts[1]!, 'r0', 120_000);
  await waitCaughtUp(hosts[0]!, hosts[2]!, 'r0', 120_000);
  return { root, hosts };
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (no escapes inside label values are needed here). */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

export async function scrape(host: ObservedHost): Promise<Sample[]> {
  const res = await fetch(`http://${host.metrics}/metrics`);
  assert.equal(res.status, 200);
  return parsePrometheus(await res.text());
}

/** The value of the one sample with this name and these labels (undefined if none). */
export function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string>): number | undefined {
  const hit = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(hit.length <= 1, `${name} ${JSON.stringify(labels)}: ${hit.length} samples`);
  return hit[0]?.value;
}

/**
 * Pause between two rounds of writeLoad: a steady load of some MiB a second, so that what
 * piles up while a test watches (a secondary's lag, a rate plot) is quickly caught up
 * afterwards, not a backlog of hundreds of MiB.
 */
const writeLoadPauseMs = 100;

/** Writes random blocks to R on `host` in rounds of 8 until `stop()`; resolves its promise with the rounds done. */
export function writeLoad(host: TestHost, name: string, sizeBytes: number, random: Random): { stop: () => Promise<number> } {
  let stopping = false;
  const running = (async () => {
    const client = await connect(host, name);
    let rounds = 0;
    try {
      while (!stopping) {
        await randomWrites(client, sizeBytes, 8, random);
        rounds++;
        await new Promise((r) => setTimeout(r, writeLoadPauseMs));
      }
    } finally {
      await client.close();
    }
    return rounds;
  })();
  return {
    stop: async () => {
      stopping = true;
      return running;
    },
  };
}

export function devicePath(root: string, host: TestHost): string {
  return join(root, `${host.name}.img`);
}
