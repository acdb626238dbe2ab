/**
 * A source that does not serve the resource for a while (its marsd restarts and recovers
 * the resource before it serves it again) refuses with noResource: the client waits for
 * it (source-unreachable, which a member shows as PrimaryUnreachable), saying why, and goes on by itself once it serves again. It never fails for that.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FetchServer, LocalCopies, type FetchState } from '../../src/fetch/index.js';
import { PeerServer } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { assertCopiesEqual, clusterId, dialer, newClient, Primary, resource, secret } from './helpers.js';
import { waitFor } from '../support/wait.js';

void test('a source that does not serve the resource yet is waited for, never a failure, and fetch goes on once it serves', { timeout: 30_000 }, async () => {
  const primary = await Primary.open('alpha', 61);
  await primary.append(40);
  await primary.sync();
  let serving = false;
  let refusals = 0;
  const fetch = new FetchServer({
    sources: (name) => {
      if (name !== resource) return undefined;
      if (!serving) refusals++;
      return serving ? primary.source : undefined;
    },
  });
  const peer = await PeerServer.listen({
    listenHost: '127.0.0.1',
    port: 0,
    auth: { secret, clusterId, localHost: 'alpha' },
    onLink: (link) => (link.info.channel === 'fetch' ? fetch.adopt(link) : link.close()),
  });
  const local = new MemStorage();
  const states: { state: FetchState; message: string | undefined }[] = [];
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', peer), 62, {
    startLogNumber: 1,
    onStatus: (s) => states.push({ state: s.state, message: s.error?.message }),
  });
  try {
    client.start();
    await waitFor('the source refuses three times', () => refusals >= 3, 10_000, 5);
    assert.ok(!states.some((s) => s.state === 'failed'), `states while refused: ${JSON.stringify(states)}`);
    assert.equal(client.status().state, 'source-unreachable', 'shown as PrimaryUnreachable, not Failed');
    assert.match(client.status().error?.message ?? '', /does not serve resource r1 now/);
    serving = true;
    await waitFor('the copy reaches the durable end', () => (local.image(primary.logName(1))?.length ?? 0) === primary.durableBytes(), 10_000, 5);
    await assertCopiesEqual(primary.storage, local, 'after the source served again');
    assert.ok(!states.some((s) => s.state === 'failed'), JSON.stringify(states));
  } finally {
    await client.stop();
    fetch.close();
    await peer.close();
  }
});
