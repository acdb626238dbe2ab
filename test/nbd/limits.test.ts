/**
 * The NBD server's abuse limits, in process: connections per source address (other
 * 127.0.0.x addresses stand for other hosts), held-open handshakes and idle connections
 * evicted to make room, the export-wide limit, the idle timeout after the handshake, the
 * process-wide budget for buffered bytes with slow readers that never read their replies,
 * and the rate-limited refusal lines.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeOptionReplyHeader, encodeClientFlags, encodeGoRequest, encodeOption, encodeRequestHeader } from '../../src/nbd/codec.js';
import { NbdClient, NbdHandshakeError } from '../../src/nbd/client.js';
import type { NbdLimits } from '../../src/nbd/limits.js';
import { NbdClientFlag, NbdCommand, NbdMagic, NbdOption, NbdReply, NbdWire } from '../../src/nbd/protocol.js';
import { NbdRefusalLog } from '../../src/nbd/refusal-log.js';
import { GatedBackend, HOST, RawConnection, startServer, within, type TestServer, WAIT_MS_MAX } from './helpers.js';
import { waitFor } from '../support/wait.js';

const MiB = 1024 * 1024;
const OTHER = '127.0.0.2';

async function withServer(limits: Partial<NbdLimits>, body: (s: TestServer & { backend: GatedBackend }) => Promise<void>, sizeBytes = MiB): Promise<void> {
  const backend = new GatedBackend(sizeBytes);
  const s = await startServer({ disk: backend }, limits);
  try {
    await body({ ...s, backend });
  } finally {
    await s.close();
  }
}

/** A raw connection past the greeting, with the client flags sent. */
async function greeted(port: number, from?: string): Promise<RawConnection> {
  const raw = await RawConnection.open(port, from);
  await raw.read(NbdWire.GREETING_BYTES);
  raw.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
  return raw;
}

/** A raw connection in transmission on `disk`. */
async function transmitting(port: number, from?: string): Promise<RawConnection> {
  const raw = await greeted(port, from);
  raw.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'disk', infoRequests: [] })));
  for (;;) {
    const header = decodeOptionReplyHeader(await raw.read(NbdWire.OPTION_REPLY_HEADER_BYTES));
    assert.equal(header.magic, NbdMagic.OPTION_REPLY);
    await raw.read(header.lengthBytes);
    if (header.replyType === NbdReply.ACK) return raw;
    assert.equal(header.replyType, NbdReply.INFO);
  }
}

function client(port: number): Promise<NbdClient> {
  return NbdClient.connect({ host: HOST, port, exportName: 'disk', handshakeMsMax: 3_000 });
}

void test('connections from one address beyond the per-address limit are refused; another address is still served', async () => {
  await withServer({ connectionsPerAddressMax: 4, evictHandshakeMsMin: 60_000, refusalLogQuietMs: 60_000 }, async ({ port, server, logs }) => {
    const held = await Promise.all([1, 2, 3, 4].map(() => greeted(port, OTHER)));
    const refused: RawConnection[] = [];
    for (let i = 0; i < 20; i++) refused.push(await RawConnection.open(port, OTHER));
    for (const raw of refused) assert.equal((await raw.untilClosed()).length, 0, 'closed before the greeting');
    assert.equal(server.connectionCount(), 4);
    const c = await within(client(port), 3_000, 'a client from 127.0.0.1');
    assert.equal((await c.read(0, 4096)).length, 4096);
    await c.close();
    const lines = logs.filter((l) => l.startsWith(`refusing connection from ${OTHER}`));
    assert.equal(lines.length, 1, `one line for 20 refusals within the quiet period: ${lines.join(' | ')}`);
    for (const raw of held) raw.destroy();
  });
});

