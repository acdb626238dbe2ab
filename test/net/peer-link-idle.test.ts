/**
 * The idle limit of a peer link: a link that receives nothing for its limit is closed
 * (PEER_CLOSED naming the limit), and it sends keepalives while it has nothing else to
 * send: every second by default (closed after 6 s), at a sixth of a shorter limit that the
 * daemon was given (MARS_INTERVALS peerIdleMs). Anything received, a keepalive too,
 * restarts the count. Time is a ManualClock with ManualTimers; the socket is a stand-in
 * that records what is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { ManualClock } from '../../src/core/clock.js';
import { ManualTimers } from '../../src/core/timers.js';
import type { MarsError } from '../../src/core/errors.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../src/net/frame.js';
import { idleMsMax, keepaliveIntervalMs } from '../../src/net/limits.js';
import { PeerLink } from '../../src/net/peer-link.js';

/** A socket stand-in: what PeerLink writes is kept; `receive` delivers bytes as the kernel would. */
class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  writableLength = 0;
  destroyed = false;
  write(data: Buffer, callback?: (err?: Error | null) => void): boolean {
    this.written.push(Buffer.from(data));
    callback?.(null);
    return true;
  }
  cork(): void {}
  uncork(): void {}
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
  receive(data: Buffer): void {
    this.emit('data', data);
  }
  keepalivesSent(): number {
    // Byte 5 of a frame header is its type (docs/network.md; src/net/frame.ts).
    return this.written.filter((b) => b[5] === FrameType.keepalive).length;
  }
}

function openLink(idleMs?: number): { link: PeerLink; socket: FakeSocket; clock: ManualClock; timers: ManualTimers; closed: (MarsError | undefined)[] } {
  const clock = new ManualClock(1_000_000);
  const timers = new ManualTimers(() => clock.nowMs(), (deltaMs) => clock.advance(deltaMs));
  const socket = new FakeSocket();
  const env = { timers, clock, ...(idleMs === undefined ? {} : { idleMs }) };
  const link = new PeerLink(socket as unknown as Socket, new FrameDecoder(), { peerHost: 'beta', channel: 'meta', clusterId: 'c', remoteAddress: '127.0.0.2:7777', tls: false }, [], env);
  const closed: (MarsError | undefined)[] = [];
  link.attach({ onFrame: () => undefined, onClose: (error) => closed.push(error) });
  return { link, socket, clock, timers, closed };
}

test('by default a silent link sends a keepalive every second and is closed after 6 s', () => {
  assert.equal(idleMsMax, 6_000);
  assert.equal(keepaliveIntervalMs, 1_000);
  const { link, socket, timers, closed } = openLink();
  timers.advance(idleMsMax - 1);
  assert.equal(link.closed, false, 'open just before the limit');
  assert.equal(socket.keepalivesSent(), 5, 'a keepalive every second');
  timers.advance(1);
  assert.equal(link.closed, true);
  assert.match(closed[0]?.message ?? '', /^127\.0\.0\.2:7777: nothing received for 6000 ms$/);
});

test('a shorter idle limit closes the silent link after it, with keepalives at a sixth of it', () => {
  const { link, socket, timers, closed } = openLink(1_200);
  timers.advance(1_199);
  assert.equal(link.closed, false, 'open just before the limit');
  assert.equal(socket.keepalivesSent(), 5, 'a keepalive every 200 ms');
  timers.advance(1);
  assert.equal(link.closed, true);
  assert.equal(closed[0]?.code, 'PEER_CLOSED');
  assert.match(closed[0].message, /nothing received for 1200 ms$/);
});

test('anything received, a keepalive too, starts the idle count again', () => {
  const { link, socket, timers } = openLink(1_200);
  for (let i = 0; i < 10; i++) {
    timers.advance(1_000);
    socket.receive(encodeFrame(FrameType.keepalive, Buffer.alloc(0)));
  }
  assert.equal(link.closed, false, '10 s with a keepalive every second: open');
  timers.advance(1_200);
  assert.equal(link.closed, true, 'closed 1.2 s after the last one');
});
