/**
 * The emergency state codec: two slots, the valid one with the highest generation wins,
 * a torn or damaged slot falls back to the other, and a file with no valid slot is an
 * explicit error. The bytes of one slot are pinned, since the format is on disk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MarsError } from '../../src/core/errors.js';
import { emergencySlotBytes, encodeEmergencySlot, encodeEmergencyState, decodeEmergencyState, type EmergencyState } from '../../src/space/emergency-state.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);

function withSlot(file: Buffer, state: EmergencyState): Buffer {
  const copy = Buffer.from(file);
  encodeEmergencySlot(state).copy(copy, state.generation % 2n === 0n ? 0 : emergencySlotBytes);
  return copy;
}

void test('a saved state reads back, and the later generation wins over the earlier slot', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 2n ** 62n }), fc.integer({ min: 0, max: 2 ** 40 }), fc.bigInt({ min: 0n, max: 2n ** 62n }), fc.boolean(), (generation, logNumber, nextSeq, emergency) => {
      const first: EmergencyState = { mode: 'logging', generation, logNumber: 1, nextSeq: 1n };
      const second: EmergencyState = { mode: emergency ? 'emergency' : 'logging', generation: generation + 1n, logNumber, nextSeq };
      const file = withSlot(withSlot(Buffer.alloc(4096), first), second);
      assert.deepEqual(decodeEmergencyState(file, 'f'), second);
    }),
    { seed: fcSeed },
  );
});

void test('a torn save of the newer slot falls back to the older one', () => {
  const older: EmergencyState = { mode: 'logging', generation: 4n, logNumber: 0, nextSeq: 9n };
  const newer: EmergencyState = { mode: 'emergency', generation: 5n, logNumber: 7, nextSeq: 12n };
  const file = withSlot(withSlot(Buffer.alloc(4096), older), newer);
  file.writeUInt8(file.readUInt8(emergencySlotBytes + 30) ^ 0xff, emergencySlotBytes + 30);
  assert.deepEqual(decodeEmergencyState(file, 'f'), older);
});

void test('a file without a valid slot is BAD_STATE_DIR', () => {
  assert.throws(
    () => decodeEmergencyState(Buffer.alloc(4096), 'emergency-alpha'),
    (err: unknown) => err instanceof MarsError && err.code === 'BAD_STATE_DIR' && /emergency-alpha/.test(err.message),
  );
});

void test('the slot layout of version 1 stays as documented', () => {
  const file = encodeEmergencyState({ mode: 'emergency', generation: 3n, logNumber: 5, nextSeq: 77n });
  assert.equal(file.length, 4096);
  assert.equal(file.subarray(0, 8).toString('ascii'), 'MARSEMRG');
  assert.equal(file.readUInt16LE(8), 1);
  assert.equal(file[10], 1);
  assert.equal(file.readBigUInt64LE(16), 3n);
  assert.equal(file.readBigUInt64LE(24), 5n);
  assert.equal(file.readBigUInt64LE(32), 77n);
  assert.equal(file.subarray(0, 44).toString('hex'), '4d415253454d52470100010000000000030000000000000005000000000000004d00000000000000cd1b1fda');
});
