/**
 * Limits of the waiting cluster commands that marsadm checks before it asks marsd (its
 * `--timeout` options), in a module of their own so that marsadm needs no daemon code.
 */

/** Defaults of wait-cluster and leave-cluster (`--timeout`). */
export const waitClusterTimeoutMsDefault = 60_000;
/** The longest `--timeout` marsadm may ask of wait-cluster and leave-cluster. */
export const clusterCommandTimeoutMsMax = 10 * 60_000;
