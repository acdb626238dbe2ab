/**
 * The words of `marsadm view-MACRO R`. Apart from view-format.ts, which computes their
 * values, so that marsadm can define its commands (and print --help) without loading the
 * view's code: only the view commands' actions import it.
 */
export const macroNames = ['role', 'primarynode', 'is-primary', 'is-consistent', 'is-split-brain', 'fetch-rest', 'replay-rest', 'sync-rest', 'disk-state', 'repl-state', 'is-emergency', 'space'] as const;
export type MacroName = (typeof macroNames)[number];
