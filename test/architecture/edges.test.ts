/**
 * The architecture as code: the core takes its clock, timers, randomness, files and
 * sockets from the host environment (src/core/env.ts), so that the simulator can drive
 * it; only the edge modules listed here touch the globals. And every area imports only
 * areas below it, so there are no cycles between areas.
 *
 * The list of edges is honest: some files are edges by nature (real files, real sockets,
 * the real timers), others still wait for the move into the environment (marked "not
 * moved yet"). Each entry must still use what it is allowed, so the list only shrinks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';

type Global = 'timers' | 'Date.now' | 'Math.random' | 'performance.now' | 'node:fs' | 'node:net';

const patterns: Record<Global, RegExp> = {
  timers: /(?<![.\w])(setTimeout|setInterval|setImmediate|clearTimeout|clearInterval)\(/,
  'Date.now': /\bDate\.now\(/,
  'Math.random': /\bMath\.random\(/,
  'performance.now': /\bperformance\.now\(/,
  'node:fs': /^import (?!type )[^;]*from 'node:fs(\/promises)?';/m,
  'node:net': /^import (?!type )[^;]*from 'node:net';/m,
};

/** Files allowed to touch globals, with what and why. */
const edges: Record<string, { uses: Global[]; why: string }> = {
  'src/core/clock.ts': { uses: ['Date.now'], why: 'systemClock, the real clock marsd passes' },
  'src/core/timers.ts': { uses: ['timers'], why: 'systemTimers, the real timers marsd passes' },
  'src/daemon/system-env.ts': { uses: ['node:net'], why: 'the real host environment: TCP dial and listen' },
  'src/storage/fs-storage.ts': { uses: ['node:fs', 'performance.now'], why: 'real files (and their slow-I/O measurement)' },
  'src/storage/batch-write-worker.ts': { uses: ['node:fs'], why: 'the writeback worker thread writes real files' },
  'src/compress/lz4-thread.ts': { uses: ['timers'], why: 'the lz4 worker thread runs one job per turn of its own event loop (setImmediate), so that the library frees its buffers between jobs' },
  'src/net/peer-endpoint.ts': { uses: ['node:net'], why: 'TCP/TLS listen and dial of peers (not moved yet: it should dial through env.dial)' },
  'src/nbd/server.ts': { uses: ['node:net', 'Date.now'], why: 'the NBD listener and its eviction of stale connections (Date.now not moved yet)' },
  'src/nbd/socket-read.ts': { uses: ['node:net'], why: 'moves an accepted socket onto a reusable read buffer (a net.Socket with onread)' },
  'src/nbd/client.ts': { uses: ['node:net', 'timers'], why: 'the NBD client of tests, demo and benchmarks' },
  'src/nbd/connection.ts': { uses: ['timers', 'Date.now'], why: 'NBD handshake, idle, stall and linger timeouts (not moved yet)' },
  'src/control/server.ts': { uses: ['node:net', 'node:fs'], why: 'the control socket' },
  'src/control/client.ts': { uses: ['node:net', 'timers'], why: 'marsadm talking to marsd' },
  'src/daemon/state-dir.ts': { uses: ['node:fs'], why: 'the state directory (not moved yet)' },
  'src/daemon/host-key.ts': { uses: ['node:fs'], why: 'the host signing key file, made with O_EXCL and mode 0600 (like identity.ts)' },
  'src/daemon/identity.ts': { uses: ['node:fs'], why: 'host files and the secret (not moved yet)' },
  'src/daemon/join-cluster.ts': { uses: ['node:fs'], why: 'creates the state directory of a joiner (not moved yet)' },
  'src/daemon/cluster.ts': { uses: ['node:fs', 'timers', 'Date.now'], why: 'metadata tick and waits (not moved yet)' },
  'src/daemon/hooks.ts': { uses: ['timers'], why: 'runs hook processes with a timeout (not moved yet)' },
  'src/daemon/space-monitor.ts': { uses: ['node:fs', 'timers'], why: 'statfs of the log filesystem (not moved yet)' },
  'src/daemon/resources.ts': { uses: ['node:fs', 'timers'], why: 'removes resource directories; re-reads device sizes for online resize (not moved yet)' },
  'src/core/version.ts': { uses: ['node:fs'], why: 'reads the package version once for --version' },
  'src/daemon/daemon.ts': { uses: ['node:fs', 'timers'], why: 'removes the state directory on leave (not moved yet)' },
  'src/daemon/resource-commands.ts': { uses: ['node:fs', 'timers', 'Date.now'], why: 'join-resource waits (not moved yet)' },
  'src/daemon/role-commands.ts': { uses: ['Date.now'], why: 'how long a role change took (not moved yet)' },
  'src/daemon/cluster-ops.ts': { uses: ['timers'], why: 'wait-cluster polling (not moved yet)' },
  'src/daemon/join-protocol.ts': { uses: ['timers'], why: 'join timeouts (not moved yet)' },
  'src/sim/scheduler.ts': { uses: ['timers'], why: 'the simulator lets promises settle with one turn of the real event loop' },
  'src/cli/events.ts': { uses: ['timers', 'Date.now'], why: 'marsadm events: a command line client that follows marsd over time' },
  'src/metrics/http-server.ts': { uses: ['timers'], why: 'the HTTP listener of --metrics (its request timeouts)' },
  'src/metrics/observer.ts': { uses: ['timers'], why: 'samples the daemon for --metrics (not moved yet)' },
  'src/web/status-page-script.ts': { uses: ['timers', 'Date.now'], why: 'the status page script runs in the browser, not in marsd' },
};

