/**
 * Mutual authentication of two peers, as a pure state machine (frames in, frames out).
 * Each side sends a fresh random nonce; each proves that it holds the cluster secret by
 * an HMAC-SHA256 over both nonces, the cluster id, both host names, the channel and
 * (with TLS) the TLS session's exported keying material. The secret never crosses the
 * wire; a proof is useless in any other session, direction, channel or pair of hosts;
 * with TLS, a man in the middle holds two TLS sessions and cannot produce either proof.
 *
 * The initiator proves first: a responder proves nothing to a caller that has not proved
 * the secret, so a stranger never gets an HMAC under the secret to guess it offline.
 * Outside the join channel each side also signs its proof with its host key (Ed25519),
 * checked against the key pinned for its name: holding the secret is not enough to
 * authenticate as another host.
 *
 *   initiator                                   responder
 *   HELLO_I  channel, nonceI, cluster, I, R  ->
 *                                            <-  HELLO_R  channel, nonceR, cluster, R, I
 *   PROOF    proofI [sigI]                   ->
 *                                            <-  ACCEPT   proofR [sigR]   (or REFUSE reason, either way)
 *
 * docs/network.md lays out every byte.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MarsError, type MarsErrorCode } from '../core/errors.js';
import { isValidName, signBytes, signatureBytes, verifyBytes, type SigningKey } from '../meta/index.js';
import { FrameType, type Frame } from './frame.js';
import { nonceBytes, secretBytesMin } from './limits.js';

/**
 * What a connection carries: metadata, log fetch and sync never share one. `join` is the
 * one-shot channel of `join-cluster` and `merge-cluster`: the initiator knows the secret
 * but neither the cluster id nor the responder's name, and learns both from the proven
 * HELLO_R; its HELLO_I leaves both empty.
 */
export const Channel = { meta: 1, fetch: 2, sync: 3, join: 4 } as const;
export type ChannelName = keyof typeof Channel;

export const RefuseReason = { cluster: 1, host: 2, proof: 3, protocol: 4, busy: 5 } as const;
type RefuseReasonName = keyof typeof RefuseReason;

const proofBytes = 32;
const transcriptLabel = Buffer.from('MARS-AUTH-2', 'ascii');
const signatureLabel = Buffer.from('MARS-AUTH-SIG-2', 'ascii');
const roleInitiator = 1;
const roleResponder = 2;

interface Hello {
  readonly channel: ChannelName;
  readonly nonce: Buffer;
  readonly clusterId: string;
  readonly from: string;
  readonly to: string;
}

function channelName(code: number): ChannelName | undefined {
  return (Object.keys(Channel) as ChannelName[]).find((name) => Channel[name] === code);
}

function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'ascii');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

export function encodeHello(hello: Hello): Buffer {
  const parts = [Buffer.from([Channel[hello.channel]]), hello.nonce];
  parts.push(lengthPrefixed(hello.clusterId), lengthPrefixed(hello.from), lengthPrefixed(hello.to));
  return Buffer.concat(parts);
}

/** A cluster id and its secret; a responder may accept former ones (after merge-cluster). */
export interface Identity {
  readonly clusterId: string;
  readonly secret: Buffer;
}

/** Names in a hello: valid names; only a join HELLO_I leaves the cluster id and the responder empty. */
function helloNamesValid(channel: ChannelName, fromInitiator: boolean, clusterId: string, from: string, to: string): boolean {
  if (!isValidName(from)) return false;
  if (channel === 'join' && fromInitiator) return clusterId === '' && to === '';
  return isValidName(clusterId) && isValidName(to);
}

/** Decodes a HELLO payload (HELLO_I if `fromInitiator`, else HELLO_R), or returns undefined if it is malformed. */
export function decodeHello(payload: Buffer, fromInitiator: boolean): Hello | undefined {
  let at = 0;
  const channel = channelName(payload[at++] ?? 0);
  const nonce = payload.subarray(at, (at += nonceBytes));
  const names: string[] = [];
  for (let i = 0; i < 3; i++) {
    const length = payload[at++];
    if (length === undefined || at + length > payload.length) return undefined;
    names.push(payload.subarray(at, (at += length)).toString('ascii'));
  }
  const [clusterId, from, to] = names;
  if (channel === undefined || nonce.length !== nonceBytes) return undefined;
  if (at !== payload.length || clusterId === undefined || from === undefined || to === undefined) return undefined;
  if (!helloNamesValid(channel, fromInitiator, clusterId, from, to)) return undefined;
  return { channel, nonce, clusterId, from, to };
}

/** Bytes of a PROOF or ACCEPT payload: the proof, and outside the join channel the host key's signature of it. */
export function proofPayloadBytes(channel: ChannelName): number {
  return channel === 'join' ? proofBytes : proofBytes + signatureBytes;
}

