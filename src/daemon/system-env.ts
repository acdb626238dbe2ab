/**
 * The real host environment that marsd passes to the core: the system clock, real timers,
 * a random source seeded from the operating system, real files and TCP. This is an edge
 * module: the only kind of file in src/ that may touch the globals (see
 * test/architecture/edges.test.ts for the list).
 */
import { randomInt } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { systemClock } from '../core/clock.js';
import type { ByteStream, HostEnv, Listener } from '../core/env.js';
import { Random } from '../core/random.js';
import { systemTimers } from '../core/timers.js';
import { FsStorage } from '../storage/fs-storage.js';

export function systemEnv(): HostEnv {
  return {
    clock: systemClock,
    timers: systemTimers,
    random: new Random(randomInt(2 ** 31)),
    storage: (dir) => new FsStorage(dir),
    dial: (address, port) =>
      new Promise<ByteStream>((resolve, reject) => {
        const socket = connect({ host: address, port });
        socket.once('connect', () => {
          socket.off('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      }),
    listen: (address, port, onStream) =>
      new Promise<Listener>((resolve, reject) => {
        const server = createServer((socket) => onStream(socket, `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`));
        server.once('error', reject);
        server.listen(port, address, () => {
          const bound = server.address();
          resolve({
            port: typeof bound === 'object' && bound !== null ? bound.port : port,
            close: () => new Promise<void>((done) => server.close(() => done())),
          });
        });
      }),
  };
}
