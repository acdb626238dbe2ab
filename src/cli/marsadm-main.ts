/**
 * marsadm: the operator's CLI (DESIGN.md "The CLI contract"). Commands that prepare a
 * state directory work without a daemon; every other command asks the local marsd over
 * DIR/control.sock. Exit codes: 0 success, 1 the operation failed (one line on stderr),
 * 2 bad usage.
 *
 * Every call is a new process, and scripts and monitoring call it often: the daemon's
 * modules (sockets, TLS, log codecs, metadata) are imported only by the commands that use
 * them, so that a query loads little more than the control client.
 *
 * bin/marsadm calls `runMarsadm(process.argv)`. A caller in the same process (the tests'
 * setup, which would otherwise start a node process for every command) passes its own
 * `MarsadmOutput`: every line, help text and error of that call goes there instead of the
 * process's stdout and stderr, even with several calls running at once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { nameArg } from './args.js';
import { MarsError } from '../core/errors.js';
import { marsVersion } from '../core/version.js';
import { callDaemon, ControlError, DaemonNotRunningError } from '../control/client.js';
import { parseAddress, paths, resolveStateDir, checkHostName } from '../daemon/state-names.js';
import type { RateLimits } from '../daemon/bandwidth.js';
import { nearSyncMembersDefault, nearSyncTimeoutMsDefault, type SyncMode } from '../logger/near-sync.js';
import { clusterCommandTimeoutMsMax, waitClusterTimeoutMsDefault } from '../daemon/command-limits.js';
import { addCompletionCommand } from './completion.js';
import { addEventsCommand } from './events.js';
import { forcedLossWords } from './forced-loss-words.js';
import { macroNames } from './macro-names.js';
import type { HostStatusJson } from './view-format.js';

/** How long marsadm waits for marsd's answer to a command that changes something. */
const controlTimeoutMs = 120_000;
/**
 * How long a view waits: it changes nothing and marsd answers it from memory in
 * milliseconds, so a daemon that has not answered by then is stopped or hung, and a
 * monitoring script should hear so long before a command's two minutes.
 */
const viewTimeoutMs = 15_000;
/** The requests that only read. */
const viewRequests: ReadonlySet<string> = new Set(['view', 'view-hosts']);

function bytesArg(value: string): number {
  const m = /^(\d+)([KMGT]i?B?|[kmgt])?$/i.exec(value);
  if (m === null) throw new InvalidArgumentError('expected a size in bytes (suffixes K, M, G, T = powers of 1024)');
  const scale: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  const n = Number(m[1]) * (m[2] === undefined ? 1 : scale[m[2][0]!.toLowerCase()]!);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('size out of range');
  return n;
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
  return callDaemon(paths.controlSocket(stateDir(cmd)), request, args, viewRequests.has(request) ? viewTimeoutMs : controlTimeoutMs);
}

/** Where the output of one call goes. */
export interface MarsadmOutput {
  stdout(text: string): void;
  stderr(text: string): void;
}

const processOutput: MarsadmOutput = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};
/** The output of the call running now (runMarsadm sets it for everything the call does). */
const callOutput = new AsyncLocalStorage<MarsadmOutput>();

function output(): MarsadmOutput {
  return callOutput.getStore() ?? processOutput;
}

function print(line: string): void {
  output().stdout(`${line}\n`);
}

/** A field of the daemon's answer, when it is there and of the expected kind. */
function numberField(answer: unknown, key: string): number | undefined {
  if (typeof answer !== 'object' || answer === null) return undefined;
  const value: unknown = (answer as Record<string, unknown>)[key];
  return typeof value === 'number' ? value : undefined;
}

function stringsField(answer: unknown, key: string): string[] | undefined {
  if (typeof answer !== 'object' || answer === null) return undefined;
  const value: unknown = (answer as Record<string, unknown>)[key];
  return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined;
}

type CommandFactory = (name: string, description: string) => Command;

function secondsArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0 || n > clusterCommandTimeoutMsMax / 1000) throw new InvalidArgumentError(`expected whole seconds, 1 to ${clusterCommandTimeoutMsMax / 1000}`);
  return n;
}

/** Asks marsd, allowing for a command that itself waits up to `timeoutMs`. */
async function askWaiting(cmd: Command, request: string, args: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
  return callDaemon(paths.controlSocket(stateDir(cmd)), request, args, timeoutMs + controlTimeoutMs);
}

