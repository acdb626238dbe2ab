import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalCopies } from '../../src/fetch/index.js';
import type { PeerLink } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import { waitFor } from '../support/wait.js';
import { assertCopiesEqual, dialer, newClient, Primary, Server } from './helpers.js';

const testTimeoutMs = 30_000;
const MiB = 1024 * 1024;

/** Dials through `dial` and counts, on every link, the frames with a reusable buffer and the calls of their release. */
function countingReleases(dial: () => Promise<PeerLink>, counts: { pooledFrames: number; released: number; buffers: Set<ArrayBufferLike> }): () => Promise<PeerLink> {
  return async () => {
    const link = await dial();
    const attach = link.attach.bind(link);
    link.attach = (handlers) =>
      attach({
        ...handlers,
        onFrame: (frame) => {
          const release = frame.release;
          if (release === undefined) return handlers.onFrame(frame);
          counts.pooledFrames++;
          counts.buffers.add(frame.payload.buffer);
          handlers.onFrame({
            ...frame,
            release: () => {
              counts.released++;
              release();
            },
          });
        },
      });
    return link;
  };
}

void test('fetch gives frame buffers back for reuse only once their records are in the copy, records spanning frames included', { timeout: testTimeoutMs }, async () => {
  const primary = await Primary.open('alpha', 31);
  const server = await Server.listen('alpha', primary.source);
  const local = new MemStorage();
  const counts = { pooledFrames: 0, released: 0, buffers: new Set<ArrayBufferLike>() };
  const client = newClient(await LocalCopies.open(local), countingReleases(dialer('beta', 'alpha', server), counts), 32);
  try {
    client.start();
    // (MemStorage grows a file by copying it whole: few records keep the test fast.)
    // Records from a few bytes to 2.5 MiB: a large one spans three or four 1 MiB DATA
    // frames, so the verifier holds views of several frames while later ones arrive.
    let lamport = 1n;
    for (let round = 0; round < 6; round++) {
      for (const bytes of [round % 2 === 0 ? Math.floor(2.5 * MiB) : 300 * 1024, 1 + primary.random.int(MiB)]) {
        await primary.writer.append({ kind: 'write', lamport: lamport++, offsetBytes: 0, payload: primary.random.bytes(bytes) });
      }
      for (let i = 0; i < 5; i++) await primary.writer.append({ kind: 'write', lamport: lamport++, offsetBytes: 4096 * i, payload: primary.random.bytes(1 + primary.random.int(8192)) });
      await primary.sync();
    }
    const name = primary.logName(1);
    await waitFor('the copy reaches the durable end', () => (local.image(name)?.length ?? 0) === primary.durableBytes(), 20_000, 5);
    await assertCopiesEqual(primary.storage, local, 'after catching up');
    assert.equal(server.streamStarts.length, 1, `one stream from start to end: no record failed its checks and was fetched again (${JSON.stringify(server.streamStarts)})`);
    assert.ok(counts.released > 0, 'frame buffers were given back');
    assert.ok(counts.buffers.size < counts.pooledFrames, `buffers were reused: ${counts.buffers.size} buffers for ${counts.pooledFrames} frames`);
  } finally {
    await client.stop();
    await server.close();
  }
});
