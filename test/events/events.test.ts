/**
 * `marsadm events` against three real daemons: `--now` prints the state and exits; a
 * planned handover and a split brain (made the portable way: fetch paused, a rotation on
 * the primary, a forced failover) each show as the right lines in order, and the split
 * brain's resolution too; a restart of marsd shows as daemon down and up in a stream that
 * goes on (and as the host's connection lost and back on another host's stream), and a
 * stream whose marsd does not come back exits 1 with one line.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Random } from '../../src/core/random.js';
import { marsadm, marsadmPath, waitFor } from '../support/processes.js';
import { cleanup, start, type TestHost } from '../support/cluster-helpers.js';
import { MiB, mustAdm, randomDevice, startCluster, waitCaughtUp } from '../support/replication-helpers.js';
import { setSwitch, writeSome } from '../support/roles-helpers.js';
import { devicePath } from '../support/observe-helpers.js';

const sizeBytes = 8 * MiB;
const seed = 83;

/** A running `marsadm events` whose lines are collected; stopped by PID. */
class EventStream {
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number>;
  private readonly child: ChildProcess;
  private partial = '';

  constructor(host: TestHost, ...args: string[]) {
    this.child = spawn(marsadmPath, ['--dir', host.dir, 'events', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => {
      const parts = (this.partial + d.toString()).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code ?? 128)));
  }

