/**
 * The public entry of the NBD area: the server the daemon runs, the interfaces a
 * resource implements to be served, the client used by the demo and tests, and the
 * protocol numbers.
 */
export type { BlockBackend, ExportRegistry } from './backend.js';
export { NbdServer, type NbdServerAddress, type NbdServerOptions } from './server.js';
export { NBD_LIMITS_DEFAULT, resolveLimits, type NbdLimits } from './limits.js';
export {
  NbdClient,
  NbdHandshakeError,
  NbdRequestError,
  type NbdClientOptions,
  type NbdRawRequest,
  type NbdWriteOptions,
  type NbdZeroOptions,
} from './client.js';
export { PayloadPool, payloadPool, payloadPoolBytesMin, payloadPoolFreeBytesMax, type PayloadPoolStats } from './payload-pool.js';
export { MemBackend } from './mem-backend.js';
export { StaticExportRegistry } from './static-registry.js';
export { nbdErrorFor } from './error-map.js';
export * from './protocol.js';
