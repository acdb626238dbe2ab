/**
 * A member turned forger, against real daemons: it holds the secret and connects under a
 * new name, pushes a host record of another host (its own address, its own key) and then
 * tries to authenticate as that host. The record is refused and logged, the victim's
 * name cannot be taken, and the real host reconnects after a restart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSecretFile } from '../../src/daemon/identity.js';
import { canonicalJson, dataKey, desiredKey, encodeMetaMessage, hostKey, hostRecordValue, type JsonValue, type KeyedEntry } from '../../src/meta/index.js';
import { liveEntry } from '../../src/meta/entry.js';
import { signEntry, testSigningKey } from '../../src/meta/signing.js';
import { dialPeer, FrameType, type PeerLink } from '../../src/net/index.js';
import { stderrLines } from '../support/daemon-helpers.js';
import { cleanup, clusterRoot, createCluster, joinCluster, metaValue, must, newHost, recordFields, start, viewHosts, waitHosts, type TestHost } from '../support/cluster-helpers.js';
import { adm } from '../support/adm.js';
import { sparseFile, waitFor } from '../support/processes.js';

const forgerIp = '127.0.0.5';
const forgerAddress = `${forgerIp}:7999`;
const forgerKey = testSigningKey('mallory');

void describe('a member that forges another host', { timeout: 120_000 }, () => {
  let root = '';
  let alpha: TestHost;
  let beta: TestHost;
  let secret: Buffer;
  let clusterId = '';
  let betaDisk = '';
  let victim = '';
  const victimBytes = Buffer.alloc(64 * 1024, 0x42);

  before(async () => {
    root = await clusterRoot('mars-forgery');
    alpha = await newHost(root, 'alpha', '127.0.0.1');
    beta = await newHost(root, 'beta', '127.0.0.2');
    await createCluster(alpha);
    await start(alpha);
    assert.equal((await joinCluster(beta, alpha)).code, 0);
    await start(beta);
    await waitHosts(alpha, { alpha: 'alive', beta: 'alive' });
    secret = await readSecretFile(join(alpha.dir, 'cluster.secret'));
    clusterId = (JSON.parse(await readFile(join(alpha.dir, 'host.json'), 'utf8')) as { clusterId: string }).clusterId;
    await must(adm(alpha.dir, 'create-resource', 'r2', await sparseFile(join(root, 'alpha-r2'), 4 * 1024 * 1024)), 'create-resource r2');
    betaDisk = await sparseFile(join(root, 'beta-r2'), 4 * 1024 * 1024);
    await must(adm(beta.dir, 'join-resource', 'r2', betaDisk), 'join-resource r2');
    await must(adm(beta.dir, 'wait-cluster', '--timeout', '20'), 'wait-cluster');
    victim = join(root, 'victim');
    await writeFile(victim, victimBytes);
  });

  after(async () => {
    await cleanup(root, [alpha, beta]);
  });

  function dial(to: TestHost, as: string): Promise<PeerLink> {
    const [host, port] = to.listen.split(':');
    return dialPeer({ host: host!, port: Number(port), localAddress: forgerIp, auth: { secret, clusterId, localHost: as, signingKey: forgerKey }, peerHost: to.name, channel: 'meta' });
  }

  function dialAlpha(as: string): Promise<PeerLink> {
    return dial(alpha, as);
  }

  /** A version of another host's key, signed by the forger. */
  function forged(key: string, owner: string, value: JsonValue): KeyedEntry {
    return { key, entry: signEntry(key, liveEntry(canonicalJson(value)!, BigInt(Date.now()) * 1000n + 20_000n, owner), forgerKey) };
  }

  function refusedFromMallory(host: TestHost): number {
    return stderrLines(host.daemon!).filter((l) => l['code'] === 'META_BAD_SIGNATURE' && String(l['peer']).startsWith('mallory')).length;
  }

  function record(name: string, resources: string[], aheadUs = 5_000n): KeyedEntry {
    const value = canonicalJson(hostRecordValue({ address: forgerAddress, resources, signKey: forgerKey.publicKeyText }))!;
    const stamp = BigInt(Date.now()) * 1000n + aheadUs;
    return { key: hostKey(name), entry: signEntry(hostKey(name), liveEntry(value, stamp, name), forgerKey) };
  }

  void test('its record of another host is refused and logged, and it cannot authenticate under that name', async () => {
    const betaRecord = await metaValue(alpha, hostKey('beta'));
    const link = await dialAlpha('mallory');
    const entries = [record('mallory', []), record('beta', [])];
    assert.ok(link.send(FrameType.meta, encodeMetaMessage({ type: 'push', sentLamport: BigInt(Date.now()) * 1000n, entries })));
    await waitFor('the forged record to be refused', () => stderrLines(alpha.daemon!).some((l) => l['code'] === 'META_BAD_SIGNATURE' && String(l['peer']).startsWith('mallory')), 10_000);
    link.close();
    await must(adm(alpha.dir, 'wait-cluster', '--timeout', '10').catch(() => ({ code: 0, stdout: '', stderr: '' })), 'settle');
    assert.deepEqual(await metaValue(alpha, hostKey('beta')), betaRecord, 'beta\'s record is beta\'s');
    assert.deepEqual(recordFields(await metaValue(beta, hostKey('beta'))), recordFields(betaRecord));
    await assert.rejects(dialAlpha('beta'), (err: { code?: string }) => err.code === 'HOST_MISMATCH');
  });

  void test('its device path and switches for other hosts are refused by the victims; nothing changes there', async () => {
    // Under a second new name: refusals are logged once a minute per peer and reason.
    const entries = [record('mallory2', ['r2'], 10_000n), forged(desiredKey('r2', 'alpha'), 'alpha', { attach: false }), forged(dataKey('r2', 'beta'), 'beta', victim), forged(desiredKey('r2', 'beta'), 'beta', { attach: true })];
    for (const victimHost of [alpha, beta]) {
      const before = refusedFromMallory(victimHost);
      const link = await dial(victimHost, 'mallory2');
      assert.ok(link.send(FrameType.meta, encodeMetaMessage({ type: 'push', sentLamport: BigInt(Date.now()) * 1000n, entries })));
      await waitFor(`the forgeries to be refused on ${victimHost.name}`, () => refusedFromMallory(victimHost) > before, 10_000);
      link.close();
    }
    await must(adm(beta.dir, 'wait-cluster', '--timeout', '10').catch(() => ({ code: 0, stdout: '', stderr: '' })), 'settle');
    for (const h of [alpha, beta]) {
      assert.deepEqual(await metaValue(h, desiredKey('r2', 'alpha')), { attach: true }, `desired/alpha on ${h.name}`);
      assert.equal(await metaValue(h, dataKey('r2', 'beta')), betaDisk, `data/beta on ${h.name}`);
    }
    assert.equal((await metaValue(alpha, 'resource/r2/actual/alpha') as { state?: string }).state, 'serving');
    assert.deepEqual(await readFile(victim), victimBytes, 'the file named by the forger is untouched');
  });

  void test('the real host reconnects after a restart', async () => {
    await beta.daemon!.kill9();
    beta.daemon = undefined;
    await start(beta);
    await waitFor('beta alive on alpha', async () => (await viewHosts(alpha)).some((l) => l.name === 'beta' && l.state === 'alive'), 20_000);
    assert.equal((await viewHosts(alpha)).find((l) => l.name === 'beta')?.address, beta.listen);
    await assert.rejects(dialAlpha('beta'), (err: { code?: string }) => err.code === 'HOST_MISMATCH');
  });
});
