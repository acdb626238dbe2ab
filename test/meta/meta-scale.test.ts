import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runMetaScale } from '../../src/sim/meta-sim.js';

const seed = Number(process.env['SIM_SEED'] ?? 1);

void test('per-update cost follows the resource\'s members, not the cluster size; cluster keys spread in O(log n) rounds (100 vs 1,000 hosts)', () => {
  const small = runMetaScale({ hosts: 100, seed });
  const large = runMetaScale({ hosts: 1000, seed });
  for (const r of [small, large]) {
    const others = r.resourceUpdate.members - 1;
    assert.ok(r.resourceUpdate.messages <= 2 * others + 1, `seed ${seed}, ${r.hosts} hosts: ${r.resourceUpdate.messages} messages for ${others} other members`);
    assert.ok(r.resourceUpdate.hostsTouched <= r.resourceUpdate.members, `seed ${seed}: only members hear of it`);
    const log2 = Math.log2(r.hosts);
    assert.ok(r.clusterUpdate.rounds <= Math.ceil(log2), `seed ${seed}: ${r.clusterUpdate.rounds} rounds with push and gossip`);
    assert.ok(r.clusterUpdateAntiEntropyOnly.rounds <= Math.ceil(2 * log2), `seed ${seed}: ${r.clusterUpdateAntiEntropyOnly.rounds} rounds by anti-entropy alone`);
    assert.ok(r.restMessagesPerHostPerS < 2, `seed ${seed}: ${r.restMessagesPerHostPerS} messages per host per second at rest`);
  }
  const perMemberSmall = small.resourceUpdate.messages / (small.resourceUpdate.members - 1);
  const perMemberLarge = large.resourceUpdate.messages / (large.resourceUpdate.members - 1);
  assert.ok(perMemberLarge <= 1.5 * perMemberSmall + 0.5, `seed ${seed}: ${perMemberLarge} vs ${perMemberSmall} messages per other member`);
  assert.ok(large.restMessagesPerHostPerS <= 1.5 * small.restMessagesPerHostPerS, `seed ${seed}: rest traffic per host does not grow with n`);
});
