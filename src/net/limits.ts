/**
 * Every limit of the network area in one place, with what happens when it is reached.
 * Peers are untrusted until they have proved the cluster secret, so the limits before
 * authentication are much smaller than after it.
 */

/** Payload bytes of one frame after authentication. A larger length is refused before any allocation. */
export const frameBytesMax = 4 * 1024 * 1024;

/** Payload bytes of one frame during the handshake (names, nonces, a proof). */
export const handshakeFrameBytesMax = 512;

/**
 * A handshake (with TLS: the TLS handshake too) not finished within this time is abandoned
 * and the socket closed. Four round trips of a slow WAN fit many times over; an idle
 * connection holds its place in the pools below no longer than this.
 */
export const handshakeMsMax = 5_000;

/** Connections still in their handshake; beyond it new connections are refused at once (REFUSE busy). */
export const pendingHandshakesMax = 64;

/**
 * Of `pendingHandshakesMax`, places only addresses of known hosts (their records' IPs) may
 * take: strangers, however many addresses they use, never starve a member's reconnect.
 */
export const pendingHandshakesReservedForKnown = 16;

/** Connections in their handshake from one IP address; beyond it that address is refused at once. */
export const pendingHandshakesPerAddressMax = 4;

/**
 * The same for the IP address of a known host, which opens its metadata, fetch and sync
 * connections (several of each, on a WAN) at once.
 */
export const pendingHandshakesPerKnownAddressMax = 16;

/** Authenticated connections one server keeps; beyond it the OS backlog holds new ones. */
export const connectionsMax = 4_096;

/** Bytes queued in a socket's send buffer; beyond it `send` drops the frame and returns false. */
export const sendBufferBytesMax = 16 * 1024 * 1024;

/**
 * Payload buffers a FrameDecoder keeps for reuse, each `decoderPoolBufferBytes` long, for
 * payloads of `decoderPooledBytesMin` or more that arrive split over several socket
 * chunks (they must be joined: a fresh 1 MiB buffer costs 256 page faults, a reused one
 * none). A buffer comes back only when the consumer calls the frame's `release`.
 */
export const decoderPoolBuffersMax = 20;
export const decoderPoolBufferBytes = 1024 * 1024 + 64;
export const decoderPooledBytesMin = 64 * 1024;

/**
 * The one read buffer every plain TCP peer socket of a process reads into
 * (src/net/socket-input.ts): what a read delivers is parsed (and copied where kept) before
 * the next read, so one buffer serves every connection. Large enough that a 1 MiB DATA
 * frame takes a few reads, not sixteen.
 */
export const peerSocketReadBufferBytes = 256 * 1024;

/** Frames that arrive before the owner of a new link has attached its handlers. */
export const earlyFramesMax = 64;

/**
 * A link that has sent nothing for this long sends a keepalive frame (20 bytes: a few
 * hundred bytes a minute per link, nothing against the point of noticing an outage).
 */
export const keepaliveIntervalMs = 1_000;

/**
 * A link that has received nothing (not even a keepalive) for this long is closed: a
 * stalled or silently dropped long-distance link is noticed within seconds, not after
 * TCP's own timeouts (minutes). Six missed keepalives leave room for a busy event loop.
 */
export const idleMsMax = 6 * keepaliveIntervalMs;

/** A TCP connect (and TLS handshake) not finished within this time is abandoned. */
export const connectMsMax = 10_000;

/** Reconnect delays: capped exponential backoff with jitter between half and all of the delay. */
export const backoffMsMin = 100;
export const backoffMsMax = 30_000;

/** A link that stayed open this long resets the backoff to its minimum. */
export const stableLinkMs = 10_000;

/** Repeated refusals of one address for one reason are logged once per this period (with a count). */
export const refusalLogQuietMs = 60_000;

/** Refusal lines per `refusalLogQuietMs` over all addresses; the rest are counted in the next line. */
export const refusalLogLinesPerPeriodMax = 100;

/** Distinct (address, reason) pairs the refusal log remembers; the oldest is forgotten first. */
export const refusalLogEntriesMax = 1_024;

/** Bytes of the cluster secret, at least. */
export const secretBytesMin = 16;

/** Bytes of each side's nonce. */
export const nonceBytes = 32;
