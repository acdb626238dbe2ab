/**
 * Abuse of a real marsd's NBD port by clients that hold connections or never read their
 * replies: 200 idle connections (held-open handshakes from the client's own address, idle
 * transmissions from another) do not keep nbdinfo out for more than a few seconds, and the
 * refusals cost a few log lines; 64 slow readers of 32 MiB READs are held to the buffer
 * budget (--nbd-buffer-bytes 64M), and the RSS of marsd stays near it.
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeOptionReplyHeader, encodeClientFlags, encodeGoRequest, encodeOption, encodeRequestHeader } from '../../src/nbd/codec.js';
import { NbdClientFlag, NbdCommand, NbdOption, NbdReply, NbdWire } from '../../src/nbd/protocol.js';
import { HOST, RawConnection, findTool, runTool, WAIT_MS_MAX } from './helpers.js';
import { waitFor } from '../support/wait.js';
import { adm } from '../support/adm.js';
import { sparseFile, startMarsd, tempDir, type Marsd } from '../support/processes.js';

const MiB = 1024 * 1024;

async function transmitting(port: number, from: string): Promise<RawConnection> {
  const raw = await RawConnection.open(port, from);
  await raw.read(NbdWire.GREETING_BYTES);
  raw.write(encodeClientFlags(NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES));
  raw.write(encodeOption(NbdOption.GO, encodeGoRequest({ exportName: 'disk', infoRequests: [] })));
  for (;;) {
    const header = decodeOptionReplyHeader(await raw.read(NbdWire.OPTION_REPLY_HEADER_BYTES));
    await raw.read(header.lengthBytes);
    if (header.replyType === NbdReply.ACK) return raw;
    assert.equal(header.replyType, NbdReply.INFO);
  }
}

/** A TCP connection that never says a word, and whether the server has closed it. */
function silent(port: number, from: string): Promise<{ socket: net.Socket; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    let closed = false;
    const socket = net.connect({ host: HOST, port, localAddress: from });
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    socket.once('connect', () => resolve({ socket, closed: () => closed }));
    socket.once('error', reject);
  });
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  assert.ok(match !== null, 'VmRSS in /proc/PID/status');
  return Number(match[1]) * 1024;
}

void describe('a real marsd under NBD connection and memory abuse', { timeout: 120_000 }, () => {
  let dir = '';
  let daemon: Marsd | undefined;
  const sockets: { destroy: () => void }[] = [];

  before(async () => {
    dir = await tempDir('mars-nbd-abuse-');
    const state = path.join(dir, 'state');
    assert.equal((await adm(state, 'create-cluster', '--host', 'alpha', '--listen', '127.0.0.1:7777')).code, 0);
    daemon = await startMarsd(state, { extraArgs: ['--nbd-buffer-bytes', '64M'] });
    const created = await adm(state, 'create-resource', 'disk', await sparseFile(path.join(dir, 'disk.img'), 32 * MiB));
    assert.equal(created.code, 0, created.stderr);
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    await daemon?.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void test('200 idle connections do not keep nbdinfo out; the refusals cost a few log lines', async (t) => {
    if (findTool('nbdinfo') === undefined) return t.skip('nbdinfo not installed');
    const port = daemon!.nbdPort;
    const openedMs = Date.now();
    // 100 from the client's own address that never handshake, 100 idle in transmission from another.
    const quiet = await Promise.all(Array.from({ length: 100 }, () => silent(port, '127.0.0.1')));
    sockets.push(...quiet.map((q) => q.socket));
    const idle = await Promise.allSettled(Array.from({ length: 100 }, () => transmitting(port, '127.0.0.2')));
    for (const r of idle) if (r.status === 'fulfilled') sockets.push(r.value);
    const inTransmission = idle.filter((r) => r.status === 'fulfilled').length;
    assert.equal(inTransmission, 32, 'connectionsPerAddressMax of 127.0.0.2 entered transmission');
    await waitFor('the refused silent connections to be closed', () => quiet.filter((q) => q.closed()).length === 68, WAIT_MS_MAX, 5);
    // Held-open handshakes become evictable after evictHandshakeMsMin (1 s).
    await waitFor('the held handshakes to age', () => Date.now() - openedMs >= 1_200, WAIT_MS_MAX, 5);
    const startedMs = Date.now();
    const info = await runTool('nbdinfo', ['--json', `nbd://${HOST}:${port}/disk`], 10_000);
    assert.equal(info.code, 0, info.stderr);
    assert.equal((JSON.parse(info.stdout) as { exports: { 'export-size': number }[] }).exports[0]?.['export-size'], 32 * MiB);
    assert.ok(Date.now() - startedMs < 5_000, `nbdinfo took ${Date.now() - startedMs} ms`);
    const refusals = daemon!.stderr().split('\n').filter((l) => l.includes('refusing connection from 127.0.0.2'));
    assert.ok(refusals.length >= 1 && refusals.length <= 2, `68 refusals of 127.0.0.2 in ${refusals.length} line(s)`);
    for (const s of sockets.splice(0)) s.destroy();
  });

  void test('64 slow readers of 32 MiB READs: two are served within the 64 MiB budget, the rest wait, and RSS stays near the budget', async (t) => {
    const port = daemon!.nbdPort;
    const pid = daemon!.child.pid!;
    const baseline = await rssBytes(pid);
    let served = 0;
    const readers: RawConnection[] = [];
    for (let i = 0; i < 64; i++) {
      // 2 addresses x 32 connections (the per-address limit).
      const raw = await transmitting(port, i % 2 === 0 ? '127.0.0.3' : '127.0.0.4');
      raw.socket.pause();
      // The first chunk of a reply says it was served; then the reader stops reading.
      raw.socket.prependOnceListener('data', () => {
        served += 1;
        raw.socket.pause();
      });
      raw.socket.resume();
      raw.write(encodeRequestHeader({ flags: 0, type: NbdCommand.READ, handle: BigInt(i), offsetBytes: 0, lengthBytes: 32 * MiB }));
      readers.push(raw);
      sockets.push(raw);
    }
    await waitFor('two READs to be served', () => served >= 2, WAIT_MS_MAX, 5);
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      peak = Math.max(peak, await rssBytes(pid));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    t.diagnostic(`marsd RSS ${Math.round(baseline / MiB)} MiB before, peak ${Math.round(peak / MiB)} MiB with 64 slow readers`);
    assert.equal(served, 2, 'no READ beyond the budget was served');
    assert.ok(peak - baseline < 64 * MiB + 48 * MiB, `RSS grew by ${Math.round((peak - baseline) / MiB)} MiB`);
    for (const s of sockets.splice(0)) s.destroy();
  });
});
