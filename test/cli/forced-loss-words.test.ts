/** The words of `primary --force` for what is lost: exact, at least (with the sources), unknown. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forcedLossWords } from '../../src/cli/forced-loss-words.js';

test('an exact loss, a lower bound with its sources, and an unknown loss each have their words', () => {
  assert.equal(forcedLossWords({ missingBytes: 4096, missingExact: true, missingFrom: ["alpha's indicator"] }), "4096 bytes of the old primary's log are lost (durable there, not fetched here; its log ended there)");
  assert.equal(
    forcedLossWords({ missingBytes: 5, missingExact: false, missingFrom: ["alpha's indicator", "gamma's copy", "this host's fetch"] }),
    "at least 5 bytes of the old primary's log are lost (known durable there from alpha's indicator, gamma's copy and this host's fetch, not fetched here; it may have made more durable since the cluster last heard from it, which no member can know)",
  );
  assert.equal(
    forcedLossWords({ missingBytes: 0, missingExact: false, missingFrom: [] }),
    "at least 0 bytes of the old primary's log are lost (known durable there, not fetched here; it may have made more durable since the cluster last heard from it, which no member can know)",
  );
  assert.equal(forcedLossWords({ missingBytes: null, missingExact: false, missingFrom: [] }), "an unknown number of bytes of the old primary's log are lost (no member knew how far its log reached beyond this host's copy)");
});
