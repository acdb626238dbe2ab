/** Timers are a host input (src/core/timers.ts); the network area re-exports them for its users. */
export { ManualTimers, systemTimers, type TimerHandle, type Timers } from '../core/timers.js';