function clusterCommands(command: CommandFactory): void {
  command('create-cluster', 'prepare the state directory for a new cluster with this host as its first member')
    .requiredOption('--host <NAME>', 'name of this host', hostArg)
    .requiredOption('--listen <IP:PORT>', 'peer address of this host', addressArg)
    .option('--advertise <IP:PORT>', 'the address peers dial, if not --listen (NAT, proxy); peers must connect from its IP', addressArg)
    .option('--insecure-dir', 'accept an existing state directory that is writable by group or others, or not owned by this user')
    .action(async (opts: { host: string; listen: string; advertise?: string; insecureDir?: boolean }, cmd: Command) => {
      const dir = stateDir(cmd);
      const { createCluster } = await import('../daemon/state-dir.js');
      const config = await createCluster(dir, opts.host, opts.listen, opts.insecureDir === true, opts.advertise);
      const via = config.advertise === undefined ? '' : `, reached at ${config.advertise}`;
      print(`created cluster ${config.clusterId} in ${dir}; host ${config.host} listens on ${config.listen}${via}; secret in ${paths.secretFile(dir)}`);
    });

  command('join-cluster', 'prepare the state directory as a member of the cluster that PEER belongs to (then start marsd)')
    .argument('<PEER_IP:PORT>', 'peer address of a running member', addressArg)
    .requiredOption('--host <NAME>', 'name of this host', hostArg)
    .requiredOption('--listen <IP:PORT>', 'peer address of this host', addressArg)
    .option('--advertise <IP:PORT>', 'the address peers dial, if not --listen (NAT, proxy); peers must connect from its IP', addressArg)
    .requiredOption('--secret-file <FILE>', "a copy of the cluster's secret (DIR/cluster.secret of a member)")
    .option('--tls', 'the cluster encrypts peer traffic (DIR/tls.key, DIR/tls.crt)')
    .option('--insecure-dir', 'accept an existing state directory that is writable by group or others, or not owned by this user')
    .action(async (peer: string, opts: { host: string; listen: string; advertise?: string; secretFile: string; tls?: boolean; insecureDir?: boolean }, cmd: Command) => {
      const dir = stateDir(cmd);
      const { checkDirPermissions, loadTls } = await import('../daemon/state-dir.js');
      const { joinCluster } = await import('../daemon/join-cluster.js');
      await checkDirPermissions(dir, opts.insecureDir === true);
      const tls = opts.tls === true ? await loadTls(dir) : undefined;
      const advertise = opts.advertise === undefined ? {} : { advertise: opts.advertise };
      const joined = await joinCluster({ dir, peer, host: opts.host, listen: opts.listen, ...advertise, secretFile: resolve(opts.secretFile), tls });
      print(`joined cluster ${joined.config.clusterId} through ${joined.peerHost} (${joined.hosts.length} host(s): ${joined.hosts.join(' ')}); start marsd to take part`);
    });

  command('leave-cluster', 'remove this host from its cluster (it must be a member of no resource); marsd stops. With --host DEAD: remove another host that will not come back (from any live host)')
    .option('--timeout <SECONDS>', 'how long to wait for another host to take the news', secondsArg)
    .option('--host <DEAD>', 'remove host DEAD instead of this one (refused while it is a member of a resource, and for a host this one can reach unless --force); if it ever runs again, it stops', hostArg)
    .option('--force', 'with --host: remove the host even though it is reachable')
    .action(async (opts: { timeout?: number; host?: string; force?: boolean }, cmd: Command) => {
      if (opts.force === true && opts.host === undefined) cmd.error('error: --force needs --host', { exitCode: 2 });
      if (opts.host !== undefined) {
        const removed = (await ask(cmd, 'leave-cluster', { host: opts.host, force: opts.force === true })) as { host: string };
        print(`host ${removed.host} removed from the cluster; every member drops it from its host list`);
        return;
      }
      const timeoutMs = (opts.timeout ?? waitClusterTimeoutMsDefault / 1000) * 1000;
      const result = (await askWaiting(cmd, 'leave-cluster', { timeoutMs }, timeoutMs)) as { host: string; acknowledgedBy: string[] };
      print(`host ${result.host} left the cluster${result.acknowledgedBy.length > 0 ? ` (${result.acknowledgedBy.join(', ')} took the news)` : ''}; marsd stopped`);
    });

  command('merge-cluster', "merge this host's cluster into the cluster of PEER (resource names must differ); this side adopts PEER's cluster id and secret")
    .argument('<PEER_IP:PORT>', 'peer address of a member of the other cluster', addressArg)
    .requiredOption('--secret-file <FILE>', "a copy of the other cluster's secret")
    .action(async (peer: string, opts: { secretFile: string }, cmd: Command) => {
      const result = (await ask(cmd, 'merge-cluster', { peer, secretFile: resolve(opts.secretFile) })) as { clusterId: string; alreadyOne: boolean; hosts: string[] };
      if (result.alreadyOne) print(`already one cluster: ${result.clusterId}`);
      else print(`merged into cluster ${result.clusterId} (its hosts: ${result.hosts.join(' ')}); the other hosts of this side follow by themselves (wait-cluster)`);
    });

  command('wait-cluster', 'return once metadata has been exchanged with every reachable host')
    .option('--timeout <SECONDS>', 'give up after this long (exit 1, naming the hosts not reached)', secondsArg)
    .action(async (opts: { timeout?: number }, cmd: Command) => {
      const timeoutMs = (opts.timeout ?? waitClusterTimeoutMsDefault / 1000) * 1000;
      const result = (await askWaiting(cmd, 'wait-cluster', { timeoutMs }, timeoutMs)) as { exchanged: string[]; unreachable: string[] };
      print(`metadata exchanged with ${result.exchanged.length} host(s)${result.unreachable.length > 0 ? `; unreachable: ${result.unreachable.join(' ')}` : ''}`);
    });

  command('view-hosts', 'one line per known host: NAME IP:PORT alive|unreachable').action(async (_opts: unknown, cmd: Command) => {
    const result = (await ask(cmd, 'view-hosts', {})) as { hosts: { host: string; address: string; state: string }[] };
    for (const h of result.hosts) print(`${h.host} ${h.address} ${h.state}`);
  });
}

