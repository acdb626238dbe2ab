/**
 * Carries out the metadata core's `Ready`s, in order, with the duties written on that
 * type: persist BEFORE send (so that no peer learns a version this host could forget in
 * a crash), then send, then reconcile on the changed keys, then log the rejections.
 *
 * Readies queue up while a persist is under way; the next round persists the union of
 * their scopes once (each write takes the node's current state, which covers every
 * queued Ready) and then does their sends in order. If a persist fails, nothing is sent
 * until a later round has written the scope: the dirty scopes are retried first.
 */
import { MarsError } from '../core/errors.js';
import { encodeMetaMessage, type MetaNode, type MetaStore, type Ready, type ScopeId } from '../meta/index.js';
import { FrameType } from '../net/index.js';

/** Readies waiting for the persist under way; beyond it their sends are dropped (anti-entropy repairs). */
export const pendingReadiesMax = 4_096;

export interface MetaShellOptions {
  readonly node: MetaNode;
  readonly store: MetaStore;
  /** Sends a frame to a host; false if there is no link (dropped). */
  readonly send: (to: string, type: number, payload: Buffer) => boolean;
  readonly onChanged: (keys: readonly string[]) => void;
  readonly onRejected: (peer: string, code: string, detail: string) => void;
  readonly onPersistError: (error: MarsError) => void;
}

interface Queued {
  readonly ready: Ready;
  readonly done: (error: MarsError | undefined) => void;
}

export class MetaShell {
  private queue: Queued[] = [];
  private running = false;
  private readonly dirty = new Set<ScopeId>();
  private droppedSends = 0;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();

  constructor(private readonly o: MetaShellOptions) {}

  /** Queues a Ready; resolves once it is durable and sent (rejects if it could not be persisted). */
  apply(ready: Ready): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const sends = this.queue.length >= pendingReadiesMax ? [] : ready.send;
      if (sends.length < ready.send.length) this.droppedSends += ready.send.length;
      this.queue.push({ ready: { ...ready, send: sends }, done: (error) => (error === undefined ? resolve() : reject(error)) });
      if (!this.running) this.idle = this.run();
    });
  }

  /**
   * Stops persisting: waits for the write under way and what is queued, then every later
   * Ready is dropped. Used when the host leaves the cluster: its metadata directory is about
   * to be removed, and a late atomic write would recreate files in it.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle;
  }

  /** Applies a Ready of a remote event: failures are reported, never thrown. */
  applyQuietly(ready: Ready): void {
    this.apply(ready).catch(() => undefined);
  }

  /** Writes the scopes that failed to persist (called on every tick). */
  retryDirty(): void {
    if (this.dirty.size > 0) this.applyQuietly({ persist: [], send: [], changed: [], rejected: [] });
  }

  get sendsDropped(): number {
    return this.droppedSends;
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        for (const item of batch) for (const scope of item.ready.persist) this.dirty.add(scope);
        const error = await this.persistDirty();
        for (const item of batch) this.carryOut(item, error);
      }
    } finally {
      this.running = false;
    }
  }

  private async persistDirty(): Promise<MarsError | undefined> {
    try {
      for (const scope of [...this.dirty].sort()) {
        await this.o.store.save(scope, this.o.node.exportScope(scope));
        this.dirty.delete(scope);
      }
      return undefined;
    } catch (err) {
      const error = err instanceof MarsError ? err : new MarsError('EIO', `cannot write metadata: ${(err as Error).message}`);
      this.o.onPersistError(error);
      return error;
    }
  }

  private carryOut(item: Queued, persistError: MarsError | undefined): void {
    const { ready } = item;
    if (persistError === undefined) {
      for (const { to, message } of ready.send) if (!this.o.send(to, FrameType.meta, encodeMetaMessage(message))) this.droppedSends++;
    }
    if (ready.changed.length > 0) this.o.onChanged(ready.changed);
    for (const r of ready.rejected) this.o.onRejected(r.peer, r.code, r.detail);
    item.done(persistError);
  }
}
