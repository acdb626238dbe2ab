/**
 * A device in memory whose fdatasync hangs while the test holds it: for checking that a
 * step that must not wait for the device's sync (the log's, replay's) does not.
 */
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { StorageFile } from '../../src/storage/storage.js';

export interface HeldDevice {
  readonly file: StorageFile;
  /** From now on, fdatasyncs hang until `release`. */
  hold(): void;
  /** Lets every hanging fdatasync go on, and later ones run at once. */
  release(): void;
  /** fdatasyncs hanging now. */
  syncsWaiting(): number;
}

/** A zeroed, synced device of `sizeBytes` in a fresh MemStorage. */
export async function heldDevice(sizeBytes: number): Promise<HeldDevice> {
  const raw = await new MemStorage().open('device', 'create');
  await raw.write(Buffer.alloc(sizeBytes), 0);
  await raw.sync();
  let held = false;
  const waiting: (() => void)[] = [];
  const file: StorageFile = {
    name: raw.name,
    read: (target, position) => raw.read(target, position),
    write: (data, position) => raw.write(data, position),
    writeBatch: (jobs) => raw.writeBatch(jobs),
    sync: () => (held ? new Promise<void>((resolve) => waiting.push(resolve)).then(() => raw.sync()) : raw.sync()),
    size: () => raw.size(),
    truncate: (lengthBytes) => raw.truncate(lengthBytes),
    close: () => raw.close(),
  };
  return {
    file,
    hold: () => (held = true),
    release: () => {
      held = false;
      for (const w of waiting.splice(0)) w();
    },
    syncsWaiting: () => waiting.length,
  };
}