function resourceCommands(command: CommandFactory): void {
  command('create-resource', 'create resource R on DEVICE; this host becomes its primary')
    .argument('<R>', 'resource name', nameArg)
    .argument('<DEVICE>', 'regular file or block device')
    .option('--size <BYTES>', 'size of the resource (default: the size of DEVICE)', bytesArg)
    .action(async (name: string, device: string, opts: { size?: number }, cmd: Command) => {
      const result = (await ask(cmd, 'create-resource', { name, device: resolve(device), sizeBytes: opts.size ?? null })) as { export: string; sizeBytes: number };
      print(`resource ${name} created (${result.sizeBytes} bytes); this host is primary; export ${result.export}`);
    });

  command('join-resource', 'make this host a secondary of R with DEVICE as its disk; a full sync starts')
    .argument('<R>', 'resource name', nameArg)
    .argument('<DEVICE>', 'regular file or block device')
    .action(async (name: string, device: string, _opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'join-resource', { name, device: resolve(device) })) as { members: string[] };
      print(`this host is now a secondary of ${name} (members: ${result.members.join(' ')}); a full sync starts (marsadm view ${name} shows its progress)`);
    });

  command('leave-resource', 'stop being a member of R (not on its primary); its local logs go, its device stays as it is. With --host DEAD: remove another member that will not come back (from any live member), releasing the logs it holds back')
    .argument('<R>', 'resource name', nameArg)
    .option('--host <DEAD>', 'remove this member instead of this host (refused for the primary, and for a host this one can reach unless --force)', hostArg)
    .option('--force', 'with --host: remove the member even though it is reachable; without: leave even though the primary is unreachable')
    .action(async (name: string, opts: { host?: string; force?: boolean }, cmd: Command) => {
      if (opts.host === undefined) {
        await ask(cmd, 'leave-resource', { name, force: opts.force === true });
        print(`this host is no longer a member of ${name}`);
        return;
      }
      await ask(cmd, 'leave-resource', { name, host: opts.host, force: opts.force === true });
      print(`${opts.host} is no longer a member of ${name}; the logs it held back can go`);
    });

  command('up', 'switch R on here: recover and, on its primary, serve it (the switch attach)')
    .argument('<R>', 'resource name', nameArg)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'up', { name })) as { state: string; failure: string | null };
      print(`resource ${name}: ${result.state}${result.failure === null ? '' : ` (${result.failure})`}`);
    });

  command('down', 'switch R off here: stop serving, write everything back, close the device (refused while this host exports R to NBD clients)')
    .argument('<R>', 'resource name', nameArg)
    .option('--force', 'disconnect the NBD clients of R on this host')
    .action(async (name: string, opts: { force?: boolean }, cmd: Command) => {
      const result = (await ask(cmd, 'down', { name, force: opts.force === true })) as { state: string; failure: string | null };
      print(`resource ${name}: ${result.state}${result.failure === null ? '' : ` (${result.failure})`}`);
    });

  command('primary', 'make this host the primary of R: planned handover (waits until it has replayed everything the old primary wrote), or --force')
    .argument('<R>', 'resource name', nameArg)
    .option('--force', 'take over with what this host has, without the old primary (dead or cut off); says how many bytes of its log are lost: exactly once its log is known to have ended, else at least what the cluster knew it had durable (and from whom), or unknown')
    .option('--yes', 'with --force: take over even though the old primary is alive and reachable (two histories follow)')
    .option('--allow-inconsistent', 'with --force: take over even though replay has not yet got back to where it had written the device before a crash (the disk may be no consistent state); never a member off the history (its device holds writes the history lacks: invalidate it)')
    .option('--wait', 'wait until the old primary has no NBD connections open, instead of refusing')
    .option('--timeout <SECONDS>', 'how long to wait for the handover (default 60); a planned handover not done by then is rolled back', secondsArg)
    .action(async (name: string, opts: { force?: boolean; yes?: boolean; allowInconsistent?: boolean; wait?: boolean; timeout?: number }, cmd: Command) => {
      if (opts.yes === true && opts.force !== true) cmd.error('error: --yes needs --force', { exitCode: 2 });
      if (opts.allowInconsistent === true && opts.force !== true) cmd.error('error: --allow-inconsistent needs --force', { exitCode: 2 });
      const timeoutMs = (opts.timeout ?? 60) * 1000;
      const request = { name, force: opts.force === true, yes: opts.yes === true, allowInconsistent: opts.allowInconsistent === true, wait: opts.wait === true, timeoutMs };
      const { rollbackWaitMsMax } = await import('../daemon/role-commands.js');
      const result = (await askWaiting(cmd, 'primary', request, timeoutMs + rollbackWaitMsMax + 5_000)) as {
        previous: string;
        tookMs: number;
        forced?: boolean;
        missingBytes?: number | null;
        missingExact?: boolean;
        missingFrom?: string[];
      };
      const from = result.previous === '' ? '' : ` (was ${result.previous})`;
      print(`this host is now the primary of ${name}${from}, in ${result.tookMs} ms${result.forced === true ? `; forced: ${forcedLossWords(result)}` : ''}`);
    });

  command('secondary', 'give up the primary role of R without naming a successor (refused while R has NBD clients here)')
    .argument('<R>', 'resource name', nameArg)
    .option('--wait', 'wait until no NBD connection is open, instead of refusing')
    .option('--force', 'disconnect the NBD clients of R instead of refusing')
    .option('--timeout <SECONDS>', 'how long to wait (default 60)', secondsArg)
    .action(async (name: string, opts: { wait?: boolean; force?: boolean; timeout?: number }, cmd: Command) => {
      const timeoutMs = (opts.timeout ?? 60) * 1000;
      await askWaiting(cmd, 'secondary', { name, wait: opts.wait === true, force: opts.force === true, timeoutMs }, timeoutMs + 5_000);
      print(`this host is no longer the primary of ${name}; none is designated`);
    });

  command('invalidate', 'on a secondary: discard its history of R (e.g. the losing side of a split brain) and resync from the primary')
    .argument('<R>', 'resource name', nameArg)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'invalidate', { name })) as { resync: string };
      print(`resource ${name} invalidated here; a fast full sync ${result.resync} follows`);
    });

  command('delete-resource', 'remove R from every member (devices are left as they are); refused while any member exports R to NBD clients')
    .argument('<R>', 'resource name', nameArg)
    .option('--force', 'delete even though NBD clients are connected (they are disconnected)')
    .action(async (name: string, opts: { force?: boolean }, cmd: Command) => {
      const result = await ask(cmd, 'delete-resource', { name, force: opts.force === true });
      const members = stringsField(result, 'members');
      const disconnected = stringsField(result, 'disconnected') ?? [];
      const gone = disconnected.length === 0 ? '' : `; disconnected ${disconnected.join(', ')}`;
      print(`resource ${name} deleted${members === undefined ? '' : ` on ${members.join(' ')}`}; devices are left as they are${gone}`);
    });

  command('resize', 'set the size of R to SIZE on every member')
    .argument('<R>', 'resource name', nameArg)
    .argument('<SIZE>', 'new size in bytes (suffixes K, M, G, T = powers of 1024)', bytesArg)
    .action(async (name: string, sizeBytes: number, _opts: unknown, cmd: Command) => {
      const result = await ask(cmd, 'resize', { name, sizeBytes });
      print(`resource ${name}: size ${numberField(result, 'sizeBytes') ?? sizeBytes} bytes`);
    });

  command('log-rotate', 'start a new log file for R now')
    .argument('<R>', 'resource name', nameArg)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'log-rotate', { name })) as { logNumber: number };
      print(`resource ${name}: now logging to log ${String(result.logNumber).padStart(9, '0')}`);
    });

  command('log-delete', 'delete the log files of R that every member has replayed past (view names a member holding them back)')
    .argument('<R>', 'resource name', nameArg)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const result = (await ask(cmd, 'log-delete', { name })) as { deleted: string[] };
      print(result.deleted.length === 0 ? `resource ${name}: no log file can be deleted yet` : `resource ${name}: deleted ${result.deleted.join(' ')}`);
    });

  command('cron', 'housekeeping for every resource: log-rotate, then log-delete').action(async (_opts: unknown, cmd: Command) => {
    const result = (await ask(cmd, 'cron', {})) as Record<string, { deleted: string[] }>;
    for (const [name, r] of Object.entries(result)) print(`resource ${name}: deleted ${r.deleted.length} log file(s)`);
  });
}

