/**
 * Shared pieces of the sync tests: devices on a MemStorage, a source resource, an
 * authenticated TCP listener and dialer on the 'sync' channel, an in-memory link pair (for tests
 * that drive time by hand), and bounded waiting.
 */
import assert from 'node:assert/strict';
import type { MarsError } from '../../src/core/errors.js';
import { Random } from '../../src/core/random.js';
import { PeerServer, dialPeer, type Frame, type LinkHandlers, type PeerLink } from '../../src/net/index.js';
import type { ReplayPosition } from '../../src/replay/position.js';
import type { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';
import type { AttachableSyncLink, SyncSourceResource } from '../../src/sync/index.js';
import { syncLimits } from '../../src/sync/index.js';

export const secret = Buffer.from('a cluster secret of 32 bytes....');
export const blockBytes = syncLimits.blockBytes;
export const mib = 1024 * 1024;

export const startPosition: ReplayPosition = { logNumber: 3, logHost: 'alpha', offsetBytes: 4096, nextSeq: 17n };
export const endPosition: ReplayPosition = { logNumber: 4, logHost: 'alpha', offsetBytes: 8192, nextSeq: 99n };

/** A file on the storage holding exactly `content`, synced. */
export async function deviceWith(storage: MemStorage, name: string, content: Buffer): Promise<StorageFile> {
  const file = await storage.open(name, 'create');
  await file.write(content, 0);
  await file.sync();
  await storage.syncDir();
  return file;
}

export function sourceResource(device: StorageFile, sizeBytes: number): SyncSourceResource {
  return { device, sizeBytes, startPosition: () => startPosition, endPosition: () => endPosition };
}

/** Indexes of the 4 KiB blocks in which two images differ. */
export function differingBlocks(a: Buffer, b: Buffer): number[] {
  assert.equal(a.length, b.length, 'images of the same size');
  const out: number[] = [];
  for (let at = 0; at < a.length; at += blockBytes) {
    const end = Math.min(at + blockBytes, a.length);
    if (!a.subarray(at, end).equals(b.subarray(at, end))) out.push(at / blockBytes);
  }
  return out;
}

/**
 * Two images for a sync: the target random, the source different random bytes except
 * regions identical to the target and regions of zeroes (some already zero on the target).
 */
export function mixedImages(seed: number, sizeBytes: number): { source: Buffer; target: Buffer } {
  const random = new Random(seed);
  const target = random.bytes(sizeBytes);
  const source = random.bytes(sizeBytes);
  const blocks = sizeBytes / blockBytes;
  for (let i = 0; i < blocks; ) {
    const run = 1 + random.int(64);
    const kind = random.int(4); // 0: different, 1: identical, 2: zero on the source, 3: zero on both
    for (let j = i; j < Math.min(blocks, i + run); j++) {
      const at = j * blockBytes;
      if (kind === 1) target.copy(source, at, at, at + blockBytes);
      if (kind >= 2) source.fill(0, at, at + blockBytes);
      if (kind === 3) target.fill(0, at, at + blockBytes);
    }
    i += run;
  }
  return { source, target };
}

/** A listening source host: every authenticated 'sync' link it accepts goes to `onLink`. */
export class SourceHost {
  private constructor(
    readonly server: PeerServer,
    readonly name: string,
  ) {}

  /** A source host named `name` ('alpha' unless said). */
  static async listen(onLink: (link: PeerLink) => void, name = 'alpha'): Promise<SourceHost> {
    const server = await PeerServer.listen({ listenHost: '127.0.0.1', port: 0, auth: { secret, clusterId: 'prod', localHost: name }, onLink });
    return new SourceHost(server, name);
  }

  /** Dials from the target host 'beta'. */
  dial(): Promise<PeerLink> {
    return dialPeer({ host: '127.0.0.1', port: this.server.port, auth: { secret, clusterId: 'prod', localHost: 'beta' }, peerHost: this.name, channel: 'sync' });
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

/** One end of an in-memory link: frames are delivered on a later macrotask, never re-entrantly. */
export class MemLink implements AttachableSyncLink {
  other: MemLink | undefined;
  closed = false;
  sentFrames = 0;
  private handlers: LinkHandlers | undefined;
  private readonly early: Frame[] = [];

  constructor(readonly peerHost: string) {}

  static pair(): [MemLink, MemLink] {
    const a = new MemLink('alpha');
    const b = new MemLink('beta');
    a.other = b;
    b.other = a;
    return [a, b];
  }

  attach(handlers: LinkHandlers): void {
    this.handlers = handlers;
    for (const frame of this.early.splice(0)) handlers.onFrame(frame);
  }

  send(type: number, payload: Buffer): boolean {
    if (this.closed) return false;
    const frame = { type, payload: Buffer.from(payload) };
    this.sentFrames++;
    setImmediate(() => this.other?.deliver(frame));
    return true;
  }

  writable(): Promise<void> {
    return Promise.resolve();
  }

  close(error?: MarsError): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.onClose(error);
    setImmediate(() => this.other?.close());
  }

  private deliver(frame: Frame): void {
    if (this.closed) return;
    if (this.handlers === undefined) this.early.push(frame);
    else this.handlers.onFrame(frame);
  }
}

/** Lets pending I/O callbacks and immediates run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}
