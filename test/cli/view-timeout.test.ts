/**
 * A daemon that accepts on its control socket and never answers (stopped with SIGSTOP,
 * hung): a view gives up after its own limit with one line that says so and exit 1,
 * instead of a command's two minutes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runMarsadm } from '../../src/cli/marsadm-main.js';

void test('a view of a daemon that never answers ends after 15 s with one line and exit 1', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mars-view-timeout-'));
  const sockets: Socket[] = [];
  let requests = 0;
  const silent = createServer((socket) => {
    sockets.push(socket);
    socket.on('data', () => requests++);
  });
  await new Promise<void>((resolve) => silent.listen(join(dir, 'control.sock'), resolve));
  try {
    const view = { code: -1, stdout: '', stderr: '' };
    view.code = await runMarsadm([process.execPath, 'marsadm', '--dir', dir, 'view-role', 'r0'], { stdout: (t) => (view.stdout += t), stderr: (t) => (view.stderr += t) });
    assert.equal(view.code, 1, view.stderr);
    assert.equal(view.stdout, '');
    assert.equal(requests, 1, 'the request reached the socket');
    assert.match(view.stderr.trim(), /^marsadm: marsd did not answer 'view' within 15 s: it is running but stopped, hung or overloaded/);
    assert.equal(view.stderr.trim().split('\n').length, 1);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent.close(resolve));
    await rm(dir, { recursive: true, force: true });
  }
});
