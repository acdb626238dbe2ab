/**
 * `marsadm events [R] [--json] [--now]`: a line stream of this host's state changes, like
 * `drbdsetup events2`. It asks marsd for `view all` and `view-hosts` every
 * `eventsPollMs` and prints what changed (src/cli/event-lines.ts). When marsd goes away
 * (restart, crash) it prints `change daemon name:H state:down`, keeps asking, and goes on
 * with `state:up` and whatever changed meanwhile once marsd answers again; if marsd does
 * not come back within `--reconnect-timeout` seconds (default 60) it exits 1 with one
 * line on stderr. With `--now` it prints the current state and exits 0.
 */
import type { Command } from 'commander';
import { nameArg } from './args.js';
import { InvalidArgumentError } from 'commander';
import { callDaemon, DaemonNotRunningError } from '../control/client.js';
import { MarsError } from '../core/errors.js';
import type { EventLine, EventObject } from './event-lines.js';
import type { HostStatusJson } from './view-format.js';

export const eventsPollMs = 250;
export const eventsReconnectSDefault = 60;
export const eventsReconnectSMax = 24 * 3600;
/** How long one question to marsd may take before it counts as gone. */
const askTimeoutMs = 10_000;

type CommandFactory = (name: string, description: string) => Command;

interface EventsOptions {
  json?: boolean;
  now?: boolean;
  reconnectTimeout?: number;
}

function secondsArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0 || n > eventsReconnectSMax) throw new InvalidArgumentError(`expected whole seconds, 1 to ${eventsReconnectSMax}`);
  return n;
}

export function addEventsCommand(command: CommandFactory, socketOf: (cmd: Command) => string): void {
  command('events', 'print state changes as they happen, one line each (exists lines first, then create/change/destroy), like drbdsetup events2')
    .argument('[R]', 'only this resource (hosts and the daemon are always shown)', nameArg)
    .option('--json', 'one JSON object per line')
    .option('--now', 'print the current state and exit')
    .option('--reconnect-timeout <SECONDS>', `when marsd goes away, wait this long for it to come back, then exit 1 (default ${eventsReconnectSDefault})`, secondsArg)
    .action(async (name: string | undefined, opts: EventsOptions, cmd: Command) => {
      await streamEvents(socketOf(cmd), name, opts);
    });
}

async function look(socket: string, only: string | undefined): Promise<EventObject[]> {
  const { objectsOf } = await import('./event-lines.js');
  const status = (await callDaemon(socket, 'view', { name: 'all' }, askTimeoutMs)) as HostStatusJson;
  const hosts = ((await callDaemon(socket, 'view-hosts', {}, askTimeoutMs)) as { hosts: { host: string; address: string; state: string }[] }).hosts;
  return objectsOf(status, hosts, only);
}

function isGone(err: unknown): boolean {
  return err instanceof DaemonNotRunningError || (err instanceof MarsError && err.code === 'EIO');
}

async function streamEvents(socket: string, only: string | undefined, opts: EventsOptions): Promise<void> {
  const json = opts.json === true;
  const write = (text: string): void => {
    process.stdout.write(`${text}\n`);
  };
  process.stdout.on('error', () => process.exit(0)); // the reader went away (| head)
  // Loaded here, not at the top: every marsadm call defines this command, few run it.
  const { diffLines, diffState, existsEnd, existsLines, formatLine, keyOf } = await import('./event-lines.js');
  const first = await look(socket, only);
  if (only !== undefined && !first.some((o) => o.object === 'resource' && o.fields['name'] === only)) throw new MarsError('NOT_FOUND', `resource ${only} does not exist on this host`);
  for (const line of existsLines(first)) write(formatLine(line, json));
  write(existsEnd(json));
  if (opts.now === true) return;
  const state = diffState(first, Date.now());
  const daemon = first[0]!;
  const reconnectMs = (opts.reconnectTimeout ?? eventsReconnectSDefault) * 1000;
  let downSinceMs: number | undefined;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, eventsPollMs));
    let next: EventObject[];
    try {
      next = await look(socket, only);
    } catch (err) {
      if (!isGone(err)) throw err;
      if (downSinceMs === undefined) {
        downSinceMs = Date.now();
        const down: EventLine = { type: 'change', object: { object: 'daemon', fields: { ...daemon.fields, state: 'down' } } };
        state.shown.set(keyOf(down.object), down.object);
        write(formatLine(down, json));
      } else if (Date.now() - downSinceMs > reconnectMs) {
        throw new MarsError('EIO', `marsd has not come back within ${reconnectMs / 1000} s`);
      }
      continue;
    }
    downSinceMs = undefined;
    for (const line of diffLines(state, next, Date.now())) write(formatLine(line, json));
  }
}
