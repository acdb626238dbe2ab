/**
 * The network area's public entry: frames, the authentication handshake, listening and
 * dialling (TCP or TLS), authenticated links and self-reconnecting connections.
 */
export { encodeFrame, FrameDecoder, FrameType, frameHeaderBytes, frameVersion, isKnownFrameType, selfCheckedFrameTypes, type Frame } from './frame.js';
export { Channel, Handshake, type ChannelName, type HandshakeState, type HandshakeStep, type Identity, type InitiatorParams, type JoinerParams, type ResponderParams } from './handshake.js';
export { PeerServer, dialPeer, joinPeer, type PeerServerOptions, type DialOptions, type JoinDialOptions, type TlsOptions, type AuthOptions } from './peer-endpoint.js';
export { PeerLink, type LinkHandlers, type LinkInfo } from './peer-link.js';
export { PeerConnection, backoffDelayMs, type ConnectionState, type PeerConnectionOptions } from './peer-connection.js';
export { RefusalLog, silentLog, type PeerLog } from './refusal-log.js';
export { ManualTimers, systemTimers, type Timers, type TimerHandle } from './timers.js';
export * as netLimits from './limits.js';
