/**
 * A replica that cannot open leaves no file open behind it: Replica.open opens the last
 * local copy of the log first, and a state file it reads afterwards may be damaged. A
 * handle dropped without close() is closed by Node on garbage collection, with the warning
 * "Closing file descriptor N on garbage collection" (which also breaks the daemon's JSON
 * log); here every open of the storage is counted against its close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replica, type ReplicaOptions } from '../../src/daemon/replica.js';
import { encodeRecord } from '../../src/log/record.js';
import { formatLogName } from '../../src/log/names.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { Storage, StorageFile } from '../../src/storage/storage.js';

/** A MemStorage whose open files are counted. */
function countingStorage(): { storage: Storage; mem: MemStorage; open: () => number } {
  const mem = new MemStorage();
  let openFiles = 0;
  const storage = new Proxy(mem, {
    get(target, property, receiver) {
      if (property !== 'open') return Reflect.get(target, property, receiver) as unknown;
      return async (name: string, mode: Parameters<Storage['open']>[1]): Promise<StorageFile> => {
        const file = await target.open(name, mode);
        openFiles++;
        let closed = false;
        return new Proxy(file, {
          get(f, p, r) {
            if (p !== 'close') return Reflect.get(f, p, r) as unknown;
            return async () => {
              if (!closed) openFiles--;
              closed = true;
              await f.close();
            };
          },
        });
      };
    },
  });
  return { storage, mem, open: () => openFiles };
}

void test('Replica.open that fails on a damaged sync state closes the local copy it had opened', async () => {
  const { storage, mem, open } = countingStorage();
  const copy = await mem.open(formatLogName(1, 'alpha'), 'create');
  await copy.write(encodeRecord({ kind: 'zeroes', seq: 1n, lamport: 1n, offsetBytes: 0, lengthBytes: 4096 }, 0), 0);
  await copy.close();
  await mem.writeAtomic('sync-state', Buffer.from('{"not": "a sync state"}\n'));
  const options = { resource: 'r0', host: 'beta', storage, sizeBytes: 1 << 20, log: () => undefined } as unknown as ReplicaOptions;
  await assert.rejects(Replica.open(options));
  assert.equal(open(), 0, 'no file of the resource directory is left open');
});
