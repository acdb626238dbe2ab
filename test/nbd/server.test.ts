import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { MarsError } from '../../src/core/errors.js';
import { NbdClient, NbdHandshakeError, NbdRequestError } from '../../src/nbd/client.js';
import { encodeClientFlags, encodeGoRequest, encodeOption, encodeRequestHeader } from '../../src/nbd/codec.js';
import { MemBackend } from '../../src/nbd/mem-backend.js';
import {
  NbdClientFlag,
  NbdCommand,
  NbdCommandFlag,
  NbdErrno,
  NbdMagic,
  NbdOption,
  NbdReply,
  NbdTransmissionFlag,
} from '../../src/nbd/protocol.js';
import {
  FailingBackend,
  GatedBackend,
  HOST,
  RawConnection,
  startMemServer,
  startServer,
  within,
  WAIT_MS_MAX,
} from './helpers.js';
import { waitFor } from '../support/wait.js';

const MiB = 1024 * 1024;

function connect(port: number, exportName = 'disk'): Promise<NbdClient> {
  return NbdClient.connect({ host: HOST, port, exportName });
}

async function rejectsWith(promise: Promise<unknown>, nbdError: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof NbdRequestError && err.nbdError === nbdError);
}

function pattern(lengthBytes: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

void test('the client learns size, transmission flags and block sizes', async () => {
  const s = await startMemServer(3 * MiB);
  const client = await connect(s.port);
  try {
    assert.equal(client.sizeBytes, 3 * MiB);
    const F = NbdTransmissionFlag;
    assert.equal(client.transmissionFlags, F.HAS_FLAGS | F.SEND_FLUSH | F.SEND_FUA | F.SEND_TRIM | F.SEND_WRITE_ZEROES | F.CAN_MULTI_CONN);
    assert.deepEqual(client.blockSize, { minBytes: 1, preferredBytes: 4096, maxBytes: 32 * MiB });
  } finally {
    await client.close();
    await s.close();
  }
});

void test('CAN_MULTI_CONN is only offered when the backend says so', async () => {
  const s = await startServer({ single: new GatedBackend(4096, false) });
  const client = await connect(s.port, 'single');
  try {
    assert.equal(client.transmissionFlags & NbdTransmissionFlag.CAN_MULTI_CONN, 0);
  } finally {
    await client.close();
    await s.close();
  }
});

void test('NbdClient.list returns the export names', async () => {
  const s = await startServer({ one: new MemBackend(512), two: new MemBackend(512) });
  try {
    assert.deepEqual((await NbdClient.list({ host: HOST, port: s.port })).sort(), ['one', 'two']);
  } finally {
    await s.close();
  }
});

void test('connecting to an unknown export fails with NBD_REP_ERR_UNKNOWN', async () => {
  const s = await startMemServer();
  try {
    await assert.rejects(connect(s.port, 'missing'), (err: unknown) => err instanceof NbdHandshakeError && err.replyType === NbdReply.ERR_UNKNOWN);
  } finally {
    await s.close();
  }
});

void test('writes, reads, flush, trim and write-zeroes round-trip', async () => {
  const s = await startMemServer(MiB);
  const client = await connect(s.port);
  try {
    const data = pattern(10_000, 1);
    await client.write(1234, data);
    assert.deepEqual(await client.read(1234, 10_000), data);
    await client.write(500_000, pattern(4096, 2), { fua: true });
    await client.flush();
    assert.deepEqual(await client.read(500_000, 4096), pattern(4096, 2));
    await client.trim(2000, 1000);
    await client.writeZeroes(6000, 3000, { noHole: true, fua: true });
    const expected = Buffer.from(data);
    expected.fill(0, 2000 - 1234, 3000 - 1234);
    expected.fill(0, 6000 - 1234, 9000 - 1234);
    assert.deepEqual(await client.read(1234, 10_000), expected);
    assert.deepEqual(s.backend.snapshot().subarray(1234, 11_234), expected);
    assert.equal((await client.read(0, 0)).length, 0);
    await client.write(MiB - 1, Buffer.from([7]));
    assert.deepEqual(await client.read(MiB - 1, 1), Buffer.from([7]));
  } finally {
    await client.close();
    await s.close();
  }
});

void test('requests past the end: NBD_ENOSPC for writes and write-zeroes, NBD_EINVAL for reads and trims', async () => {
  const s = await startMemServer(MiB);
  const client = await connect(s.port);
  try {
    await rejectsWith(client.read(MiB - 10, 11), NbdErrno.EINVAL);
    await rejectsWith(client.read(MiB + 1, 0), NbdErrno.EINVAL);
    await rejectsWith(client.read(2 ** 53, 1), NbdErrno.EINVAL);
    await rejectsWith(client.request({ type: NbdCommand.READ, offsetBytes: 2 ** 64 - 4096, lengthBytes: 4096 }), NbdErrno.EINVAL);
    await rejectsWith(client.trim(MiB, 1), NbdErrno.EINVAL);
    await rejectsWith(client.write(MiB - 2, Buffer.alloc(3, 1)), NbdErrno.ENOSPC);
    await rejectsWith(client.writeZeroes(MiB - 2, 3), NbdErrno.ENOSPC);
    assert.ok(s.backend.snapshot().equals(Buffer.alloc(MiB)), 'nothing was written');
    assert.deepEqual(await client.read(MiB - 4, 4), Buffer.alloc(4));
  } finally {
    await client.close();
    await s.close();
  }
});

void test('oversize reads and writes get NBD_EINVAL; the write payload is skipped and the connection goes on', async () => {
  const s = await startMemServer(MiB, { requestBytesMax: 64 * 1024, inflightBytesMax: 64 * 1024 });
  const client = await connect(s.port);
  try {
    assert.equal(client.blockSize?.maxBytes, 64 * 1024);
    await rejectsWith(client.read(0, 64 * 1024 + 1), NbdErrno.EINVAL);
    const big = Buffer.alloc(200 * 1024, 0x5a);
    // The payload of the refused write must not be taken for request headers.
    big.writeUInt32BE(NbdMagic.REQUEST, 0);
    await rejectsWith(client.write(0, big), NbdErrno.EINVAL);
    assert.ok(s.backend.snapshot().equals(Buffer.alloc(MiB)));
    await client.write(0, Buffer.alloc(64 * 1024, 1));
    assert.deepEqual(await client.read(0, 64 * 1024), Buffer.alloc(64 * 1024, 1));
    await client.writeZeroes(0, MiB);
    assert.deepEqual(await client.read(0, 16), Buffer.alloc(16));
  } finally {
    await client.close();
    await s.close();
  }
});

void test('unknown commands, unknown flags and a FLUSH with a range get NBD_EINVAL; the connection goes on', async () => {
  const s = await startMemServer(MiB);
  const client = await connect(s.port);
  try {
    await rejectsWith(client.request({ type: 42, offsetBytes: 0, lengthBytes: 512 }), NbdErrno.EINVAL);
    await rejectsWith(client.request({ type: NbdCommand.BLOCK_STATUS, offsetBytes: 0, lengthBytes: 512 }), NbdErrno.EINVAL);
    await rejectsWith(client.request({ type: NbdCommand.CACHE, offsetBytes: 0, lengthBytes: 512 }), NbdErrno.EINVAL);
    await rejectsWith(client.request({ type: NbdCommand.READ, flags: NbdCommandFlag.DF, lengthBytes: 512, replyBytes: 512 }), NbdErrno.EINVAL);
    await rejectsWith(client.request({ type: NbdCommand.READ, flags: 0x100, lengthBytes: 512, replyBytes: 512 }), NbdErrno.EINVAL);
    await rejectsWith(client.request({ type: NbdCommand.TRIM, flags: NbdCommandFlag.NO_HOLE, lengthBytes: 512 }), NbdErrno.EINVAL);
    await rejectsWith(client.request({ type: NbdCommand.WRITE_ZEROES, flags: NbdCommandFlag.FAST_ZERO, lengthBytes: 512 }), NbdErrno.EINVAL);
    await rejectsWith(
      client.request({ type: NbdCommand.WRITE, flags: NbdCommandFlag.DF, payload: Buffer.alloc(512, 9) }),
      NbdErrno.EINVAL,
    );
    await rejectsWith(client.request({ type: NbdCommand.FLUSH, offsetBytes: 0, lengthBytes: 1 }), NbdErrno.EINVAL);
    // FUA is accepted on every command.
    await client.request({ type: NbdCommand.FLUSH, flags: NbdCommandFlag.FUA });
    assert.ok(s.backend.snapshot().equals(Buffer.alloc(MiB)));
    await client.write(0, Buffer.from('still here'));
    assert.equal((await client.read(0, 10)).toString(), 'still here');
  } finally {
    await client.close();
    await s.close();
  }
});

void test('unaligned requests get NBD_EINVAL when blockBytesMin is 512', async () => {
  const s = await startMemServer(MiB, { blockBytesMin: 512 });
  const client = await connect(s.port);
  try {
    assert.equal(client.blockSize?.minBytes, 512);
    await rejectsWith(client.read(1, 512), NbdErrno.EINVAL);
    await rejectsWith(client.write(512, Buffer.alloc(100)), NbdErrno.EINVAL);
    await client.write(512, Buffer.alloc(512, 3));
    assert.deepEqual(await client.read(512, 512), Buffer.alloc(512, 3));
  } finally {
    await client.close();
    await s.close();
  }
});

void test('backend errors map to NBD errors', async () => {
  const cases: [string, () => Error, boolean, number][] = [
    ['enospc', () => new MarsError('ENOSPC', 'full'), false, NbdErrno.ENOSPC],
    ['einval', () => new MarsError('EINVAL', 'bad'), false, NbdErrno.EINVAL],
    ['eoverflow', () => new MarsError('EOVERFLOW', 'big'), false, NbdErrno.EOVERFLOW],
    ['shutdown', () => new MarsError('SHUTTING_DOWN', 'bye'), false, NbdErrno.ESHUTDOWN],
    ['corrupt', () => new MarsError('LOG_CORRUPT', 'bad log'), false, NbdErrno.EIO],
    ['plain', () => new Error('boom'), false, NbdErrno.EIO],
    ['sync', () => new MarsError('ENOSPC', 'thrown'), true, NbdErrno.ENOSPC],
  ];
  const s = await startServer(Object.fromEntries(cases.map(([name, error, sync]) => [name, new FailingBackend(MiB, error, sync)])));
  try {
    for (const [name, , , expected] of cases) {
      const client = await connect(s.port, name);
      await rejectsWith(client.read(0, 512), expected);
      await rejectsWith(client.write(0, Buffer.alloc(512)), expected);
      await rejectsWith(client.flush(), expected);
      await rejectsWith(client.trim(0, 512), expected);
      await rejectsWith(client.writeZeroes(0, 512), expected);
      await client.close();
    }
    assert.ok(s.logs.some((line) => line.includes('boom')), 'backend errors are logged');
  } finally {
    await s.close();
  }
});

void test('replies leave out of order: a slow first read does not hold back a later one', async () => {
  const backend = new GatedBackend(MiB);
  const s = await startServer({ disk: backend });
  const client = await connect(s.port);
  try {
    await client.write(0, pattern(8192, 5));
    const gate = backend.hold((op, offset) => op === 'read' && offset === 0);
    const order: string[] = [];
    const slow = client.read(0, 4096).then((data) => (order.push('slow'), data));
    const fast = client.read(4096, 4096).then((data) => (order.push('fast'), data));
    assert.deepEqual(await within(fast, WAIT_MS_MAX, 'the fast read'), pattern(8192, 5).subarray(4096));
    assert.equal(gate.heldCount(), 1);
    gate.release();
    assert.deepEqual(await slow, pattern(8192, 5).subarray(0, 4096));
    assert.deepEqual(order, ['fast', 'slow']);
  } finally {
    await client.close();
    await s.close();
  }
});

void test('many pipelined requests complete with at most inflightRequestsMax in the backend', async () => {
  const backend = new GatedBackend(MiB);
  const s = await startServer({ disk: backend }, { inflightRequestsMax: 4 });
  const client = await connect(s.port);
  try {
    const gate = backend.hold(() => true);
    const writes = Array.from({ length: 100 }, (_, i) => client.write(i * 4096, pattern(4096, i)));
    await waitFor('four held requests', () => gate.heldCount() === 4, WAIT_MS_MAX, 5);
    assert.equal(backend.callCount, 4, 'the server stops reading when four requests are in flight');
    gate.release();
    await Promise.all(writes);
    const reads = await Promise.all(Array.from({ length: 100 }, (_, i) => client.read(i * 4096, 4096)));
    reads.forEach((data, i) => assert.deepEqual(data, pattern(4096, i)));
    assert.ok(backend.activeCallsMax <= 4);
  } finally {
    await client.close();
    await s.close();
  }
});

void test('a client that does not read its replies stops being read from (write backpressure)', async () => {
  const backend = new GatedBackend(MiB);
  const s = await startServer({ disk: backend });
  const raw = await RawConnection.open(s.port);
  try {
    await raw.read(18);
    raw.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
    raw.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('disk')));
    await raw.read(10);
    raw.socket.pause();
    const count = 200;
    const lengthBytes = 256 * 1024;
    for (let i = 0; i < count; i++) {
      raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.READ, handle: BigInt(i), offsetBytes: 0, lengthBytes }));
    }
    // Wait until the server has stopped calling the backend, then check it stopped early.
    let last = -1;
    await waitFor('the server to stall', () => {
      const stable = backend.callCount === last && backend.activeCalls === 0;
      last = backend.callCount;
      return stable && last > 0;
    }, WAIT_MS_MAX, 5);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(backend.callCount < count, `server read ${backend.callCount} of ${count} requests while replies were not read`);
    raw.socket.resume();
    const replies = await raw.read(count * (16 + lengthBytes)).catch(() => undefined);
    assert.ok(replies, 'all replies arrive once the client reads');
    assert.equal(backend.callCount, count);
  } finally {
    raw.destroy();
    await s.close();
  }
});