void test('handshakes held open are evicted to make room once they are older than evictHandshakeMsMin', async () => {
  await withServer({ connectionsMax: 8, evictHandshakeMsMin: 2_000 }, async ({ port, server }) => {
    const startedMs = Date.now();
    const held = await Promise.all(Array.from({ length: 8 }, () => greeted(port)));
    await waitFor('eight connections', () => server.connectionCount() === 8, WAIT_MS_MAX, 5);
    // Too young to be evicted: the newcomer is refused (checked only with a wide margin
    // before the held handshakes reach the eviction age, so a loaded machine cannot race it).
    if (Date.now() - startedMs < 1_000) {
      const early = await RawConnection.open(port);
      assert.equal((await early.untilClosed()).length, 0, 'refused while every handshake is young');
    }
    await waitFor('the held handshakes to age', () => Date.now() - startedMs >= 2_100, WAIT_MS_MAX, 5);
    const c = await within(client(port), 3_000, 'a client while the limit is held');
    assert.equal((await c.read(0, 512)).length, 512);
    await c.close();
    assert.ok(held.some((raw) => raw.closed), 'a held handshake made room');
    for (const raw of held) raw.destroy();
  });
});

void test('the export-wide limit refuses GO with NBD_REP_ERR_POLICY until a connection has been idle long enough to be evicted', async () => {
  await withServer({ exportConnectionsMax: 2, evictIdleMsMin: 300 }, async ({ port, server, logs }) => {
    const first = await client(port);
    const second = await client(port);
    const refused = await client(port).then(
      () => assert.fail('a third connection entered transmission'),
      (err: unknown) => err,
    );
    assert.ok(refused instanceof NbdHandshakeError, String(refused));
    assert.equal(refused.replyType, NbdReply.ERR_POLICY);
    assert.ok(logs.some((l) => l === 'refusing connection from 127.0.0.1 to export disk: export connection limit reached (2)'), logs.join('\n'));
    // first stays busy, second idles: the newcomer replaces second.
    const busy = setInterval(() => void first.read(0, 512).catch(() => undefined), 50);
    try {
      assert.equal(server.connectionCount('disk'), 2);
      const agedMs = Date.now() + 400;
      await waitFor('the idle client to age past evictIdleMsMin', () => Date.now() >= agedMs, WAIT_MS_MAX, 5);
      const third = await within(client(port), 3_000, 'a third client after the idle one aged');
      assert.equal((await third.read(0, 512)).length, 512);
      assert.equal((await first.read(0, 512)).length, 512, 'the busy client was kept');
      await assert.rejects(second.read(0, 512), 'the idle client was closed');
      await third.close();
    } finally {
      clearInterval(busy);
      await first.close().catch(() => undefined);
      await second.close().catch(() => undefined);
    }
  });
});

void test('a connection idle after its handshake is closed after idleMsMax and no longer counts as device open; a busy one stays', async () => {
  await withServer({ idleMsMax: 300 }, async ({ port, server }) => {
    const idle = await client(port);
    const busy = await client(port);
    assert.equal(server.connectionCount('disk'), 2);
    const startedMs = Date.now();
    while (Date.now() - startedMs < 900) {
      await busy.read(0, 512);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await waitFor('the idle client to be closed', () => server.connectionCount('disk') === 1, 3_000, 5);
    assert.equal((await busy.read(0, 512)).length, 512, 'the busy client is still served');
    await assert.rejects(idle.read(0, 512));
    await busy.close();
    await idle.close().catch(() => undefined);
  });
});

void test('64 slow readers of 32 MiB READs never hold more than the buffer budget; waiting ones proceed when bytes are taken, and all is returned', async () => {
  const limits: Partial<NbdLimits> = {
    bufferedBytesMax: 64 * MiB,
    bufferedBytesPerAddressMax: 64 * MiB,
    connectionsPerAddressMax: 100,
    exportConnectionsMax: 100,
  };
  await withServer(
    limits,
    async ({ port, server, backend }) => {
      const readers: RawConnection[] = [];
      for (let i = 0; i < 64; i++) {
        const raw = await transmitting(port);
        raw.socket.pause(); // never reads: the replies pile up on our side
        raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.READ, handle: BigInt(i), offsetBytes: 0, lengthBytes: 32 * MiB }));
        readers.push(raw);
      }
      await waitFor(`62 connections waiting for the budget (now ${server.budget.waiting})`, () => server.budget.waiting === 62, WAIT_MS_MAX, 5);
      assert.equal(backend.callCount, 2, 'only two READs reached the backend');
      assert.ok(server.budget.peakBytes <= 64 * MiB, `peak ${server.budget.peakBytes}`);
      assert.equal(server.budget.usedBytes, 64 * MiB);
      // One reader takes its reply: its bytes return, and one more READ proceeds.
      readers[0]!.socket.resume(); // the first READ sent holds bytes
      await waitFor('a waiting READ to reach the backend once bytes were taken', () => backend.callCount >= 3, WAIT_MS_MAX, 5);
      assert.ok(server.budget.peakBytes <= 64 * MiB, `peak ${server.budget.peakBytes}`);
      for (const raw of readers) raw.destroy();
      // A waiting READ that is woken by a closing neighbour before its own close is seen
      // still runs (up to 62 × 32 MiB copied): a bound for a machine under heavy load.
      await waitFor('every reader to be gone', () => server.connectionCount() === 0, 3 * WAIT_MS_MAX, 5);
      assert.equal(server.budget.usedBytes, 0, 'every byte returned');
      assert.equal(server.budget.waiting, 0);
      const c = await client(port);
      assert.equal((await c.read(0, 32 * MiB)).length, 32 * MiB);
      await c.close();
    },
    32 * MiB,
  );
});