function signedProof(proof: Buffer): Buffer {
  return Buffer.concat([signatureLabel, proof]);
}

export interface ProofInput {
  readonly secret: Buffer;
  readonly role: typeof roleInitiator | typeof roleResponder;
  readonly clusterId: string;
  readonly initiator: string;
  readonly responder: string;
  readonly channel: ChannelName;
  readonly nonceInitiator: Buffer;
  readonly nonceResponder: Buffer;
  readonly channelBinding: Buffer;
}

/** HMAC-SHA256(secret, label | role | cluster | initiator | responder | channel | nonces | binding). */
export function computeProof(p: ProofInput): Buffer {
  const hmac = createHmac('sha256', p.secret);
  hmac.update(transcriptLabel);
  hmac.update(Buffer.from([p.role]));
  hmac.update(lengthPrefixed(p.clusterId));
  hmac.update(lengthPrefixed(p.initiator));
  hmac.update(lengthPrefixed(p.responder));
  hmac.update(Buffer.from([Channel[p.channel], p.channelBinding.length]));
  hmac.update(p.nonceInitiator);
  hmac.update(p.nonceResponder);
  hmac.update(p.channelBinding);
  return hmac.digest();
}

export interface HandshakeCommon {
  readonly secret: Buffer;
  readonly clusterId: string;
  readonly localHost: string;
  /** This side's fresh nonce (`nonceBytes` from a cryptographic source, in the shell). */
  readonly nonce: Buffer;
  /** TLS exported keying material, identical on both ends of one TLS session; empty without TLS. */
  readonly channelBinding?: Buffer;
  /** This host's key: it signs this side's proof (without one, the signature is zeros). */
  readonly signingKey?: SigningKey;
  /** The key pinned for a host (undefined: none yet); a peer whose name has one must sign with it. */
  readonly peerKey?: (host: string) => string | undefined;
}

export interface InitiatorParams extends HandshakeCommon {
  readonly peerHost: string;
  readonly channel: ChannelName;
}

/** A joiner knows the secret only: it learns the cluster id and the responder's name from HELLO_R. */
export interface JoinerParams {
  readonly secret: Buffer;
  readonly localHost: string;
  readonly nonce: Buffer;
  readonly channelBinding?: Buffer;
}

export interface ResponderParams extends HandshakeCommon {
  /** Whether to talk to this host on this channel at all (e.g. it is a known host). */
  readonly acceptPeer?: (host: string, channel: ChannelName) => boolean;
  /** Former identities still accepted from initiators (hosts not yet told of a merge). */
  readonly formerIdentities?: readonly Identity[];
}

export type HandshakeState = 'awaitHello' | 'awaitResponderHello' | 'awaitProof' | 'awaitAccept' | 'done' | 'refused';

export interface HandshakeStep {
  readonly send: readonly Frame[];
  readonly state: HandshakeState;
  readonly error: MarsError | undefined;
}

const refuseCodes: Record<RefuseReasonName, MarsErrorCode> = {
  cluster: 'CLUSTER_MISMATCH',
  host: 'HOST_MISMATCH',
  proof: 'AUTH_FAILED',
  protocol: 'AUTH_FAILED',
  busy: 'PEER_BUSY',
};

export function refuseFrame(reason: RefuseReasonName): Frame {
  return { type: FrameType.refuse, payload: Buffer.from([RefuseReason[reason]]) };
}

export class Handshake {
  private stateValue: HandshakeState;
  private errorValue: MarsError | undefined;
  private peerNonce: Buffer | undefined;
  private peer: string | undefined;
  private channelValue: ChannelName | undefined;
  /** The identity the proofs use: the own one, a former one a responder accepted, or the one a joiner learnt. */
  private identity: Identity;

  private constructor(
    private readonly common: HandshakeCommon,
    private readonly initiator: InitiatorParams | undefined,
    private readonly responder: ResponderParams | undefined,
  ) {
    if (common.secret.length < secretBytesMin) throw new MarsError('EINVAL', `the cluster secret must have at least ${secretBytesMin} bytes`);
    if (common.nonce.length !== nonceBytes) throw new MarsError('EINVAL', `a nonce has ${nonceBytes} bytes`);
    this.stateValue = initiator !== undefined ? 'awaitResponderHello' : 'awaitHello';
    this.peer = initiator?.channel === 'join' ? undefined : initiator?.peerHost;
    this.channelValue = initiator?.channel;
    this.identity = { clusterId: common.clusterId, secret: common.secret };
  }

