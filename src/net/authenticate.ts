/**
 * The thin shell around the handshake state machine: it feeds the socket's frames to it,
 * writes what it answers, and either hands back an authenticated PeerLink or closes the
 * socket. Until then frames are limited to `handshakeFrameBytesMax` and nothing else is
 * read: garbage, a bad checksum or an oversized length ends the connection at once.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { MarsError } from '../core/errors.js';
import { encodeFrame, FrameDecoder, FrameType, type Frame } from './frame.js';
import type { Handshake } from './handshake.js';
import { frameBytesMax, handshakeFrameBytesMax, handshakeMsMax } from './limits.js';
import { PeerLink, type LinkEnv } from './peer-link.js';
import { SocketInput } from './socket-input.js';

/** Bytes of TLS keying material bound into the proofs, and its exporter label (RFC 5705). */
export const channelBindingBytes = 32;
export const channelBindingLabel = 'EXPORTER-MARS-AUTH';

/**
 * Keying material of a TLS session, the same at both ends (a man in the middle has two
 * different ones); empty for plain TCP.
 */
export function channelBindingOf(socket: Socket): Buffer {
  return socket instanceof TLSSocket ? socket.exportKeyingMaterial(channelBindingBytes, channelBindingLabel, Buffer.alloc(0)) : Buffer.alloc(0);
}

/** Closes a socket after the last frames (a REFUSE) had a moment to leave. */
const lingerMs = 1_000;

export function remoteAddressOf(socket: Socket): string {
  const address = socket.remoteAddress ?? 'unknown';
  return address.includes(':') ? `[${address}]:${socket.remotePort ?? 0}` : `${address}:${socket.remotePort ?? 0}`;
}

/** `input` is where the socket's bytes arrive (default: its 'data' events). */
export function authenticate(socket: Socket, handshake: Handshake, env: LinkEnv, tls: boolean, input: SocketInput = SocketInput.ofDataEvents(socket)): Promise<PeerLink> {
  return new Promise((resolve, reject) => {
    const decoder = new FrameDecoder(handshakeFrameBytesMax);
    const remoteAddress = remoteAddressOf(socket);
    let finished = false;
    const write = (frames: readonly Frame[]): void => {
      for (const frame of frames) socket.write(encodeFrame(frame.type, frame.payload));
    };
    const cleanup = (): void => {
      finished = true;
      env.timers.clearTimeout(timer);
      input.setReader(undefined);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const fail = (error: MarsError): void => {
      if (finished) return;
      cleanup();
      socket.on('error', () => undefined);
      socket.end();
      env.timers.setTimeout(() => socket.destroy(), lingerMs);
      reject(error);
    };
    const onData = (chunk: Buffer, borrowed: boolean): void => {
      let frames: Frame[];
      try {
        // The handshake's last frame (ACCEPT) may arrive with the first larger frames behind it.
        frames = decoder.push(chunk, (frame) => frame.type === FrameType.accept, borrowed);
      } catch (err) {
        fail(err instanceof MarsError ? err : new MarsError('FRAME_CORRUPT', String(err)));
        return;
      }
      for (let i = 0; i < frames.length && !finished; i++) {
        const step = handshake.receive(frames[i]!);
        write(step.send);
        if (step.state === 'refused') fail(step.error ?? new MarsError('AUTH_FAILED', 'refused'));
        else if (step.state === 'done') {
          decoder.limitBytes = frameBytesMax;
          let early: Frame[];
          try {
            early = [...frames.slice(i + 1), ...decoder.push(Buffer.alloc(0))];
          } catch (err) {
            fail(err instanceof MarsError ? err : new MarsError('FRAME_CORRUPT', String(err)));
            return;
          }
          cleanup();
          const info = { peerHost: handshake.peerHost!, channel: handshake.channel!, clusterId: handshake.clusterId!, remoteAddress, tls };
          resolve(new PeerLink(socket, decoder, info, early, env, input));
        }
      }
    };
    const onError = (err: Error): void => fail(new MarsError('PEER_CLOSED', `${remoteAddress}: ${err.message}`));
    const onClose = (): void => fail(new MarsError('PEER_CLOSED', `${remoteAddress} closed the connection during the handshake`));
    const timer = env.timers.setTimeout(() => fail(new MarsError('TIMEOUT', `no handshake within ${handshakeMsMax} ms`)), handshakeMsMax);
    input.setReader(onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    write(handshake.start());
  });
}
