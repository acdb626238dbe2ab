/**
 * Hooks for applications: optional commands per resource that marsd runs when this host
 * becomes primary of the resource or stops being it (the original drives systemd units
 * this way: start the application's mount and service on the new primary, stop them on
 * the old one). Configured in `DIR/resource-R/hooks.json`:
 *
 *   { "formatVersion": 1, "onPrimary": ["systemctl", "start", "app.service"],
 *     "onSecondary": ["systemctl", "stop", "app.service"] }
 *
 * Each is an argv array (no shell). It runs with MARS_RESOURCE, MARS_HOST, MARS_ROLE and
 * MARS_DEVICE (the NBD export address) in its environment; its output goes to marsd's log
 * (at most `hookOutputBytesMax`), and it is killed after `hookTimeoutMs`. Hooks run one at
 * a time per resource, in the order of the role changes; a failing hook is logged and
 * does not change the role.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { FsStorage } from '../storage/fs-storage.js';

export const hooksFile = 'hooks.json';
export const hookTimeoutMs = 120_000;
export const hookOutputBytesMax = 64 * 1024;

export interface HookConfig {
  onPrimary?: string[];
  onSecondary?: string[];
}

export type HookLog = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

function argv(value: unknown, file: string, key: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0 || !value.every((v): v is string => typeof v === 'string' && v.length > 0)) {
    throw new Error(`${file}: ${key} must be a non-empty array of strings (argv, no shell)`);
  }
  return value;
}

/** The hooks of a resource directory; undefined when there is no hooks.json. Throws with the file name on a bad file. */
export async function loadHooks(resourceDir: string): Promise<HookConfig | undefined> {
  const file = join(resourceDir, hooksFile);
  // O_NOFOLLOW: a hooks.json linked in from elsewhere is refused (state-dir.md, "Who may change it").
  const raw = await new FsStorage(resourceDir).readAll(hooksFile);
  if (raw === undefined) return undefined;
  const text = raw.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${file}: not valid JSON`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${file}: not an object`);
  const p = parsed as Record<string, unknown>;
  if (p['formatVersion'] !== 1) throw new Error(`${file}: unknown format version ${String(p['formatVersion'])}`);
  const onPrimary = argv(p['onPrimary'], file, 'onPrimary');
  const onSecondary = argv(p['onSecondary'], file, 'onSecondary');
  return { ...(onPrimary === undefined ? {} : { onPrimary }), ...(onSecondary === undefined ? {} : { onSecondary }) };
}

/** Runs one hook; resolves with its exit code (or -1 when it could not start or was killed). */
export function runHook(command: string[], env: Record<string, string>, log: HookLog, what: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let cut = false;
    const collect = (chunk: Buffer): void => {
      if (output.length >= hookOutputBytesMax) {
        cut = true;
        return;
      }
      output += chunk.toString('utf8').slice(0, hookOutputBytesMax - output.length);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => {
      log('error', `${what}: hook ran longer than ${hookTimeoutMs / 1000} s; killed`);
      child.kill('SIGKILL');
    }, hookTimeoutMs);
    timer.unref();
    child.on('error', (err) => {
      clearTimeout(timer);
      log('error', `${what}: hook could not start: ${err.message}`, { command });
      resolve(-1);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const exit = code ?? -1;
      log(exit === 0 ? 'info' : 'error', `${what}: hook exited ${signal ?? exit}`, { command, output: output + (cut ? '…(cut)' : '') });
      resolve(exit);
    });
  });
}

/** Runs the hooks of role changes one at a time per resource. */
export class HookRunner {
  private readonly queues = new Map<string, Promise<void>>();

  constructor(
    private readonly resourceDir: (name: string) => string,
    private readonly env: (name: string) => Record<string, string>,
    private readonly log: HookLog,
  ) {}

  roleChanged(name: string, role: 'primary' | 'secondary'): void {
    const previous = this.queues.get(name) ?? Promise.resolve();
    const next = previous.then(async () => {
      let hooks: HookConfig | undefined;
      try {
        hooks = await loadHooks(this.resourceDir(name));
      } catch (err) {
        this.log('error', `hooks of ${name} not run: ${(err as Error).message}`, { resource: name });
        return;
      }
      const command = role === 'primary' ? hooks?.onPrimary : hooks?.onSecondary;
      if (command === undefined) return;
      await runHook(command, { ...this.env(name), MARS_ROLE: role }, (level, msg, fields) => this.log(level, msg, { resource: name, ...fields }), `${name} became ${role}`);
    });
    this.queues.set(name, next);
    void next.finally(() => {
      if (this.queues.get(name) === next) this.queues.delete(name);
    });
  }

  /** Resolves once every started hook has finished (for a clean stop and tests). */
  async idle(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }
}