void test('garbage and a client vanishing mid-payload end only their own connections', async () => {
  const s = await startMemServer(MiB);
  const good = await connect(s.port);
  try {
    await good.write(0, pattern(65536, 9));
    const garbage = await RawConnection.open(s.port);
    garbage.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(10)));
    const vanishing = await RawConnection.open(s.port);
    await vanishing.read(18);
    vanishing.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
    vanishing.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'disk', infoRequests: [] })));
    const badMagic = await RawConnection.open(s.port);
    await badMagic.read(18);
    badMagic.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
    badMagic.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('disk')));
    await badMagic.read(10);
    badMagic.write(Buffer.alloc(28, 0xee));
    await badMagic.untilClosed();
    await waitFor('the GO reply', () => vanishing.queue.lengthBytes > 0, WAIT_MS_MAX, 5);
    vanishing.write(encodeRequestHeader({ flags: 0, type: NbdCommand.WRITE, handle: 1n, offsetBytes: 0, lengthBytes: 65536 }));
    vanishing.write(Buffer.alloc(1000, 0xff));
    vanishing.destroy();
    await garbage.untilClosed();
    await waitFor('only the good connection to remain', () => s.server.connectionCount() === 1, WAIT_MS_MAX, 5);
    assert.deepEqual(await good.read(0, 65536), pattern(65536, 9), 'the half-sent write was not applied');
    await good.write(65536, pattern(4096, 10));
    assert.deepEqual(await good.read(65536, 4096), pattern(4096, 10));
    assert.ok(s.logs.some((line) => line.includes('bad request magic')));
    await waitFor('the mid-payload disconnect to be noticed', () => s.logs.some((line) => line.includes('in the middle of a request')), WAIT_MS_MAX, 5);
  } finally {
    await good.close();
    await s.close();
  }
});

