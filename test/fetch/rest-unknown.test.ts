/**
 * A fetch client that has not yet heard the source's list of logs does not know how much
 * it lacks: its fetch-rest is unknown (null), never 0. A secondary restarted while its
 * primary is unreachable would otherwise say "nothing to fetch" while it is far behind,
 * and a script that waits for fetch-rest 0 would pass too early.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalCopies } from '../../src/fetch/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { dialer, newClient, Primary, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';

void test('after a restart, fetch-rest is unknown until the source has listed its logs, then a number', { timeout: 30_000 }, async () => {
  const primary = await Primary.open('alpha', 91);
  await primary.append(40);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const local = new MemStorage();
  // Before the restart: the copy holds everything the primary had made durable.
  const first = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', server), 92);
  first.start();
  await waitFor('the first copy to catch up', () => first.status().state === 'caught-up' && first.status().localBytes === primary.durableBytes(), 10_000, 5);
  assert.equal(first.status().fetchRestBytes, 0);
  await first.stop();
  // While this host is down, the primary writes on.
  await primary.append(60);
  await primary.sync();

  // Restarted with the primary unreachable: every dial fails until it is let through.
  let reachable = false;
  let refusedDials = 0;
  const dialAlpha = dialer('beta', 'alpha', server);
  const copies = await LocalCopies.open(local);
  const client = newClient(copies, () => {
    if (reachable) return dialAlpha();
    refusedDials++;
    return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1'), { code: 'ECONNREFUSED' }));
  }, 93);
  try {
    assert.equal(client.status().fetchRestBytes, null, 'not started: unknown');
    client.start();
    await waitFor('two refused dials', () => refusedDials >= 2, 10_000, 5);
    const unheard = client.status();
    assert.equal(unheard.state, 'source-unreachable');
    assert.ok(unheard.localBytes > 0, 'the copy from before the restart is there');
    assert.equal(unheard.fetchRestBytes, null, 'the source has not been heard: fetch-rest is unknown, not 0');

    reachable = true;
    await waitFor('fetch-rest to be known', () => client.status().fetchRestBytes !== null, 10_000, 5);
    await waitFor('the copy to catch up', () => client.status().state === 'caught-up' && client.status().localBytes === primary.durableBytes(), 10_000, 5);
    assert.equal(client.status().fetchRestBytes, 0);
  } finally {
    await client.stop();
    await server.close();
  }
});

void test('fetch-rest stays known after the link to the source breaks', { timeout: 30_000 }, async () => {
  const primary = await Primary.open('alpha', 94);
  await primary.append(20);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const client = newClient(await LocalCopies.open(new MemStorage()), dialer('beta', 'alpha', server), 95);
  try {
    client.start();
    await waitFor('caught up', () => client.status().state === 'caught-up' && client.status().localBytes === primary.durableBytes(), 10_000, 5);
    await server.close();
    await waitFor('the link to close', () => client.status().state === 'source-unreachable', 10_000, 5);
    assert.equal(client.status().fetchRestBytes, 0, 'what the source said last is still what this host knows');
  } finally {
    await client.stop();
  }
});