/** The switches of a secondary, as in the original: the daemon reconciles toward them. */
const switchWords = [
  ['pause-fetch', 'fetch', false, 'stop fetching the log of R from its primary (the switch fetch)'],
  ['resume-fetch', 'fetch', true, 'fetch the log of R again'],
  ['disconnect', 'fetch', false, 'stop fetching the log of R (an alias of pause-fetch)'],
  ['connect', 'fetch', true, 'fetch the log of R again (an alias of resume-fetch)'],
  ['pause-replay', 'replay', false, 'stop replaying the fetched log onto the disk of R; fetch goes on (a delayed replica)'],
  ['resume-replay', 'replay', true, 'replay the fetched log onto the disk of R again'],
  ['pause-sync', 'sync', false, 'pause the full sync of R (it resumes where it stopped)'],
  ['resume-sync', 'sync', true, 'go on with the full sync of R'],
] as const;

function switchCommands(command: CommandFactory): void {
  for (const [word, which, on, description] of switchWords) {
    command(word, description)
      .argument('<R>', 'resource name', nameArg)
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        await ask(cmd, 'switch', { name, switch: which, on });
        print(`resource ${name}: switch ${which} ${on ? 'on' : 'off'}`);
      });
  }
}

function viewCommands(command: CommandFactory): void {
  command('view', 'show the state of R (or of all resources)')
    .argument('[R]', 'resource name or all', 'all')
    .option('--json', 'print JSON for scripts')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const status = (await ask(cmd, 'view', { name })) as HostStatusJson;
      const { formatResource, resourceView, viewJson } = await import('./view-format.js');
      const views = status.resources.map((r) => resourceView(status.host, r));
      if (opts.json === true) print(JSON.stringify(viewJson(status.host, views, new Date()), null, 2));
      else if (views.length === 0) print(`host ${status.host}: no resources`);
      else print(views.map(formatResource).join('\n'));
    });

  command('status', 'one overview of R (or of all resources) with every member, from any host (like drbdadm status)')
    .argument('[R]', 'resource name or all', 'all')
    .option('--json', 'print the same JSON as view --json')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const status = (await ask(cmd, 'view', { name })) as HostStatusJson;
      const { formatStatus, resourceView, viewJson } = await import('./view-format.js');
      const views = status.resources.map((r) => resourceView(status.host, r));
      if (opts.json === true) print(JSON.stringify(viewJson(status.host, views, new Date()), null, 2));
      else if (views.length === 0) print(`host ${status.host}: no resources`);
      else print(views.map(formatStatus).join('\n'));
    });

  const macroHelp: Partial<Record<(typeof macroNames)[number], string>> = {
    'is-emergency': 'print 1 if R is in emergency mode here (the primary writes straight to its device), else 0',
    space: 'print the bytes free in the log filesystem of this host',
    'fetch-rest': 'print the bytes the primary has durable that this secondary has not fetched (0: caught up; "unknown" until fetch has heard from the primary, e.g. just after a restart, while fetch is paused or while the resource is detached here)',
  };
  for (const macro of macroNames) {
    command(`view-${macro}`, macroHelp[macro] ?? `print the ${macro} of R, one value for scripts`)
      .argument('<R>', 'resource name', nameArg)
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        const status = (await ask(cmd, 'view', { name })) as HostStatusJson;
        const { macroValue, resourceView } = await import('./view-format.js');
        for (const r of status.resources) print(macroValue(resourceView(status.host, r), macro));
      });
  }
}