/** Areas from the bottom up: an area imports only areas before it. */
const layers: string[][] = [['core'], ['storage', 'nbd', 'control', 'compress'], ['log', 'meta', 'space'], ['replay', 'net', 'strategy'], ['logger', 'fetch', 'sync'], ['daemon', 'sim', 'web'], ['metrics'], ['cli']];
/** The process entries stand above every area: they wire them together. */
const entries = new Set(['src/daemon/marsd-main.ts', 'src/cli/marsadm-main.ts']);
/** Imports of types only that point up, with why. */
const typeOnlyUp: Record<string, string> = {
  'src/core/env.ts -> storage': 'the host environment names the Storage interface it hands out',
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

/** The code without comments (a comment may name setTimeout). */
function code(path: string): string {
  return readFileSync(path, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

const files = sourceFiles('src');

test('nothing in src outside the listed edges uses global timers, Date.now, Math.random, node:fs or node:net', () => {
  assert.ok(files.length > 100, 'the sources were found (run from the repository root)');
  const offences: string[] = [];
  for (const f of files) {
    const text = code(f);
    const allowed = edges[f]?.uses ?? [];
    for (const [name, re] of Object.entries(patterns) as [Global, RegExp][]) {
      if (re.test(text) && !allowed.includes(name)) offences.push(`${f} uses ${name}`);
    }
  }
  assert.deepEqual(offences, [], 'take it from the host environment (src/core/env.ts), or list the file as an edge with why');
});

test('every listed edge still uses what it is allowed (the list only shrinks)', () => {
  const stale: string[] = [];
  for (const [f, { uses }] of Object.entries(edges)) {
    const text = code(f);
    for (const name of uses) if (!patterns[name].test(text)) stale.push(`${f} no longer uses ${name}`);
  }
  assert.deepEqual(stale, []);
});

test('every area imports only areas below it: no cycles between areas', () => {
  const rank = new Map<string, number>();
  layers.forEach((areas, i) => areas.forEach((a) => rank.set(a, i)));
  const offences: string[] = [];
  for (const f of files) {
    const area = f.split('/')[1]!;
    assert.ok(rank.has(area), `${f}: area ${area} has no layer`);
    if (entries.has(f)) continue;
    for (const m of code(f).matchAll(/^(?:import|export)\s+(type\s+)?[^;]*?from\s+'(\.[^']+)'/gm)) {
      const target = normalize(join(dirname(f), m[2]!)).split('/')[1]!;
      if (target === area) continue;
      if (rank.get(target)! < rank.get(area)!) continue;
      if (m[1] !== undefined && typeOnlyUp[`${f} -> ${target}`] !== undefined) continue;
      offences.push(`${f} imports ${target} (${m[2]!}), which is not below ${area}`);
    }
  }
  assert.deepEqual(offences, []);
});
