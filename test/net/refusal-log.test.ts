import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { RefusalLog } from '../../src/net/refusal-log.js';
import { refusalLogLinesPerPeriodMax, refusalLogQuietMs } from '../../src/net/limits.js';

function capture(): { lines: { fields: Record<string, unknown>; message: string }[]; log: RefusalLog; clock: ManualClock } {
  const lines: { fields: Record<string, unknown>; message: string }[] = [];
  const clock = new ManualClock(1_000_000);
  return { lines, clock, log: new RefusalLog({ warn: (fields, message) => lines.push({ fields, message }) }, clock) };
}

void test('one address refused again and again makes one line per period, then a line with the count', () => {
  const { lines, log, clock } = capture();
  for (let i = 0; i < 500; i++) log.refused(`10.0.0.1:${1000 + i}`, 'PEER_BUSY', 'busy', '10.0.0.1');
  assert.equal(lines.length, 1);
  clock.advance(refusalLogQuietMs);
  log.refused('10.0.0.1:9', 'PEER_BUSY', 'busy', '10.0.0.1');
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.fields['suppressed'], 499);
});

void test('refusals from many addresses are capped per period, and the next line counts the rest', () => {
  const { lines, log, clock } = capture();
  const addresses = refusalLogLinesPerPeriodMax + 150;
  for (let i = 0; i < addresses; i++) log.refused(`10.1.${i >> 8}.${i & 255}:1`, 'FRAME_CORRUPT', 'garbage');
  assert.equal(lines.length, refusalLogLinesPerPeriodMax);
  clock.advance(refusalLogQuietMs);
  log.refused('10.2.0.1:1', 'FRAME_CORRUPT', 'garbage');
  assert.equal(lines.length, refusalLogLinesPerPeriodMax + 1);
  assert.equal(lines.at(-1)!.fields['suppressedOthers'], 150);
});
