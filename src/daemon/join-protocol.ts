/**
 * The join channel, both ends. A host that joins (join-cluster) or a cluster that merges
 * (merge-cluster) proves the secret without knowing the cluster id or the member's name
 * (Handshake.joiner), then the member sends the live entries of its cluster scope as
 * `push` messages and ends with the `digest` of exactly those entries; the joiner checks
 * that the digest matches what it got, and closes.
 *
 * The member stores nothing that arrives on a join link: frames from the joiner are
 * ignored. So a join that fails (wrong secret, a name already taken, a clock too far off)
 * leaves no trace in the cluster; the joiner's host record reaches the others only when
 * its own marsd runs.
 */
import { MarsError } from '../core/errors.js';
import { decodeMetaMessage, encodeMetaMessage, joinSnapshot, JoinSnapshotReceiver, type Entry, type PushMessage } from '../meta/index.js';
import { FrameType, joinPeer, type PeerLink, type TlsOptions } from '../net/index.js';

/** The member closes a join link the joiner has not closed within this time after the snapshot. */
export const joinServeMsMax = 30_000;
/** The joiner gives up on a snapshot not complete within this time. */
export const joinSnapshotMsMax = 30_000;

/** Sends the snapshot of `cluster` (the node's cluster scope) on a join link. */
export async function serveJoin(link: PeerLink, cluster: ReadonlyMap<string, Entry>, sentLamport: bigint): Promise<void> {
  const timer = setTimeout(() => link.close(), joinServeMsMax);
  timer.unref();
  link.attach({ onFrame: () => undefined, onClose: () => clearTimeout(timer) });
  const snapshot = joinSnapshot(cluster);
  for (const entries of snapshot.batches) {
    await link.writable();
    link.send(FrameType.meta, encodeMetaMessage({ type: 'push', sentLamport, entries }));
  }
  link.send(FrameType.meta, encodeMetaMessage({ type: 'digest', sentLamport, scopes: [snapshot.digest] }));
}

export interface FetchedCluster {
  readonly clusterId: string;
  /** The member that answered. */
  readonly peerHost: string;
  /** The snapshot as it came (for MetaNode.receive, in merge-cluster). */
  readonly pushes: readonly PushMessage[];
  readonly entries: ReadonlyMap<string, Entry>;
}

export interface FetchOptions {
  readonly host: string;
  readonly port: number;
  readonly secret: Buffer;
  readonly localHost: string;
  readonly localAddress?: string;
  readonly tls?: TlsOptions;
}

/** Dials a member on the join channel and fetches its cluster snapshot. Rejects with a MarsError. */
export async function fetchCluster(options: FetchOptions): Promise<FetchedCluster> {
  const link = await joinPeer(options);
  return new Promise((resolve, reject) => {
    const receiver = new JoinSnapshotReceiver();
    const pushes: PushMessage[] = [];
    const fail = (error: MarsError): void => {
      clearTimeout(timer);
      link.close();
      reject(error);
    };
    const timer = setTimeout(() => fail(new MarsError('TIMEOUT', `${link.info.remoteAddress} sent no complete snapshot within ${joinSnapshotMsMax} ms`)), joinSnapshotMsMax);
    link.attach({
      onFrame: (frame) => {
        try {
          if (frame.type !== FrameType.meta) throw new MarsError('META_BAD_MESSAGE', `unexpected frame type ${frame.type} on the join channel`);
          const message = decodeMetaMessage(frame.payload);
          if (message.type === 'push') {
            const problem = receiver.add(message.entries);
            if (problem !== undefined) throw new MarsError('META_BAD_MESSAGE', `bad snapshot: ${problem}`);
            pushes.push(message);
            return;
          }
          if (message.type !== 'digest' || message.scopes[0] === undefined) throw new MarsError('META_BAD_MESSAGE', `unexpected ${message.type} on the join channel`);
          const entries = receiver.finish(message.scopes[0]);
          if (entries === undefined) throw new MarsError('META_BAD_MESSAGE', 'the snapshot does not match its digest');
          clearTimeout(timer);
          resolve({ clusterId: link.info.clusterId, peerHost: link.peerHost, pushes, entries });
          link.close(); // its onClose finds the promise settled
        } catch (err) {
          fail(err instanceof MarsError ? err : new MarsError('META_BAD_MESSAGE', String(err)));
        }
      },
      onClose: (error) => fail(error ?? new MarsError('PEER_CLOSED', `${link.info.remoteAddress} closed the join channel before the snapshot was complete`)),
    });
  });
}