void test('connectionCount counts per export and closeExport disconnects only that export', async () => {
  const s = await startServer({ a: new MemBackend(MiB), b: new MemBackend(MiB) });
  const a1 = await connect(s.port, 'a');
  const a2 = await connect(s.port, 'a');
  const b1 = await connect(s.port, 'b');
  try {
    assert.equal(s.server.connectionCount('a'), 2);
    assert.equal(s.server.connectionCount('b'), 1);
    assert.equal(s.server.connectionCount('c'), 0);
    assert.equal(s.server.connectionCount(), 3);
    await within(s.server.closeExport('a'), WAIT_MS_MAX, 'closeExport');
    assert.equal(s.server.connectionCount('a'), 0);
    await assert.rejects(a1.read(0, 1));
    await assert.rejects(a2.read(0, 1));
    await b1.write(0, Buffer.from('b'));
    assert.equal((await b1.read(0, 1)).toString(), 'b');
  } finally {
    await b1.close();
    await s.close();
  }
});

void test('close() answers in-flight requests before it ends the connections', async () => {
  const backend = new GatedBackend(MiB);
  const s = await startServer({ disk: backend });
  const client = await connect(s.port);
  const gate = backend.hold((op) => op === 'write');
  const write = client.write(0, Buffer.from('last words'));
  await waitFor('the held write', () => gate.heldCount() === 1, WAIT_MS_MAX, 5);
  let closed = false;
  const closing = s.close().then(() => (closed = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(closed, false, 'close waits for the in-flight write');
  gate.release();
  await within(write, WAIT_MS_MAX, 'the write reply');
  await within(closing, WAIT_MS_MAX, 'close');
  assert.equal(backend.inner.snapshot().subarray(0, 10).toString(), 'last words');
  await assert.rejects(client.read(0, 1));
  await client.close();
});

void test('NBD_CMD_DISC after pipelined writes: every write is answered first', async () => {
  const backend = new GatedBackend(MiB);
  const s = await startServer({ disk: backend });
  const raw = await RawConnection.open(s.port);
  try {
    await raw.read(18);
    raw.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
    raw.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('disk')));
    await raw.read(10);
    const gate = backend.hold(() => true);
    for (let i = 0; i < 3; i++) {
      raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.WRITE, handle: BigInt(i), offsetBytes: i * 512, lengthBytes: 512 }));
      raw.write(Buffer.alloc(512, i + 1));
    }
    raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.DISC, handle: 9n, offsetBytes: 0, lengthBytes: 0 }));
    await waitFor('three held writes', () => gate.heldCount() === 3, WAIT_MS_MAX, 5);
    gate.release();
    const rest = await raw.untilClosed();
    assert.equal(rest.length, 3 * 16);
    const handles = [0, 1, 2].map((i) => rest.readBigUInt64BE(i * 16 + 8)).sort();
    assert.deepEqual(handles, [0n, 1n, 2n]);
    assert.equal(backend.inner.snapshot()[1024], 3);
  } finally {
    await s.close();
  }
});

