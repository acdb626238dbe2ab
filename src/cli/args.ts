/**
 * Argument parsers shared by marsadm's commands: each turns one command-line word into a
 * checked value or a commander usage error (exit 2 with one line).
 */
import { InvalidArgumentError } from 'commander';
import { checkResourceName } from '../daemon/state-names.js';

/** A resource name, checked as the state directory checks it. */
export function nameArg(value: string): string {
  try {
    return checkResourceName(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
