/**
 * The metadata protocol between two hosts, as the core sees it (the wire form is in
 * message-codec.ts). Every message carries the sender's Lamport stamp at sending time.
 *
 *   push     entries, right after a change (to a resource's members, or by gossip)
 *   digest   "here are my roots" for the scopes both hosts share (anti-entropy opener);
 *            with `reply`, "and tell me yours" (wait-cluster)
 *   summary  for differing scopes: bucket sums, or the (key, hash) pairs of some buckets
 *   delta    entries the other side lacks, keys this side wants, tombstones already purged
 */
import type { Entry } from './entry.js';
import type { ScopeId } from './keys.js';

export interface KeyedEntry {
  readonly key: string;
  readonly entry: Entry;
}

export interface ScopeDigest {
  readonly scope: ScopeId;
  readonly root: bigint;
  readonly count: number;
}

export interface BucketSummary {
  readonly scope: ScopeId;
  readonly kind: 'buckets';
  /** One sum per bucket (`digestBucketsCount` of them). */
  readonly sums: readonly bigint[];
}

export interface KeySummary {
  readonly scope: ScopeId;
  readonly kind: 'keys';
  /** The buckets listed completely (every key of them is in `items`). */
  readonly buckets: readonly number[];
  readonly items: readonly { readonly key: string; readonly hash: bigint }[];
}

export type ScopeSummary = BucketSummary | KeySummary;

export interface PurgedNotice {
  readonly key: string;
  readonly lamport: bigint;
}

export interface PushMessage {
  readonly type: 'push';
  readonly sentLamport: bigint;
  readonly entries: readonly KeyedEntry[];
}

export interface DigestMessage {
  readonly type: 'digest';
  readonly sentLamport: bigint;
  readonly scopes: readonly ScopeDigest[];
  /** Asks the receiver to answer with its own digests of these scopes (wait-cluster compares roots). */
  readonly reply?: true;
}

export interface SummaryMessage {
  readonly type: 'summary';
  readonly sentLamport: bigint;
  readonly scopes: readonly ScopeSummary[];
}

export interface DeltaMessage {
  readonly type: 'delta';
  readonly sentLamport: bigint;
  readonly entries: readonly KeyedEntry[];
  /** Keys the sender lacks or holds differently; answered with a delta without `want`. */
  readonly want: readonly string[];
  /** Tombstones the sender has purged (every member had them): the receiver may purge too. */
  readonly purged: readonly PurgedNotice[];
}

export type MetaMessage = PushMessage | DigestMessage | SummaryMessage | DeltaMessage;
export type MetaMessageType = MetaMessage['type'];
