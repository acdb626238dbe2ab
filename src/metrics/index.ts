export { MetricsHttpServer } from './http-server.js';
export { MarsMetrics } from './prometheus.js';
export { Observer, type ObserveSource } from './observer.js';
export { MeteredBackend } from './nbd-meter.js';
export { observationOf, type Observation, type ResourceFigure, type MemberFigure } from './observation.js';