  static initiator(params: InitiatorParams): Handshake {
    if (params.channel === 'join') throw new MarsError('EINVAL', 'use Handshake.joiner for the join channel');
    return new Handshake(params, params, undefined);
  }

  /** The initiator of a join: it proves the secret and learns the cluster id and the responder's name. */
  static joiner(params: JoinerParams): Handshake {
    const common: InitiatorParams = { ...params, clusterId: '', peerHost: '', channel: 'join' };
    return new Handshake(common, common, undefined);
  }

  static responder(params: ResponderParams): Handshake {
    return new Handshake(params, undefined, params);
  }

  get state(): HandshakeState {
    return this.stateValue;
  }

  get error(): MarsError | undefined {
    return this.errorValue;
  }

  /** The authenticated peer (valid once `state` is 'done'). */
  get peerHost(): string | undefined {
    return this.stateValue === 'done' ? this.peer : undefined;
  }

  get channel(): ChannelName | undefined {
    return this.channelValue;
  }

  /** The cluster id both sides proved (valid once `state` is 'done'; a joiner learns it). */
  get clusterId(): string | undefined {
    return this.stateValue === 'done' ? this.identity.clusterId : undefined;
  }

  /** The first frames to send: the initiator's HELLO; nothing for a responder. */
  start(): Frame[] {
    const p = this.initiator;
    if (p === undefined) return [];
    return [{ type: FrameType.helloInitiator, payload: encodeHello({ channel: p.channel, nonce: p.nonce, clusterId: p.clusterId, from: p.localHost, to: p.peerHost }) }];
  }

  receive(frame: Frame): HandshakeStep {
    if (frame.type === FrameType.refuse) return this.refusedByPeer(frame.payload);
    switch (this.stateValue) {
      case 'awaitHello':
        if (frame.type === FrameType.helloInitiator) return this.onHelloInitiator(frame.payload);
        break;
      case 'awaitResponderHello':
        if (frame.type === FrameType.helloResponder) return this.onHelloResponder(frame.payload);
        break;
      case 'awaitProof':
        if (frame.type === FrameType.proof) return this.onProof(frame.payload);
        break;
      case 'awaitAccept':
        if (frame.type === FrameType.accept) return this.onAccept(frame.payload);
        break;
      case 'done':
      case 'refused':
        break;
    }
    return this.refuse('protocol', 'AUTH_FAILED', `unexpected frame type ${frame.type} while ${this.stateValue}`);
  }

  private step(send: Frame[], state: HandshakeState): HandshakeStep {
    this.stateValue = state;
    return { send, state, error: this.errorValue };
  }

  private refuse(reason: RefuseReasonName, code: MarsErrorCode, detail: string): HandshakeStep {
    this.errorValue = new MarsError(code, `peer refused: ${detail}`);
    return this.step(this.stateValue === 'refused' ? [] : [refuseFrame(reason)], 'refused');
  }

  private refusedByPeer(payload: Buffer): HandshakeStep {
    const reason = (Object.keys(RefuseReason) as RefuseReasonName[]).find((name) => RefuseReason[name] === payload[0]) ?? 'protocol';
    // Only the reason travels; a refused proof says which side cannot tell, so it blames neither.
    const why = reason === 'proof' ? 'the cluster secret does not match (the peer and this host hold different secrets)' : reason;
    this.errorValue = new MarsError(refuseCodes[reason], `refused by the peer: ${why}`);
    return this.step([], 'refused');
  }

  /** This side's PROOF or ACCEPT payload: the proof and, outside the join channel, its signature. */
  private proofPayload(proof: Buffer): Buffer {
    if (this.channelValue === 'join') return proof;
    const key = this.common.signingKey;
    return Buffer.concat([proof, key === undefined ? Buffer.alloc(signatureBytes) : signBytes(key, signedProof(proof))]);
  }

  /** Checks the peer's PROOF or ACCEPT payload; returns the refusal, or undefined if it holds. */
  private checkProofPayload(payload: Buffer, expected: Buffer): HandshakeStep | undefined {
    const channel = this.channelValue!;
    if (payload.length !== proofPayloadBytes(channel)) return this.refuse('protocol', 'AUTH_FAILED', `a proof of ${payload.length} bytes`);
    if (!timingSafeEqual(expected, payload.subarray(0, proofBytes))) return this.refuse('proof', 'AUTH_FAILED', `the cluster secret does not match: ${this.peer ?? 'the peer'} and this host hold different secrets (the proofs differ)`);
    if (channel === 'join') return undefined;
    const pinned = this.common.peerKey?.(this.peer!);
    if (pinned === undefined) return undefined;
    if (!verifyBytes(pinned, signedProof(expected), payload.subarray(proofBytes))) return this.refuse('host', 'HOST_MISMATCH', `${this.peer} did not sign with the host key pinned for it`);
    return undefined;
  }

