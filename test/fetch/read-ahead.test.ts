import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fetchLimits } from '../../src/fetch/index.js';
import { ReadAhead } from '../../src/fetch/server.js';
import { MemStorage } from '../../src/storage/mem-storage.js';

const chunkBytes = fetchLimits.fetchChunkBytesMax;

void test('a chunk read ahead under a lower limit keeps its length when the limit has grown since', async () => {
  const storage = new MemStorage();
  const file = await storage.open('log', 'create');
  const image = Buffer.alloc(5 * chunkBytes);
  for (let i = 0; i < image.length; i += 4096) image.writeUInt32LE(i, i);
  await file.write(image, 0);
  const ahead = new ReadAhead(file, undefined);
  const firstLimit = chunkBytes + chunkBytes / 2 + 512;
  const first = await ahead.next(0, firstLimit);
  assert.equal(first.lengthBytes, chunkBytes);
  assert.ok(first.data.equals(image.subarray(0, chunkBytes)));
  // The limit (the client's credit) grew; the read ahead of [chunk, firstLimit) comes first, as read.
  const second = await ahead.next(chunkBytes, image.length);
  assert.equal(second.lengthBytes, firstLimit - chunkBytes);
  assert.equal(second.data.length, second.lengthBytes);
  assert.ok(second.data.equals(image.subarray(chunkBytes, firstLimit)));
  const third = await ahead.next(firstLimit, image.length);
  assert.equal(third.lengthBytes, chunkBytes);
  assert.ok(third.data.equals(image.subarray(firstLimit, firstLimit + chunkBytes)));
  await file.close();
});