function buildProgram(): Command {
  const program = new Command('marsadm')
    .description('Operate MARS: asynchronous replication of block devices over long distances')
    .option('--dir <DIR>', 'state directory (default: $MARS_DIR, else /var/lib/mars)')
    .version(marsVersion, '--version', 'print the version and exit')
    .showHelpAfterError(false)
    .configureOutput({ writeOut: (text) => output().stdout(text), writeErr: (text) => output().stderr(text) })
    .exitOverride();
  const command: CommandFactory = (name, description) => program.command(name).description(description).option('--dir <DIR>', 'state directory').exitOverride();
  clusterCommands(command);
  resourceCommands(command);
  switchCommands(command);
  viewCommands(command);
  rateCommands(command);
  addEventsCommand(command, (cmd) => paths.controlSocket(stateDir(cmd)));
  addCompletionCommand(program, command);
  return program;
}

function rateCommands(command: CommandFactory): void {
  command('set-rate', "change this host's bandwidth limits for log fetch and sync (or those of R here); without --fetch or --sync, show them")
    .argument('[R]', 'resource name (default: the whole host)', nameArg)
    .option('--fetch <RATE>', 'bytes per second for log fetch (suffixes K, M, G), or unlimited')
    .option('--sync <RATE>', 'bytes per second for full sync (suffixes K, M, G), or unlimited')
    .action(async (name: string | undefined, opts: { fetch?: string; sync?: string }, cmd: Command) => {
      const { formatRateLimit, parseRate } = await import('../daemon/bandwidth.js');
      if (opts.fetch !== undefined) parseRate(opts.fetch, 'fetch rate');
      if (opts.sync !== undefined) parseRate(opts.sync, 'sync rate');
      const result = (await ask(cmd, 'set-rate', { name: name ?? null, fetch: opts.fetch ?? null, sync: opts.sync ?? null })) as { host: RateLimits; resources: Record<string, RateLimits> };
      const line = (who: string, r: RateLimits): string => `${who}: fetch ${formatRateLimit(r.fetch)}, sync ${formatRateLimit(r.sync)}`;
      print([line('host', result.host), ...Object.entries(result.resources).map(([r, limits]) => line(`resource ${r}`, limits))].join('\n'));
    });

  command('set-sync-mode', 'async (the default) or near-sync: in near-sync, FLUSH and FUA on the primary of R are answered once K other members hold the records durably, or after T ms fall back to asynchronous until they catch up')
    .argument('<R>', 'resource name', nameArg)
    .argument('<MODE>', 'async or near-sync')
    .option('--members <K>', `near-sync: members besides the primary that must hold the records (default ${nearSyncMembersDefault})`)
    .option('--timeout-ms <T>', `near-sync: milliseconds a FLUSH waits before R falls back to asynchronous (default ${nearSyncTimeoutMsDefault})`)
    .action(async (name: string, mode: string, opts: { members?: string; timeoutMs?: string }, cmd: Command) => {
      const whole = (value: string | undefined): number | string | undefined => (value !== undefined && /^[0-9]{1,15}$/.test(value) ? Number(value) : value);
      const members = whole(opts.members);
      const timeoutMs = whole(opts.timeoutMs);
      const { checkSyncModeArgs } = await import('../daemon/sync-mode.js');
      checkSyncModeArgs(mode, members, timeoutMs);
      const result = (await ask(cmd, 'set-sync-mode', { name, mode, members: members ?? null, timeoutMs: timeoutMs ?? null })) as SyncMode;
      print(result.mode === 'async' ? `resource ${name}: async` : `resource ${name}: near-sync, ${result.members} member(s), timeout ${result.timeoutMs} ms`);
    });
}

/** One marsadm call: `argv` as process.argv (node, script, words…); resolves with the exit code. */
export function runMarsadm(argv: readonly string[], out: MarsadmOutput = processOutput): Promise<number> {
  return callOutput.run(out, () => main(argv));
}

async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof DaemonNotRunningError || err instanceof ControlError || err instanceof MarsError) {
      output().stderr(`marsadm: ${err.message}\n`);
      return 1;
    }
    output().stderr(`marsadm: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
