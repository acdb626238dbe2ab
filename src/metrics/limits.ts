/**
 * Every limit of the metrics listener, the sampler and the status page's history, in one
 * place (docs/metrics.md "Limits").
 */

/** Open connections the listener accepts at once; more are closed by the kernel's accept path at once. */
export const httpConnectionsMax = 32;
/** A request's headers must arrive within this long. */
export const httpHeadersTimeoutMs = 5_000;
/** A whole request (not a response stream) must arrive within this long. */
export const httpRequestTimeoutMs = 10_000;
/** An idle keep-alive connection is closed after this long. */
export const httpKeepAliveTimeoutMs = 5_000;
/** A socket with no traffic in either direction for this long is destroyed (event streams send a comment more often). */
export const httpIdleTimeoutMs = 30_000;
/** Server-sent event streams open at once (the status page holds one each); more get 503. */
export const eventStreamsMax = 16;
/** Bytes an event stream may have queued in its socket; a slower reader is disconnected. */
export const eventStreamBufferedBytesMax = 1024 * 1024;
/** An event stream sends a comment this often so that proxies and idle timers see traffic. */
export const eventStreamKeepAliveMs = 10_000;

/** How often the sampler takes an observation (history, rates, event streams). */
export const sampleIntervalMs = 1_000;
/** Samples of history kept per resource: one hour at one a second. */
export const historySamplesMax = 3_600;
/** Resources whose history is kept; samples of more are not recorded (their current state still is). */
export const historyResourcesMax = 256;
