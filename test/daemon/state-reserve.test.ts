/**
 * The state reserve (src/daemon/state-reserve.ts): fetch never writes its copies into the
 * last free bytes of the log filesystem, which replay's state files need. A model
 * filesystem: the property is that fetch alone never takes free space below the reserve,
 * whatever the sizes of its writes, and that statfs is asked seldom while room is ample.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MarsError } from '../../src/core/errors.js';
import { StateReserve } from '../../src/daemon/state-reserve.js';
import { spaceLimitsDefault, thresholdBytes } from '../../src/space/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const MiB = 1024 * 1024;

/** A filesystem of `sizeBytes` with `freeBytes` free, a clock, and a reserve over both. */
function modelFs(sizeBytes: number, freeBytes: number) {
  const fs = { sizeBytes, freeBytes, nowMs: 0 };
  const reserve = new StateReserve({
    dir: '/state',
    limits: spaceLimitsDefault,
    nowMs: () => fs.nowMs,
    look: () => Promise.resolve({ sizeBytes: fs.sizeBytes, freeBytes: fs.freeBytes }),
  });
  /** One append of fetch: asks for room, then writes (or is refused). */
  const append = async (bytes: number): Promise<boolean> => {
    try {
      await reserve.room(bytes);
    } catch (err) {
      assert.ok(err instanceof MarsError && err.code === 'ENOSPC', `refused with ENOSPC: ${String(err)}`);
      return false;
    }
    fs.freeBytes -= bytes;
    return true;
  };
  return { fs, reserve, append, reserveBytes: thresholdBytes(sizeBytes, spaceLimitsDefault.stateReserve) };
}

void test('fetch alone never writes into the state reserve, whatever its writes and the time between them', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 16 * MiB, max: 4096 * MiB }),
      fc.array(fc.record({ bytes: fc.integer({ min: 0, max: 12 * MiB }), afterMs: fc.integer({ min: 0, max: 3_000 }), freedBytes: fc.integer({ min: 0, max: 8 * MiB }) }), { maxLength: 200 }),
      async (sizeBytes, steps) => {
        const m = modelFs(sizeBytes, sizeBytes);
        for (const step of steps) {
          m.fs.nowMs += step.afterMs;
          // Replay lets copies go now and then (never more than was written).
          m.fs.freeBytes = Math.min(sizeBytes, m.fs.freeBytes + step.freedBytes);
          await m.append(step.bytes);
          assert.ok(m.fs.freeBytes >= m.reserveBytes, `free ${m.fs.freeBytes} below the reserve ${m.reserveBytes} of ${sizeBytes}`);
        }
      },
    ),
    { seed: fcSeed },
  );
});

void test('a write that would reach into the reserve is refused with a clear ENOSPC, and the next ask looks again', async () => {
  const m = modelFs(48 * MiB, 10 * MiB);
  assert.equal(m.reserveBytes, 4 * MiB, 'on 48 MiB the reserve is its 4 MiB floor');
  assert.equal(await m.append(6 * MiB), true, 'exactly up to the reserve is allowed');
  await assert.rejects(m.reserve.room(1), (err: unknown) => {
    assert.ok(err instanceof MarsError && err.code === 'ENOSPC');
    assert.match(err.message, /^log filesystem \/state: 4194304 bytes free, the last 4194304 are kept for replay's state files$/);
    return true;
  });
  const looks = m.reserve.lookCount;
  m.fs.freeBytes += 8 * MiB; // replay let a copy go
  assert.equal(await m.append(1 * MiB), true, 'room again as soon as there is');
  assert.equal(m.reserve.lookCount, looks + 1, 'after a refusal every ask looks again');
});

void test('while room is ample statfs is asked seldom: after half the room seen, or after the check interval', async () => {
  const m = modelFs(1024 * MiB, 1000 * MiB);
  const room = 1000 * MiB - m.reserveBytes;
  let appends = 0;
  while ((appends + 1) * MiB <= room / 2) {
    assert.equal(await m.append(MiB), true);
    appends++;
  }
  assert.equal(m.reserve.lookCount, 1, `one look for ${appends} appends within half the room`);
  assert.equal(await m.append(MiB), true);
  assert.equal(m.reserve.lookCount, 2, 'the append past half the room looks again');
  m.fs.nowMs += spaceLimitsDefault.stateReserveCheckMs;
  assert.equal(await m.append(0), true);
  assert.equal(m.reserve.lookCount, 3, 'and so does the first one after the check interval');
});

void test('two fetches (two resources on one log filesystem) asking at once, before either has written, do not both get the same room', async () => {
  const m = modelFs(48 * MiB, 14 * MiB); // 10 MiB of room above the 4 MiB reserve
  // Each append is written only after both asks were answered, as two streams' pwrites that are still under way.
  const granted = await Promise.all([6 * MiB, 6 * MiB].map((bytes) => m.reserve.room(bytes).then(() => bytes, () => 0)));
  for (const bytes of granted) m.fs.freeBytes -= bytes;
  assert.deepEqual(granted.sort(), [0, 6 * MiB], `one is refused: free now ${m.fs.freeBytes}, reserve ${m.reserveBytes}`);
  assert.ok(m.fs.freeBytes >= m.reserveBytes);
});