  private proof(role: ProofInput['role'], initiator: string, responder: string, nonceInitiator: Buffer, nonceResponder: Buffer): Buffer {
    const { secret, clusterId } = this.identity;
    const channel = this.channelValue!;
    return computeProof({ secret, role, clusterId, initiator, responder, channel, nonceInitiator, nonceResponder, channelBinding: this.common.channelBinding ?? Buffer.alloc(0) });
  }

  /** The identity an initiator's hello asks for: the own one (always, on the join channel) or an accepted former one. */
  private identityFor(hello: Hello): Identity | undefined {
    const c = this.common;
    if (hello.channel === 'join' || hello.clusterId === c.clusterId) return { clusterId: c.clusterId, secret: c.secret };
    return this.responder?.formerIdentities?.find((former) => former.clusterId === hello.clusterId);
  }

  private onHelloInitiator(payload: Buffer): HandshakeStep {
    const hello = decodeHello(payload, true);
    const c = this.common;
    if (hello === undefined) return this.refuse('protocol', 'AUTH_FAILED', 'malformed hello');
    this.channelValue = hello.channel;
    this.peer = hello.from;
    const identity = this.identityFor(hello);
    if (identity === undefined) return this.refuse('cluster', 'CLUSTER_MISMATCH', `cluster ${hello.clusterId}, this host is in ${c.clusterId}`);
    this.identity = identity;
    if (hello.channel !== 'join' && hello.to !== c.localHost) return this.refuse('host', 'HOST_MISMATCH', `${hello.from} expected host ${hello.to}, this is ${c.localHost}`);
    if (hello.from === c.localHost) return this.refuse('host', 'HOST_MISMATCH', `peer claims this host's own name ${c.localHost}`);
    if (this.responder?.acceptPeer?.(hello.from, hello.channel) === false) return this.refuse('host', 'HOST_MISMATCH', `${hello.from} is not accepted on channel ${hello.channel}`);
    this.peerNonce = hello.nonce;
    const reply = encodeHello({ channel: hello.channel, nonce: c.nonce, clusterId: identity.clusterId, from: c.localHost, to: hello.from });
    return this.step([{ type: FrameType.helloResponder, payload: reply }], 'awaitProof');
  }

  /** A joiner takes the cluster id and the responder's name from the hello; the proof checked next vouches for both. */
  private learnFromHello(hello: Hello): void {
    this.peer = hello.from;
    this.identity = { clusterId: hello.clusterId, secret: this.common.secret };
  }

  private onHelloResponder(payload: Buffer): HandshakeStep {
    const hello = decodeHello(payload, false);
    const c = this.common;
    if (hello === undefined) return this.refuse('protocol', 'AUTH_FAILED', 'malformed hello');
    if (hello.channel !== this.channelValue) return this.refuse('protocol', 'AUTH_FAILED', `channel ${hello.channel}, asked for ${this.channelValue}`);
    if (hello.channel === 'join') this.learnFromHello(hello);
    if (hello.clusterId !== this.identity.clusterId) return this.refuse('cluster', 'CLUSTER_MISMATCH', `cluster ${hello.clusterId}, this host is in ${c.clusterId}`);
    if (hello.from !== this.peer || hello.from === c.localHost) return this.refuse('host', 'HOST_MISMATCH', `answered as ${hello.from}, expected ${this.peer ?? 'another host'}`);
    if (hello.to !== c.localHost) return this.refuse('host', 'HOST_MISMATCH', `answered to ${hello.to}, this is ${c.localHost}`);
    this.peerNonce = hello.nonce;
    const proof = this.proof(roleInitiator, c.localHost, hello.from, c.nonce, hello.nonce);
    return this.step([{ type: FrameType.proof, payload: this.proofPayload(proof) }], 'awaitAccept');
  }

  /** The responder checks the initiator's proof (and signature), and only then proves in turn. */
  private onProof(payload: Buffer): HandshakeStep {
    const c = this.common;
    const expected = this.proof(roleInitiator, this.peer!, c.localHost, this.peerNonce!, c.nonce);
    const refused = this.checkProofPayload(payload, expected);
    if (refused !== undefined) return refused;
    const proof = this.proof(roleResponder, this.peer!, c.localHost, this.peerNonce!, c.nonce);
    return this.step([{ type: FrameType.accept, payload: this.proofPayload(proof) }], 'done');
  }

  private onAccept(payload: Buffer): HandshakeStep {
    const c = this.common;
    const expected = this.proof(roleResponder, c.localHost, this.peer!, c.nonce, this.peerNonce!);
    return this.checkProofPayload(payload, expected) ?? this.step([], 'done');
  }
}
