/**
 * A log source that stays the same object while the source behind it changes: a
 * resource's log is served by its logger while it is primary and by its local copies
 * while it is secondary, and each restart makes new ones. Fetch streams that wait on
 * this source wake when the source behind it is replaced, so none waits on a stale one.
 * Without a source behind it (the resource restarts in its new role, or is down), every
 * call waits until there is one again: a stream pauses rather than being told that its
 * log was removed.
 */
import type { StorageFile } from '../storage/storage.js';
import { ChangeSignal } from './change-signal.js';
import type { LogInfo, LogSource } from './log-source.js';

export class SwitchableLogSource implements LogSource {
  private current: LogSource | undefined;
  private readonly replaced = new ChangeSignal();

  /** Serves from `source` now (undefined: nothing); every waiter wakes. */
  set(source: LogSource | undefined): void {
    this.current = source;
    this.replaced.notify();
  }

  get source(): LogSource | undefined {
    return this.current;
  }

  async list(): Promise<LogInfo[]> {
    return (await this.ready()).list();
  }

  async info(name: string): Promise<LogInfo | undefined> {
    return (await this.ready()).info(name);
  }

  async open(name: string): Promise<StorageFile> {
    return (await this.ready()).open(name);
  }

  private async ready(): Promise<LogSource> {
    for (;;) {
      const current = this.current;
      if (current !== undefined) return current;
      await this.replaced.next();
    }
  }

  nextChange(): Promise<void> {
    const replaced = this.replaced.next();
    return this.current === undefined ? replaced : Promise.race([replaced, this.current.nextChange()]);
  }
}
