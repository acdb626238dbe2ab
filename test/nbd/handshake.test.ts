import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeOptionReplyHeader,
  encodeClientFlags,
  encodeGoRequest,
  encodeOption,
  encodeRequestHeader,
} from '../../src/nbd/codec.js';
import { MemBackend } from '../../src/nbd/mem-backend.js';
import {
  NbdClientFlag,
  NbdCommand,
  NbdInfo,
  NbdMagic,
  NbdOption,
  NbdReply,
  NbdTransmissionFlag,
  NbdWire,
} from '../../src/nbd/protocol.js';
import { RawConnection, startMemServer, startServer, type TestServer, WAIT_MS_MAX } from './helpers.js';
import { waitFor } from '../support/wait.js';

const SIZE_BYTES = 1024 * 1024;
const BOTH_FLAGS = NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES;
const EXPECTED_FLAGS =
  NbdTransmissionFlag.HAS_FLAGS |
  NbdTransmissionFlag.SEND_FLUSH |
  NbdTransmissionFlag.SEND_FUA |
  NbdTransmissionFlag.SEND_TRIM |
  NbdTransmissionFlag.SEND_WRITE_ZEROES |
  NbdTransmissionFlag.CAN_MULTI_CONN;

async function withServer(body: (s: TestServer & { backend: MemBackend }) => Promise<void>, limits = {}): Promise<void> {
  const s = await startMemServer(SIZE_BYTES, limits);
  try {
    await body(s);
  } finally {
    await s.close();
  }
}

/** Connects, checks the greeting and sends the client flags. */
async function greeted(port: number, clientFlags = BOTH_FLAGS): Promise<RawConnection> {
  const raw = await RawConnection.open(port);
  const greeting = await raw.read(NbdWire.GREETING_BYTES);
  assert.equal(greeting.readBigUInt64BE(0), NbdMagic.INIT_PASSWD);
  assert.equal(greeting.readBigUInt64BE(8), NbdMagic.IHAVEOPT);
  raw.write(encodeClientFlags(clientFlags));
  return raw;
}

async function readOptionReply(raw: RawConnection): Promise<{ option: number; replyType: number; data: Buffer }> {
  const header = decodeOptionReplyHeader(await raw.read(NbdWire.OPTION_REPLY_HEADER_BYTES));
  assert.equal(header.magic, NbdMagic.OPTION_REPLY);
  const data = await raw.read(header.lengthBytes);
  return { option: header.option, replyType: header.replyType, data };
}

void test('the greeting is NBDMAGIC, IHAVEOPT and the flags FIXED_NEWSTYLE | NO_ZEROES', async () => {
  await withServer(async ({ port }) => {
    const raw = await RawConnection.open(port);
    const greeting = await raw.read(18);
    assert.deepEqual(greeting, Buffer.from('4e42444d41474943' + '49484156454f5054' + '0003', 'hex'));
    raw.destroy();
  });
});

void test('NBD_OPT_EXPORT_NAME with NO_ZEROES answers size and flags in 10 bytes, then serves requests', async () => {
  await withServer(async ({ port, backend }) => {
    await backend.write(0, Buffer.from('hello'));
    const raw = await greeted(port);
    raw.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('disk')));
    const reply = await raw.read(10);
    assert.equal(reply.readBigUInt64BE(0), BigInt(SIZE_BYTES));
    assert.equal(reply.readUInt16BE(8), EXPECTED_FLAGS);
    raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.READ, handle: 7n, offsetBytes: 0, lengthBytes: 5 }));
    const simple = await raw.read(16 + 5);
    assert.equal(simple.readUInt32BE(0), NbdMagic.SIMPLE_REPLY);
    assert.equal(simple.readUInt32BE(4), 0);
    assert.equal(simple.readBigUInt64BE(8), 7n);
    assert.equal(simple.subarray(16).toString(), 'hello');
    raw.destroy();
  });
});

