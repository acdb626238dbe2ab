/**
 * marsadm: the operator's CLI (DESIGN.md "The CLI contract"). Commands that prepare a
 * state directory work without a daemon; every other command asks the local marsd over
 * DIR/control.sock. Exit codes: 0 success, 1 the operation failed (one line on stderr),
 * 2 bad usage.
 */
import { resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { MarsError } from '../core/errors.js';
import { callDaemon, ControlError, DaemonNotRunningError } from '../control/client.js';
import { createCluster, parseAddress, paths, resolveStateDir, checkResourceName, checkHostName } from '../daemon/state-dir.js';
import { formatResource, macroNames, macroValue, resourceView, type HostStatusJson } from './view-format.js';

const controlTimeoutMs = 120_000;

function bytesArg(value: string): number {
  const m = /^(\d+)([KMGT]i?B?|[kmgt])?$/i.exec(value);
  if (m === null) throw new InvalidArgumentError('expected a size in bytes (suffixes K, M, G, T = powers of 1024)');
  const scale: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  const n = Number(m[1]) * (m[2] === undefined ? 1 : scale[m[2][0]!.toLowerCase()]!);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('size out of range');
  return n;
}

function nameArg(value: string): string {
  try {
    return checkResourceName(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function hostArg(value: string): string {
  try {
    return checkHostName(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function addressArg(value: string): string {
  try {
    parseAddress(value);
    return value;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function stateDir(cmd: Command): string {
  const own = cmd.opts<{ dir?: string }>().dir;
  const global = cmd.parent?.opts<{ dir?: string }>().dir;
  return resolveStateDir(own ?? global);
}

async function ask(cmd: Command, request: string, args: Record<string, unknown>): Promise<unknown> {
  return callDaemon(paths.controlSocket(stateDir(cmd)), request, args, controlTimeoutMs);
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function buildProgram(): Command {
  const program = new Command('marsadm')
    .description('Operate MARS: asynchronous replication of block devices over long distances')
    .option('--dir <DIR>', 'state directory (default: $MARS_DIR, else /var/lib/mars)')
    .showHelpAfterError(false)
    .exitOverride();
  const command = (name: string, description: string): Command =>
    program.command(name).description(description).option('--dir <DIR>', 'state directory').exitOverride();

  command('create-cluster', 'prepare the state directory for a new cluster with this host as its first member')
    .requiredOption('--host <NAME>', 'name of this host', hostArg)
    .requiredOption('--listen <IP:PORT>', 'peer address of this host', addressArg)
    .action(async (opts: { host: string; listen: string }, cmd: Command) => {
      const dir = stateDir(cmd);
      const config = await createCluster(dir, opts.host, opts.listen);
      print(`created cluster ${config.clusterId} in ${dir}; host ${config.host} listens on ${config.listen}; secret in ${paths.secretFile(dir)}`);
    });

  command('create-resource', 'create resource R on DEVICE; this host becomes its primary')
    .argument('<R>', 'resource name', nameArg)
    .argument('<DEVICE>', 'regular file or block device')
    .option('--size <BYTES>', 'size of the resource (default: the size of DEVICE)', bytesArg)
    .action(async (name: string, device: string, opts: { size?: number }, cmd: Command) => {
      const result = (await ask(cmd, 'create-resource', { name, device: resolve(device), sizeBytes: opts.size ?? null })) as { export: string; sizeBytes: number };
      print(`resource ${name} created (${result.sizeBytes} bytes); this host is primary; export ${result.export}`);
    });

  command('log-rotate', 'start a new log file for R now')
    .argument('<R>', 'resource name', nameArg)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'log-rotate', { name })) as { logNumber: number };
      print(`resource ${name}: now logging to log ${String(result.logNumber).padStart(9, '0')}`);
    });

  command('log-delete', 'delete the log files of R that are fully written back')
    .argument('<R>', 'resource name', nameArg)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'log-delete', { name })) as { deleted: string[] };
      print(result.deleted.length === 0 ? `resource ${name}: no log file can be deleted yet` : `resource ${name}: deleted ${result.deleted.join(' ')}`);
    });

  command('cron', 'housekeeping for every resource: log-rotate, then log-delete')
    .action(async (_opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'cron', {})) as Record<string, { deleted: string[] }>;
      for (const [name, r] of Object.entries(result)) print(`resource ${name}: deleted ${r.deleted.length} log file(s)`);
    });

  command('view', 'show the state of R (or of all resources)')
    .argument('[R]', 'resource name or all', 'all')
    .option('--json', 'print JSON for scripts')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const status = (await ask(cmd, 'view', { name })) as HostStatusJson;
      const views = status.resources.map((r) => resourceView(status.host, r));
      if (opts.json === true) print(JSON.stringify({ host: status.host, resources: views }, null, 2));
      else if (views.length === 0) print(`host ${status.host}: no resources`);
      else print(views.map(formatResource).join('\n'));
    });

  for (const macro of macroNames) {
    command(`view-${macro}`, `print the ${macro} of R, one value for scripts`)
      .argument('<R>', 'resource name', nameArg)
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        const status = (await ask(cmd, 'view', { name })) as HostStatusJson;
        for (const r of status.resources) print(macroValue(resourceView(status.host, r), macro));
      });
  }
  return program;
}

async function main(): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof DaemonNotRunningError || err instanceof ControlError || err instanceof MarsError) {
      process.stderr.write(`marsadm: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`marsadm: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

void main().then((code) => {
  process.exitCode = code;
});
