import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalCopies, MemLogSource } from '../../src/fetch/index.js';
import { encodeRecord, formatLogName, type LogRecord } from '../../src/log/index.js';
import type { PeerLink } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { assertCopiesEqual, dialer, hookWrites, newClient, Primary, Server } from './helpers.js';
import { waitFor } from '../support/wait.js';
import { FaultyProxy } from './proxy.js';

const testTimeoutMs = 30_000;

/**
 * Watches the durable-prefix rule where it is decided: every read the log server makes of
 * the live log (it reads only what it is about to ship) must end at or before the durable
 * end at that moment; and the source is woken for no reason every millisecond, so that the
 * server looks again while appended bytes are not yet durable.
 */
function watchServerReads(primary: Primary, failures: string[]): { infoCalls: () => number; readsChecked: () => number; stop: () => void } {
  const source = primary.source;
  let infoCalls = 0;
  let readsChecked = 0;
  const info = source.info.bind(source);
  const open = source.open.bind(source);
  source.info = async (name) => {
    infoCalls++;
    return info(name);
  };
  source.open = async (name) => {
    const file = await open(name);
    return {
      ...file,
      name: file.name,
      read: (target, position) => {
        const durableBytes = primary.durableBytes();
        if (position + target.length > durableBytes) failures.push(`the server read ${position}+${target.length}, beyond the durable end ${durableBytes}`);
        readsChecked++;
        return file.read(target, position);
      },
      close: () => file.close(),
    };
  };
  const waker = setInterval(() => source.notifyChange(), 1);
  return { infoCalls: () => infoCalls, readsChecked: () => readsChecked, stop: () => clearInterval(waker) };
}

void test('a secondary copy is always a prefix of the primary durable log and never holds unsynced bytes', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 1);
  const failures: string[] = [];
  const watch = watchServerReads(primary, failures);
  const server = await Server.listen('alpha', primary.source);
  const name = primary.logName(1);
  // Every write into the copy, when it happens: never beyond what is durable on the primary.
  const local = new MemStorage();
  const watched = hookWrites(local, (file, endBytes) => {
    if (file === name && endBytes > primary.durableBytes()) failures.push(`the copy reached ${endBytes}, beyond the durable end ${primary.durableBytes()}`);
  });
  const client = newClient(await LocalCopies.open(watched), dialer('beta', 'alpha', server), 11);
  try {
    client.start();
    for (let round = 0; round < 60; round++) {
      await primary.append(1 + primary.random.int(30));
      if (round % 4 !== 3) await primary.sync(); // every fourth round leaves appended bytes unsynced for a while
      await waitFor('the server looks at the source', () => watch.infoCalls() > 0, 10_000, 5);
    }
    await primary.sync();
    await waitFor('the copy reaches the durable end', () => (local.image(name)?.length ?? 0) === primary.durableBytes(), 10_000, 5);
    // Bytes appended without fdatasync never leave the primary, however often the server looks...
    const durableBytes = primary.durableBytes();
    await primary.append(20);
    assert.ok(primary.writer.position().endOffsetBytes > durableBytes);
    const looked = watch.infoCalls();
    await waitFor('the server looks again five times with unsynced bytes present', () => watch.infoCalls() >= looked + 5, 10_000, 5);
    assert.equal(local.image(name)?.length, durableBytes, 'unsynced records were not shipped');
    // ...until they are durable.
    await primary.sync();
    await waitFor('the synced records arrive', () => local.image(name)?.length === primary.writer.position().endOffsetBytes, 10_000, 5);
    assert.deepEqual(failures, []);
    assert.ok(watch.readsChecked() > 10, `${watch.readsChecked()} server reads checked`);
    assert.equal(client.status().fetchRestBytes, 0);
    await assertCopiesEqual(primary.storage, local, 'after catching up');
  } finally {
    watch.stop();
    await client.stop();
    await server.close();
  }
});

/** A few valid records of one log, encoded with their syncedBytes as a writer would. */
function encodedRecords(count: number, payloadBytes: number, firstSeq = 1n): Buffer[] {
  const records: Buffer[] = [];
  let offsetBytes = 0;
  for (let i = 0; i < count; i++) {
    const record: LogRecord = { kind: 'write', seq: firstSeq + BigInt(i), lamport: BigInt(i + 1), offsetBytes: i * 512, payload: Buffer.alloc(payloadBytes, i + 1) };
    const encoded = encodeRecord(record, offsetBytes);
    records.push(encoded);
    offsetBytes += encoded.length;
  }
  return records;
}

