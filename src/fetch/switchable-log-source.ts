/**
 * A log source that stays the same object while the source behind it changes: a
 * resource's log is served by its logger while it is primary and by its local copies
 * while it is secondary, and each restart makes new ones. Fetch streams that wait on
 * this source wake when the source behind it is replaced, so none waits on a stale one.
 * Without a source behind it (the resource restarts in its new role, or is down), every
 * call waits until there is one again: a stream pauses rather than being told that its
 * log was removed. Once closed (the resource was deleted or left on this host), the source
 * holds nothing for good: waiting streams wake, find no log and end, and close their files.
 */
import { MarsError } from '../core/errors.js';
import type { StorageFile } from '../storage/storage.js';
import { ChangeSignal } from './change-signal.js';
import type { LogInfo, LogSource } from './log-source.js';

export class SwitchableLogSource implements LogSource {
  private current: LogSource | undefined;
  private closed = false;
  private readonly replaced = new ChangeSignal();

  /** Serves from `source` now (undefined: nothing); every waiter wakes. Ignored once closed. */
  set(source: LogSource | undefined): void {
    if (this.closed) return;
    this.current = source;
    this.replaced.notify();
  }

  /** Nothing is served here any more, for good: every waiter wakes and finds no log. */
  close(): void {
    this.closed = true;
    this.current = undefined;
    this.replaced.notify();
  }

  get source(): LogSource | undefined {
    return this.current;
  }

  async list(): Promise<LogInfo[]> {
    return (await this.ready())?.list() ?? [];
  }

  async info(name: string): Promise<LogInfo | undefined> {
    return (await this.ready())?.info(name);
  }

  async open(name: string): Promise<StorageFile> {
    const source = await this.ready();
    if (source === undefined) throw new MarsError('NOT_FOUND', `${name}: the resource is no longer served here`);
    return source.open(name);
  }

  /** The source behind, once there is one; undefined once closed. */
  private async ready(): Promise<LogSource | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      const current = this.current;
      if (current !== undefined) return current;
      await this.replaced.next();
    }
  }

  nextChange(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const replaced = this.replaced.next();
    return this.current === undefined ? replaced : Promise.race([replaced, this.current.nextChange()]);
  }
}
