/**
 * Peer traffic over TLS between real daemons (`marsd --tls`, `join-cluster --tls`), with
 * a self-signed certificate per host; a host that does not speak TLS cannot join.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../support/processes.js';
import { findTool } from '../support/daemon-helpers.js';
import { cleanup, clusterRoot, createCluster, joinCluster, newHost, start, waitHosts, type TestHost } from '../support/cluster-helpers.js';

const hosts: TestHost[] = [];
let root = '';

after(async () => {
  await cleanup(root, hosts);
});

async function selfSigned(host: TestHost): Promise<void> {
  await mkdir(host.dir, { recursive: true, mode: 0o700 });
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(host.dir, 'tls.key'), '-out', join(host.dir, 'tls.crt'), '-days', '1', '-subj', `/CN=${host.name}`];
  const r = await run('openssl', args, { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
}

void test('hosts with --tls form a cluster; a host without TLS cannot join it', { skip: findTool('openssl') === undefined ? 'needs openssl' : false, timeout: 60_000 }, async () => {
  root = await clusterRoot('mars-tls');
  const [t1, t2, plain] = [await newHost(root, 't1', '127.0.0.1'), await newHost(root, 't2', '127.0.0.2'), await newHost(root, 'plain', '127.0.0.3')];
  hosts.push(t1, t2);
  for (const h of [t1, t2]) await selfSigned(h);
  await createCluster(t1);
  await start(t1, ['--tls']);
  const joined = await joinCluster(t2, t1, t1, '--tls');
  assert.equal(joined.code, 0, joined.stderr);
  await start(t2, ['--tls']);
  await waitHosts(t1, { t1: 'alive', t2: 'alive' });
  await waitHosts(t2, { t1: 'alive', t2: 'alive' });
  const refused = await joinCluster(plain, t1);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /cannot reach a member/);
});