void test('NBD_OPT_EXPORT_NAME without NO_ZEROES is followed by 124 zero bytes', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port, NbdClientFlag.C_FIXED_NEWSTYLE);
    raw.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('disk')));
    const reply = await raw.read(10 + 124);
    assert.equal(reply.readBigUInt64BE(0), BigInt(SIZE_BYTES));
    assert.ok(reply.subarray(10).equals(Buffer.alloc(124)));
    raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.FLUSH, handle: 1n, offsetBytes: 0, lengthBytes: 0 }));
    const simple = await raw.read(16);
    assert.equal(simple.readUInt32BE(4), 0);
    raw.destroy();
  });
});

void test('NBD_OPT_EXPORT_NAME of an unknown export closes the connection without a reply', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port);
    raw.write(encodeOption(NbdOption.EXPORT_NAME, Buffer.from('nope')));
    const rest = await raw.untilClosed();
    assert.equal(rest.length, 0);
  });
});

void test('NBD_OPT_LIST answers one NBD_REP_SERVER per export, then NBD_REP_ACK', async () => {
  const s = await startServer({ alpha: new MemBackend(4096), beta: new MemBackend(4096) });
  try {
    const raw = await greeted(s.port);
    raw.write(encodeOption(NbdOption.LIST));
    const names: string[] = [];
    for (;;) {
      const reply = await readOptionReply(raw);
      assert.equal(reply.option, NbdOption.LIST);
      if (reply.replyType === NbdReply.ACK) break;
      assert.equal(reply.replyType, NbdReply.SERVER);
      assert.equal(reply.data.readUInt32BE(0), reply.data.length - 4);
      names.push(reply.data.subarray(4).toString());
    }
    assert.deepEqual(names.sort(), ['alpha', 'beta']);
    raw.destroy();
  } finally {
    await s.close();
  }
});

void test('NBD_OPT_LIST with data is NBD_REP_ERR_INVALID and the handshake goes on; NBD_OPT_ABORT is acknowledged and closes', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port);
    raw.write(encodeOption(NbdOption.LIST, Buffer.from('junk')));
    assert.equal((await readOptionReply(raw)).replyType, NbdReply.ERR_INVALID);
    raw.write(encodeOption(NbdOption.ABORT));
    const ack = await readOptionReply(raw);
    assert.deepEqual([ack.option, ack.replyType, ack.data.length], [NbdOption.ABORT, NbdReply.ACK, 0]);
    assert.equal((await raw.untilClosed()).length, 0);
  });
});

void test('unknown options and NBD_OPT_STRUCTURED_REPLY get NBD_REP_ERR_UNSUP, and their data is skipped', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port);
    raw.write(encodeOption(99, Buffer.alloc(1000, 0x49)));
    raw.write(encodeOption(NbdOption.STRUCTURED_REPLY));
    raw.write(encodeOption(NbdOption.STARTTLS));
    const first = await readOptionReply(raw);
    assert.deepEqual([first.option, first.replyType], [99, NbdReply.ERR_UNSUP]);
    assert.equal((await readOptionReply(raw)).replyType, NbdReply.ERR_UNSUP);
    assert.equal((await readOptionReply(raw)).replyType, NbdReply.ERR_UNSUP);
    raw.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'disk', infoRequests: [] })));
    assert.equal((await readOptionReply(raw)).replyType, NbdReply.INFO);
    raw.destroy();
  });
});

void test('NBD_OPT_INFO answers NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE and stays in the handshake; NBD_OPT_GO then enters transmission', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port);
    for (const option of [NbdOption.INFO, NbdOption.GO]) {
      raw.write(encodeOption(option, encodeGoRequest({ exportName: 'disk', infoRequests: [NbdInfo.BLOCK_SIZE, NbdInfo.NAME] })));
      const infos = new Map<number, Buffer>();
      for (;;) {
        const reply = await readOptionReply(raw);
        assert.equal(reply.option, option);
        if (reply.replyType === NbdReply.ACK) break;
        assert.equal(reply.replyType, NbdReply.INFO);
        infos.set(reply.data.readUInt16BE(0), reply.data);
      }
      const exportInfo = infos.get(NbdInfo.EXPORT);
      assert.ok(exportInfo);
      assert.equal(exportInfo.length, 12);
      assert.equal(exportInfo.readBigUInt64BE(2), BigInt(SIZE_BYTES));
      assert.equal(exportInfo.readUInt16BE(10), EXPECTED_FLAGS);
      const blockSize = infos.get(NbdInfo.BLOCK_SIZE);
      assert.ok(blockSize);
      assert.deepEqual([blockSize.readUInt32BE(2), blockSize.readUInt32BE(6), blockSize.readUInt32BE(10)], [1, 4096, 32 * 1024 * 1024]);
      assert.equal(infos.get(NbdInfo.NAME)?.subarray(2).toString(), 'disk');
    }
    raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.READ, handle: 3n, offsetBytes: 0, lengthBytes: 4 }));
    const reply = await raw.read(20);
    assert.equal(reply.readUInt32BE(0), NbdMagic.SIMPLE_REPLY);
    assert.equal(reply.readBigUInt64BE(8), 3n);
    raw.destroy();
  });
});

