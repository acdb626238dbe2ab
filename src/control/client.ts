/**
 * The marsadm side of the control socket: one request, one answer.
 */
import { connect } from 'node:net';
import { MarsError } from '../core/errors.js';
import { LineReader, type ControlResponse } from './protocol.js';

export class DaemonNotRunningError extends Error {}

/** A failed request: the daemon's code and message. */
export class ControlError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export async function callDaemon(socketPath: string, cmd: string, args: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new MarsError('EIO', `marsd did not answer '${cmd}' within ${timeoutMs / 1000} s: it is running but stopped, hung or overloaded (its log may say which)`));
    }, timeoutMs);
    const done = (fn: () => void): void => {
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const reader = new LineReader((line) => {
      let response: ControlResponse;
      try {
        response = JSON.parse(line) as ControlResponse;
      } catch {
        done(() => reject(new MarsError('EIO', 'marsd sent a malformed answer')));
        return;
      }
      if (response.ok) done(() => resolve(response.result));
      else done(() => reject(new ControlError(response.code, response.message)));
    });
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 1, cmd, args })}\n`));
    socket.on('data', (chunk: Buffer) => {
      if (!reader.push(chunk)) done(() => reject(new MarsError('EIO', 'marsd sent an oversized answer')));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        done(() => reject(new DaemonNotRunningError(`marsd is not running (cannot connect to ${socketPath})`)));
      } else done(() => reject(err));
    });
    socket.on('close', () => done(() => reject(new MarsError('EIO', `marsd closed the connection before answering '${cmd}'`))));
  });
}