  /** Waits for a line matching `pattern` at or after index `from`; returns its index. */
  async next(pattern: RegExp, from: number, timeoutMs = 30_000): Promise<number> {
    let at = -1;
    await waitFor(`an events line ${pattern} after line ${from}`, () => {
      at = this.lines.findIndex((l, i) => i >= from && pattern.test(l));
      return at >= 0;
    }, timeoutMs, 50).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; lines: ${JSON.stringify(this.lines.slice(from))}`);
    });
    return at;
  }

  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    await this.exited;
  }
}

void describe('marsadm events', { timeout: 300_000 }, () => {
  let root = '';
  let hosts: TestHost[] = [];
  const random = new Random(seed);
  const streams: EventStream[] = [];
  const stream = (host: TestHost, ...args: string[]): EventStream => {
    const s = new EventStream(host, ...args);
    streams.push(s);
    return s;
  };

  before(async () => {
    ({ root, hosts } = await startCluster('mars-events', 3));
    for (const h of hosts) await randomDevice(devicePath(root, h), sizeBytes, seed + h.name.length);
    await mustAdm(hosts[0]!, 'create-resource', 'r0', devicePath(root, hosts[0]!));
    await writeSome(hosts[0]!, 'r0', sizeBytes, 20, random);
    await mustAdm(hosts[1]!, 'join-resource', 'r0', devicePath(root, hosts[1]!));
    await mustAdm(hosts[2]!, 'join-resource', 'r0', devicePath(root, hosts[2]!));
    await waitCaughtUp(hosts[0]!, hosts[1]!, 'r0', 120_000);
    await waitCaughtUp(hosts[0]!, hosts[2]!, 'r0', 120_000);
  });

  after(async () => {
    for (const s of streams) await s.stop();
    await cleanup(root, hosts);
  });

  void test('--now prints exists lines for the daemon, the hosts, the resource, its members and progress, then exists -, and exits 0', async () => {
    // Four marsadm processes that only read: side by side (each costs a node start).
    const [now, jsonNow, unknown, bad] = await Promise.all([
      mustAdm(hosts[2]!, 'events', 'r0', '--now'),
      mustAdm(hosts[2]!, 'events', '--json', '--now'),
      marsadm(hosts[2]!.dir, 'events', 'r9', '--now'),
      marsadm(hosts[2]!.dir, 'events', '--reconnect-timeout', '0'),
    ]);
    const out = now.trimEnd().split('\n');
    assert.equal(out[0], 'exists daemon name:gamma state:up');
    assert.deepEqual(out.slice(1, 4).map((l) => l.replace(/ address:\S+/, '')), ['exists host name:alpha state:alive', 'exists host name:beta state:alive', 'exists host name:gamma state:alive']);
    assert.match(out[4]!, /^exists resource name:r0 role:Secondary primary:alpha disk:UpToDate repl:Replicating consistent:yes split-brain:no emergency:no sync-mode:async$/);
    assert.match(out[5]!, /^exists member name:r0 peer:alpha role:Primary disk:UpToDate /);
    assert.match(out[6]!, /^exists member name:r0 peer:beta role:Secondary disk:(UpToDate|OutDated) /);
    assert.match(out[7]!, /^exists member name:r0 peer:gamma role:Secondary /);
    assert.equal(out[8], 'exists progress name:r0 sync-percent:100 sync-rest:0 fetch-rest:0 replay-rest:0');
    assert.deepEqual(out.slice(9), ['exists -']);
    const json = jsonNow.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(json[0], { type: 'exists', object: 'daemon', name: 'gamma', state: 'up' });
    assert.deepEqual(json.at(-1), { type: 'exists', object: '-' });
    assert.deepEqual([unknown.code, unknown.stdout, unknown.stderr], [1, '', 'marsadm: resource r9 does not exist on this host\n']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /expected whole seconds/);
  });

  void test('a planned handover: the new primary\'s stream and a third host\'s show the roles move, in order', async () => {
    const [, beta, gamma] = [hosts[0]!, hosts[1]!, hosts[2]!];
    const onGamma = stream(gamma, 'r0');
    const onBeta = stream(beta, 'r0');
    const gammaStart = await onGamma.next(/^exists -$/, 0);
    const betaStart = await onBeta.next(/^exists -$/, 0);
    await mustAdm(beta, 'primary', 'r0');
    const resourceMoved = await onGamma.next(/^change resource name:r0 role:Secondary primary:beta /, gammaStart);
    const alphaDown = await onGamma.next(/^change member name:r0 peer:alpha role:Secondary /, gammaStart);
    const betaUp = await onGamma.next(/^change member name:r0 peer:beta role:Primary /, gammaStart);
    assert.equal(betaUp, alphaDown + 1, 'one look moves the role: alpha gives it up, and beta takes it on the next line');
    assert.ok(resourceMoved > gammaStart);
    const serving = await onBeta.next(/^change resource name:r0 role:Primary primary:beta disk:UpToDate repl:Replicating consistent:yes split-brain:no /, betaStart);
    const before = onBeta.lines.slice(betaStart + 1, serving);
    assert.ok(before.every((l) => !/split-brain:yes/.test(l)), `no split brain on the way: ${JSON.stringify(before)}`);
    assert.ok(onGamma.lines.every((l) => !/split-brain:yes/.test(l)));
    await onGamma.stop();
    await onBeta.stop();
  });

  void test('a split brain after a forced failover shows on a third host after the new primary, and its resolution after it', async () => {
    const [alpha, beta, gamma] = [hosts[0]!, hosts[1]!, hosts[2]!];
    const onGamma = stream(gamma, 'r0', '--json');
    const start = await onGamma.next(/"object":"-"/, 0);
    for (const h of [alpha, gamma]) await setSwitch(h, 'r0', 'fetch', false);
    await writeSome(beta, 'r0', sizeBytes, 10, random);
    await mustAdm(beta, 'log-rotate', 'r0');
    await writeSome(beta, 'r0', sizeBytes, 5, random);
    await mustAdm(alpha, 'primary', 'r0', '--force', '--yes');
    for (const h of [alpha, gamma]) await setSwitch(h, 'r0', 'fetch', true);
    await writeSome(alpha, 'r0', sizeBytes, 10, random);
    const forced = await onGamma.next(/^\{"type":"change","object":"resource","name":"r0","role":"Secondary","primary":"alpha",/, start);
    const split = await onGamma.next(/^\{"type":"change","object":"resource","name":"r0",.*"split-brain":true/, start, 60_000);
    assert.ok(forced <= split, 'the new primary shows no later than the split brain');
    await mustAdm(beta, 'invalidate', 'r0');
    const resolved = await onGamma.next(/^\{"type":"change","object":"resource","name":"r0",.*"split-brain":false/, split, 90_000);
    assert.ok(resolved > split);
    await waitCaughtUp(alpha, beta, 'r0', 90_000);
    await onGamma.stop();
  });

  void test('a restart of marsd shows as daemon down, then up, in a stream that goes on, and as the host unreachable, then alive, on another; one whose marsd stays away exits 1', async () => {
    const gamma = hosts[2]!;
    const lasting = stream(gamma);
    const impatient = stream(gamma, '--reconnect-timeout', '1');
    const onAlpha = stream(hosts[0]!);
    const from = await lasting.next(/^exists -$/, 0);
    await impatient.next(/^exists -$/, 0);
    const alphaFrom = await onAlpha.next(/^exists -$/, 0);
    await gamma.daemon!.stop();
    gamma.daemon = undefined;
    const down = await lasting.next(/^change daemon name:gamma state:down$/, from);
    assert.equal(await impatient.exited, 1);
    assert.equal(impatient.stderr, 'marsadm: marsd has not come back within 1 s\n');
    await impatient.next(/^change daemon name:gamma state:down$/, 0);
    const lost = await onAlpha.next(/^change host name:gamma address:\S+ state:unreachable$/, alphaFrom);
    await start(gamma);
    await lasting.next(/^change daemon name:gamma state:up$/, down);
    await onAlpha.next(/^change host name:gamma address:\S+ state:alive$/, lost);
    await lasting.stop();
    await onAlpha.stop();
  });
});