void test('a client that keeps its side open after DISC is dropped after closeLingerMsMax', async () => {
  const s = await startMemServer(MiB, { closeLingerMsMax: 100 });
  const socket = net.connect({ host: HOST, port: s.port, allowHalfOpen: true });
  socket.on('error', () => undefined);
  try {
    await within(once(socket, 'connect'), WAIT_MS_MAX, 'connect');
    socket.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
    socket.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('disk')));
    socket.write(encodeRequestHeader({ flags: 0, type: NbdCommand.DISC, handle: 1n, offsetBytes: 0, lengthBytes: 0 }));
    socket.resume();
    await within(once(socket, 'end'), WAIT_MS_MAX, 'the server to end its side');
    assert.equal(socket.destroyed, false, 'our side is still open');
    await waitFor('the server to drop the lingering connection', () => s.server.connectionCount() === 0, WAIT_MS_MAX, 5);
    assert.ok(s.logs.some((line) => line.includes('client sent DISC')));
  } finally {
    socket.destroy();
    await s.close();
  }
});

void test('hundreds of replies without data finished in one tick each arrive once, with their own handle and error', async () => {
  const s = await startMemServer(MiB);
  const raw = await RawConnection.open(s.port);
  try {
    await raw.read(18);
    raw.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
    raw.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('disk')));
    await raw.read(10);
    // One socket write: the server parses all of it in one go. Writes past the end are
    // answered inline while their payload is skipped (more than one buffer of replies in
    // one tick); every fifth is a good write, answered when the backend settles it.
    const count = 300;
    const parts: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const good = i % 5 === 0;
      parts.push(encodeRequestHeader({ flags: 0, type: NbdCommand.WRITE, handle: BigInt(1000 + i), offsetBytes: good ? i * 512 : MiB, lengthBytes: 512 }));
      parts.push(Buffer.alloc(512, i & 0xff));
    }
    raw.write(Buffer.concat(parts));
    const replies = await raw.read(count * 16);
    const seen = new Map<bigint, number>();
    for (let at = 0; at < replies.length; at += 16) {
      assert.equal(replies.readUInt32BE(at), NbdMagic.SIMPLE_REPLY);
      const handle = replies.readBigUInt64BE(at + 8);
      assert.equal(seen.has(handle), false, `handle ${handle} answered twice`);
      seen.set(handle, replies.readUInt32BE(at + 4));
    }
    for (let i = 0; i < count; i++) assert.equal(seen.get(BigInt(1000 + i)), i % 5 === 0 ? NbdErrno.OK : NbdErrno.ENOSPC, `reply to request ${i}`);
    assert.equal(s.backend.snapshot()[5 * 512], 5);
  } finally {
    await s.close();
  }
});
