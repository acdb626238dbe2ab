/**
 * The host environment: everything through which a host meets the world outside its own
 * memory. The core takes these as inputs and never reaches for the globals itself; marsd
 * passes the real ones (src/daemon/system-env.ts), the simulator passes virtual ones
 * (src/sim/), so that one seed decides every run.
 *
 *   clock    wall time (ms), read, never waited on
 *   timers   the only way to wait for time to pass
 *   random   the only source of randomness (seeded in the simulator)
 *   storage  one Storage per directory (files with pread/pwrite/fdatasync, atomic replace)
 *   dial     a byte stream to ADDRESS:PORT (TCP for marsd, a simulated link in the simulator)
 *   listen   accepts byte streams on ADDRESS:PORT
 */
import type { Clock } from './clock.js';
import type { Random } from './random.js';
import type { Timers } from './timers.js';
import type { Storage } from '../storage/storage.js';

/** A byte stream, the part of a socket the core uses (node:net's Socket has it). */
export interface ByteStream {
  write(data: Buffer): boolean;
  end(): void;
  destroy(error?: Error): void;
  readonly writableLength: number;
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'close' | 'drain', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

export interface Listener {
  /** The port actually bound (for port 0). */
  readonly port: number;
  close(): Promise<void>;
}

export interface HostEnv {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  /** The storage of a directory (created if missing where the edge can). */
  storage(dir: string): Storage;
  dial(address: string, port: number): Promise<ByteStream>;
  listen(address: string, port: number, onStream: (stream: ByteStream, remoteAddress: string) => void): Promise<Listener>;
}