void test('a reply left unread for replyStallMsMax drops the connection and returns its bytes', async () => {
  await withServer({ replyStallMsMax: 300 }, async ({ port, server }) => {
    const raw = await transmitting(port);
    raw.socket.pause();
    raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.READ, handle: 1n, offsetBytes: 0, lengthBytes: 32 * MiB }));
    await waitFor('the READ to hold its bytes', () => server.budget.usedBytes === 32 * MiB, WAIT_MS_MAX, 5);
    await waitFor('the stalled reader to be dropped', () => server.connectionCount() === 0, 5_000, 5);
    assert.equal(server.budget.usedBytes, 0);
    raw.destroy();
  }, 32 * MiB);
});

void test('a WRITE header whose payload does not follow within replyStallMsMax drops the connection and returns its bytes', async () => {
  await withServer({ replyStallMsMax: 300 }, async ({ port, server, backend }) => {
    const raw = await transmitting(port);
    raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.WRITE, handle: 1n, offsetBytes: 0, lengthBytes: 32 * MiB }));
    raw.write(Buffer.alloc(1024, 7));
    await waitFor('the WRITE header to take its bytes', () => server.budget.usedBytes === 32 * MiB, WAIT_MS_MAX, 5);
    await waitFor('the trickling writer to be dropped', () => server.connectionCount() === 0, 5_000, 5);
    assert.equal(server.budget.usedBytes, 0);
    assert.equal(backend.callCount, 0, 'nothing reached the backend');
    raw.destroy();
  }, 32 * MiB);
});

void test('the refusal log writes one line per address and reason per quiet period, then counts what it suppressed', () => {
  const lines: string[] = [];
  let now = 0;
  const log = new NbdRefusalLog((m) => lines.push(m), 1_000, () => now);
  for (let i = 0; i < 50; i++) log.refused('10.0.0.1', 'limit', 'refusing 10.0.0.1');
  log.refused('10.0.0.2', 'limit', 'refusing 10.0.0.2');
  log.refused('10.0.0.1', 'other', 'other 10.0.0.1');
  assert.deepEqual(lines, ['refusing 10.0.0.1', 'refusing 10.0.0.2', 'other 10.0.0.1']);
  now = 1_000;
  log.refused('10.0.0.1', 'limit', 'refusing 10.0.0.1');
  assert.equal(lines.at(-1), 'refusing 10.0.0.1 (49 more like it from 10.0.0.1 not logged)');
  log.refused('10.0.0.1', 'limit', 'refusing 10.0.0.1');
  assert.equal(lines.length, 4);
});
