/**
 * The stage of log space management (pure): thresholds in order on every filesystem size,
 * examples of each stage, and properties of the hysteresis: up at once, down only with
 * room to spare, never flipping back and forth within the hysteresis band.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nextSpaceStage, spaceLimitsDefault, spaceStages, stageRank, stageThresholds, type SpaceStage } from '../../src/space/index.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 1);
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const limits = spaceLimitsDefault;
const stage = fc.constantFrom<SpaceStage>(...spaceStages);
const sizes = fc.integer({ min: 4 * MiB, max: 64 * 1024 * GiB });

void test('the thresholds are in order and within the filesystem on small and large filesystems', () => {
  fc.assert(
    fc.property(sizes, (sizeBytes) => {
      const t = stageThresholds(sizeBytes, limits);
      assert.ok(t.warnBytes >= t.reclaimBytes && t.reclaimBytes >= t.emergencyBytes && t.emergencyBytes > 0);
      assert.ok(t.warnBytes <= sizeBytes / 2, `warn at ${t.warnBytes} of ${sizeBytes}`);
      assert.ok(t.hysteresisBytes > 0 && t.hysteresisBytes <= sizeBytes / 10);
    }),
    { seed: fcSeed },
  );
  const small = stageThresholds(48 * MiB, limits);
  assert.ok(small.emergencyBytes < 12 * MiB && small.emergencyBytes >= 2 * MiB, `48 MiB: emergency below ${small.emergencyBytes}`);
  const large = stageThresholds(10 * 1024 * GiB, limits);
  assert.equal(large.emergencyBytes, 16 * GiB, 'a 10 TiB filesystem keeps at most the cap free');
});

void test('each stage is reached as soon as free space falls below its threshold', () => {
  const size = 10 * GiB;
  const t = stageThresholds(size, limits);
  assert.equal(nextSpaceStage('ok', { sizeBytes: size, freeBytes: t.warnBytes }, limits), 'ok');
  assert.equal(nextSpaceStage('ok', { sizeBytes: size, freeBytes: t.warnBytes - 1 }, limits), 'warn');
  assert.equal(nextSpaceStage('ok', { sizeBytes: size, freeBytes: t.reclaimBytes - 1 }, limits), 'reclaim');
  assert.equal(nextSpaceStage('ok', { sizeBytes: size, freeBytes: t.emergencyBytes - 1 }, limits), 'emergency');
  assert.equal(nextSpaceStage('warn', { sizeBytes: size, freeBytes: 0 }, limits), 'emergency');
});

void test('emergency mode is left only once free space is above its threshold plus the hysteresis', () => {
  const size = 48 * MiB;
  const t = stageThresholds(size, limits);
  const at = (freeBytes: number): SpaceStage => nextSpaceStage('emergency', { sizeBytes: size, freeBytes }, limits);
  assert.equal(at(t.emergencyBytes), 'emergency', 'just above the threshold is not enough');
  assert.equal(at(t.emergencyBytes + t.hysteresisBytes - 1), 'emergency');
  assert.notEqual(at(t.emergencyBytes + t.hysteresisBytes), 'emergency');
  assert.equal(at(size), 'ok');
});

void test('the stage is never milder than free space alone says, and never harsher than the previous stage and free space together', () => {
  fc.assert(
    fc.property(stage, sizes, fc.double({ min: 0, max: 1, noNaN: true }), (previous, sizeBytes, share) => {
      const freeBytes = Math.floor(sizeBytes * share);
      const next = nextSpaceStage(previous, { sizeBytes, freeBytes }, limits);
      const raw = nextSpaceStage('ok', { sizeBytes, freeBytes }, limits);
      assert.ok(stageRank(next) >= stageRank(raw), `${next} is milder than ${raw}`);
      assert.ok(stageRank(next) <= Math.max(stageRank(previous), stageRank(raw)), `${next} is harsher than ${previous} and ${raw}`);
    }),
    { seed: fcSeed },
  );
});

void test('free space moving within the hysteresis band after a stage was reached does not leave it', () => {
  fc.assert(
    fc.property(sizes, fc.double({ min: 0, max: 1, noNaN: true }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }), (sizeBytes, share, moves) => {
      const t = stageThresholds(sizeBytes, limits);
      const start = Math.floor(sizeBytes * share);
      const reached = nextSpaceStage('ok', { sizeBytes, freeBytes: start }, limits);
      let current = reached;
      for (const m of moves) {
        const freeBytes = Math.min(sizeBytes, start + Math.floor(m * (t.hysteresisBytes - 1)));
        current = nextSpaceStage(current, { sizeBytes, freeBytes }, limits);
        assert.equal(current, reached, `left ${reached} for ${current} within the band`);
      }
    }),
    { seed: fcSeed },
  );
});

void test('the stage falls as free space grows and rises as it shrinks (monotone in free space)', () => {
  fc.assert(
    fc.property(stage, sizes, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (previous, sizeBytes, a, b) => {
      const [low, high] = a < b ? [a, b] : [b, a];
      const fewer = nextSpaceStage(previous, { sizeBytes, freeBytes: Math.floor(sizeBytes * low) }, limits);
      const more = nextSpaceStage(previous, { sizeBytes, freeBytes: Math.floor(sizeBytes * high) }, limits);
      assert.ok(stageRank(fewer) >= stageRank(more));
    }),
    { seed: fcSeed },
  );
});