void test('NBD_OPT_GO names an unknown export: NBD_REP_ERR_UNKNOWN, and the client may try again', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port);
    raw.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'nope', infoRequests: [] })));
    assert.equal((await readOptionReply(raw)).replyType, NbdReply.ERR_UNKNOWN);
    raw.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'disk', infoRequests: [] })));
    assert.equal((await readOptionReply(raw)).replyType, NbdReply.INFO);
    raw.destroy();
  });
});

void test('malformed NBD_OPT_GO payloads get NBD_REP_ERR_INVALID', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port);
    const good = encodeGoRequest({ exportName: 'disk', infoRequests: [NbdInfo.BLOCK_SIZE] });
    const nameTooLong = Buffer.from(good);
    nameTooLong.writeUInt32BE(1000, 0);
    const bad = [Buffer.alloc(3), good.subarray(0, good.length - 1), Buffer.concat([good, Buffer.alloc(1)]), nameTooLong];
    for (const payload of bad) {
      raw.write(encodeOption(NbdOption.GO, payload));
      const reply = await readOptionReply(raw);
      assert.deepEqual([reply.option, reply.replyType], [NbdOption.GO, NbdReply.ERR_INVALID]);
    }
    raw.destroy();
  });
});

void test('unknown client flags close the connection', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port, 0x80);
    assert.equal((await raw.untilClosed()).length, 0);
  });
});

void test('a bad option magic closes the connection', async () => {
  await withServer(async ({ port }) => {
    const raw = await greeted(port);
    const option = encodeOption(NbdOption.LIST);
    option.writeUInt32BE(0xdeadbeef, 0);
    raw.write(option);
    assert.equal((await raw.untilClosed()).length, 0);
  });
});

void test('an option longer than optionBytesMax closes the connection before its data arrives', async () => {
  await withServer(
    async ({ port }) => {
      const raw = await greeted(port);
      const header = encodeOption(NbdOption.GO);
      header.writeUInt32BE(1025, 12);
      raw.write(header);
      assert.equal((await raw.untilClosed()).length, 0);
    },
    { optionBytesMax: 1024 },
  );
});

void test('more than optionsMax options close the connection', async () => {
  await withServer(
    async ({ port }) => {
      const raw = await greeted(port);
      for (let i = 0; i < 4; i++) raw.write(encodeOption(NbdOption.STRUCTURED_REPLY));
      for (let i = 0; i < 3; i++) assert.equal((await readOptionReply(raw)).replyType, NbdReply.ERR_UNSUP);
      assert.equal((await raw.untilClosed()).length, 0);
    },
    { optionsMax: 3 },
  );
});

void test('a client that never finishes the handshake is dropped after handshakeMsMax', async () => {
  await withServer(
    async ({ port, server }) => {
      const raw = await greeted(port);
      await raw.untilClosed();
      await waitFor('the connection to be forgotten', () => server.connectionCount() === 0, WAIT_MS_MAX, 5);
    },
    { handshakeMsMax: 100 },
  );
});

void test('connections beyond connectionsMax are closed at once', async () => {
  await withServer(
    async ({ port, server }) => {
      const first = await greeted(port);
      await waitFor('the first connection', () => server.connectionCount() === 1, WAIT_MS_MAX, 5);
      const second = await RawConnection.open(port);
      assert.equal((await second.untilClosed()).length, 0);
      first.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'disk', infoRequests: [] })));
      assert.equal((await readOptionReply(first)).replyType, NbdReply.INFO);
      first.destroy();
    },
    { connectionsMax: 1 },
  );
});