void test('the server ships exactly up to the durable end a source declares, then waits and ships more as it grows', { timeout: testTimeoutMs }, async () => {
  const source = new MemLogSource();
  const name = formatLogName(1, 'alpha');
  const records = encodedRecords(6, 300);
  for (const r of records) await source.append(name, r);
  const durableBytes = records[0]!.length + records[1]!.length;
  await source.makeDurable(name, durableBytes);
  // The rule, watched where it shows: every write into the copy, when it happens, ends at or
  // before the source's durable end of that moment; and the server's every look at the
  // source is counted, so the test knows it looked while undurable bytes were there.
  const durable = new Map<string, number>([[name, durableBytes]]);
  const makeDurable = source.makeDurable.bind(source);
  source.makeDurable = async (file, bytes) => {
    await makeDurable(file, bytes);
    durable.set(file, (await source.info(file))!.durableBytes);
  };
  let looks = 0;
  const info = source.info.bind(source);
  source.info = (file) => {
    looks++;
    return info(file);
  };
  const failures: string[] = [];
  const local = new MemStorage();
  const watched = hookWrites(local, (file, endBytes) => {
    if (endBytes > (durable.get(file) ?? 0)) failures.push(`the copy of ${file} reached ${endBytes}, beyond the durable end ${durable.get(file) ?? 0}`);
  });
  const server = await Server.listen('alpha', source);
  const client = newClient(await LocalCopies.open(watched), dialer('beta', 'alpha', server), 12);
  // Wakes the server every millisecond without changing anything (the same durable end
  // again), so that it looks at the source again and again while the tail is not durable.
  const waker = setInterval(() => void makeDurable(name, durableBytes), 1);
  try {
    client.start();
    await waitFor('caught up at the durable end', () => failures.length > 0 || client.status().state === 'caught-up', 10_000, 5);
    assert.deepEqual(failures, []);
    assert.equal(local.image(name)?.length, durableBytes);
    assert.equal(client.status().fetchRestBytes, 0);
    const looked = looks;
    await waitFor('the server looks at the source 20 times more with undurable bytes present', () => failures.length > 0 || looks >= looked + 20, 10_000, 5);
    clearInterval(waker);
    assert.equal(local.image(name)?.length, durableBytes, 'nothing beyond the durable end');
    assert.deepEqual(failures, []);
    await source.makeDurable(name);
    await waitFor('the rest arrives once durable', () => local.image(name)?.length === Buffer.concat(records).length, 10_000, 5);
    assert.ok(local.image(name)?.equals(Buffer.concat(records)));
    // Completion and the next log: the client moves on by itself.
    const next = formatLogName(2, 'alpha');
    await source.append(next, encodedRecords(1, 100, 7n)[0]!);
    await source.complete(name);
    await source.makeDurable(next);
    await waitFor('log 2 is fetched after log 1 is complete', () => (local.image(next)?.length ?? 0) > 0, 10_000, 5);
    assert.equal(server.streamStarts.length, 2);
    assert.deepEqual(failures, [], 'no write into a copy ever went beyond the durable end');
  } finally {
    clearInterval(waker);
    await client.stop();
    await server.close();
  }
});

void test('a connection destroyed mid-stream is resumed from the byte offset of the local copy', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 2);
  await primary.append(500, 16384);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const links: PeerLink[] = [];
  const dial = dialer('beta', 'alpha', server);
  let cutAtBytes = 0;
  const local = hookWrites(new MemStorage(), (_name, endBytes) => {
    if (cutAtBytes === 0 && endBytes > 1024 * 1024) {
      cutAtBytes = endBytes;
      links.at(-1)?.close(); // destroys the socket
    }
  });
  const client = newClient(await LocalCopies.open(local), async () => {
    const link = await dial();
    links.push(link);
    return link;
  }, 13);
  try {
    client.start();
    await waitFor('the copy is complete', () => client.status().localBytes === primary.durableBytes(), 20_000, 5);
    assert.ok(cutAtBytes > 0);
    assert.ok(links.length >= 2, 'reconnected');
    const resumed = server.streamStarts[1];
    assert.ok(resumed !== undefined && resumed.fromOffsetBytes >= cutAtBytes, `resumed at ${resumed?.fromOffsetBytes}, cut at ${cutAtBytes}`);
    await assertCopiesEqual(primary.storage, local, 'after the resume');
  } finally {
    await client.stop();
    await server.close();
  }
});

