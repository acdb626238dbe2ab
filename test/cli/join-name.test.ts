/**
 * A host name is taken at join-cluster time: a second host that joins under a name
 * another host has just joined with (its marsd not started yet) is refused, while the
 * first host's own retry from its address is not. Real daemon on 127.0.0.1, joiners on
 * 127.0.0.2 and .3.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { freePort, marsadm } from '../support/processes.js';
import { cleanup, clusterRoot, createCluster, newHost, secretFile, start, type TestHost } from '../support/cluster-helpers.js';

const hosts: TestHost[] = [];
let root = '';

after(async () => {
  await cleanup(root, hosts);
});

void test('a name taken by a join whose marsd has not started is refused to a second joiner', { timeout: 60_000 }, async () => {
  root = await clusterRoot('mars-jname');
  const alpha = await newHost(root, 'alpha', '127.0.0.1');
  hosts.push(alpha);
  await createCluster(alpha);
  await start(alpha);
  const join1 = async (dir: string, ip: string): Promise<{ code: number; stderr: string }> =>
    marsadm(join(root, dir), 'join-cluster', alpha.listen, '--host', 'gamma', '--listen', `${ip}:${await freePort(ip)}`, '--secret-file', secretFile(alpha));
  const first = await join1('gamma-1', '127.0.0.2');
  assert.equal(first.code, 0, first.stderr);
  const second = await join1('gamma-2', '127.0.0.3');
  assert.equal(second.code, 1, 'the second gamma is refused');
  assert.match(second.stderr, /^marsadm: join refused: the cluster at 127\.0\.0\.1:\d+ already has a host named gamma \(it may have joined from another address without starting marsd yet\)\n$/);
  const retry = await join1('gamma-3', '127.0.0.2');
  assert.equal(retry.code, 0, `the first joiner's address may join again: ${retry.stderr}`);
});
