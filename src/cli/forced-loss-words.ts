/**
 * How `primary R --force` words what the takeover loses of the old primary's log (the
 * daemon's count: src/strategy/forced-loss.ts). Three cases, each with its own words:
 *
 *   exact      the old primary said where its log ends for good: "N bytes … are lost"
 *   at least   the most the cluster knew it had durable, and from whom: "at least N bytes"
 *   unknown    no member knew how far its log reached beyond this host's copy
 */

export interface ForcedLossAnswer {
  readonly missingBytes?: number | null;
  readonly missingExact?: boolean;
  readonly missingFrom?: readonly string[];
}

/** "a", "a and b", "a, b and c". */
function listed(words: readonly string[]): string {
  return words.length <= 1 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} and ${words.at(-1)!}`;
}

export function forcedLossWords(answer: ForcedLossAnswer): string {
  const bytes = answer.missingBytes;
  if (bytes === null || bytes === undefined) {
    return "an unknown number of bytes of the old primary's log are lost (no member knew how far its log reached beyond this host's copy)";
  }
  if (answer.missingExact === true) return `${bytes} bytes of the old primary's log are lost (durable there, not fetched here; its log ended there)`;
  const from = answer.missingFrom ?? [];
  const known = from.length === 0 ? 'known durable there' : `known durable there from ${listed(from)}`;
  return `at least ${bytes} bytes of the old primary's log are lost (${known}, not fetched here; it may have made more durable since the cluster last heard from it, which no member can know)`;
}