void test('a bit flipped on the wire is caught by the frame checksum; the link resets and fetch resumes', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 3);
  await primary.append(600, 16384);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const proxy = await FaultyProxy.listen(() => server.port);
  // Into the second 1 MiB DATA frame of the first connection, and of the second one.
  proxy.damages.push({ kind: 'raw', atStreamBytes: 1_500_000 }, { kind: 'raw', atStreamBytes: 1_200_000 });
  const local = new MemStorage();
  const closes: string[] = [];
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', proxy), 14, {
    onStatus: (s) => {
      if (s.state === 'source-unreachable' && s.error !== undefined) closes.push(s.error.code);
    },
  });
  try {
    client.start();
    await waitFor('the copy is complete', () => client.status().localBytes === primary.durableBytes() && proxy.damages.length === 0, 20_000, 5);
    assert.equal(proxy.damaged, 2);
    assert.ok(closes.includes('FRAME_CORRUPT'), `link closes: ${closes.join(', ')}`);
    const starts = server.streamStarts.map((s) => s.fromOffsetBytes);
    assert.equal(starts.length, 3, JSON.stringify({ starts, closes }));
    assert.ok(starts[0] === 0 && starts[1]! > 0 && starts[2]! > starts[1]!, `each connection resumes further on: ${starts.join(', ')}`);
    await assertCopiesEqual(primary.storage, local, 'after two damaged frames');
  } finally {
    await client.stop();
    await proxy.close();
    await server.close();
  }
});

void test('a damaged record inside a frame with a valid checksum is caught by the record checks and fetched again', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 4);
  await primary.append(200, 16384);
  await primary.sync();
  const server = await Server.listen('alpha', primary.source);
  const proxy = await FaultyProxy.listen(() => server.port);
  proxy.damages.push({ kind: 'in-data', atDataFrame: 1 });
  const local = new MemStorage();
  const closes: string[] = [];
  const client = newClient(await LocalCopies.open(local), dialer('beta', 'alpha', proxy), 15, {
    onStatus: (s) => {
      if (s.state === 'source-unreachable' && s.error !== undefined) closes.push(s.error.code);
    },
  });
  try {
    client.start();
    await waitFor('the copy is complete', () => client.status().localBytes === primary.durableBytes() && proxy.damaged === 1, 20_000, 5);
    assert.deepEqual(closes, ['LOG_CORRUPT']);
    await assertCopiesEqual(primary.storage, local, 'after a damaged record');
  } finally {
    await client.stop();
    await proxy.close();
    await server.close();
  }
});

void test('with the primary unreachable the secondary keeps its copy and resumes by itself when it is back', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 5);
  await primary.append(50);
  await primary.sync();
  const first = await Server.listen('alpha', primary.source);
  const target = { port: first.port };
  const local = new MemStorage();
  // Every change to the copy is counted (writes here; truncation shows in the image).
  let copyWrites = 0;
  const watched = hookWrites(local, () => copyWrites++);
  // Every attempt to reach the source is counted: the outage is watched while the client tries.
  let dials = 0;
  const dial = dialer('beta', 'alpha', target);
  const client = newClient(await LocalCopies.open(watched), () => {
    dials++;
    return dial();
  }, 16);
  let second: Server | undefined;
  try {
    client.start();
    await waitFor('caught up', () => client.status().state === 'caught-up', 10_000, 5);
    await first.close();
    await waitFor('source-unreachable', () => client.status().state === 'source-unreachable', 10_000, 5);
    const copyBefore = local.image(primary.logName())!;
    const writesBefore = copyWrites;
    await primary.append(50);
    await primary.sync();
    const dialsBefore = dials;
    await waitFor('three more attempts to reach the source while it is away', () => dials >= dialsBefore + 3, 10_000, 5);
    assert.equal(client.status().state, 'source-unreachable');
    assert.equal(copyWrites, writesBefore, 'nothing was written to the copy during the outage');
    assert.ok(local.image(primary.logName())?.equals(copyBefore), 'the copy is kept as it was');
    second = await Server.listen('alpha', primary.source);
    target.port = second.port;
    await waitFor('resumed and caught up', () => client.status().state === 'caught-up' && client.status().localBytes === primary.durableBytes(), 10_000, 5);
    await assertCopiesEqual(primary.storage, local, 'after the outage');
  } finally {
    await client.stop();
    await second?.close();
  }
});
