/**
 * Runs the runbooks of docs/operations.md as written: every fenced block tagged
 * `sh runbook=NAME` is a list of lines; `# on HOST` says where the following lines run,
 * other comment lines are prose. A command's trailing comment may state what it must
 * print: `# → VALUE` (its whole output, trimmed), `# shows TEXT` (a part of its output),
 * `# lacks TEXT` (output that does not hold TEXT),
 * `# refused: TEXT` (exit 1, TEXT in its one line on stderr). `systemctl start|stop
 * marsd` starts or stops the host's daemon (the test's, by PID); a plain `marsadm ARGS`
 * line, and the guide's `until [ "$(marsadm …)" = VALUE ]` wait, run in this process with
 * `--dir` the host's state directory (see plainMarsadm, untilMarsadm); every other line
 * runs in bash with `MARS_DIR` set to the host's state directory and
 * `marsadm` on the PATH. The documented addresses, devices and paths are mapped to the
 * test's first.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { adm } from './adm.js';
import { repoRoot, run, type RunResult } from './processes.js';
import { waitFor } from './wait.js';

/**
 * A line that is `marsadm` and plain words (no quotes, variables, pipes or other shell
 * syntax) runs in this process (adm.ts: the same program, from its arguments to its output
 * and exit code), not as bash plus a node process: each of those cost about half a second on
 * two shared CPUs. `MARS_DIR` becomes `--dir`. The other lines (the `until …; do sleep 1;
 * done` loops) still run in bash with bin/marsadm on the PATH.
 */
const plainMarsadm = /^marsadm( [A-Za-z0-9_.,:=@/+-]+)*$/;

/**
 * The guide's wait, `until [ "$(marsadm ARGS)" = VALUE ]; do sleep N; done`, runs as the
 * same loop in this process: marsadm ARGS until its output is VALUE, looked at every
 * untilPollMs instead of every N seconds (a second per look was most of the runbooks'
 * time), failing after lineTimeoutMs like any line.
 */
const untilMarsadm = /^until \[ "\$\(marsadm ((?:[A-Za-z0-9_.,:=@/+-]+ ?)+)\)" = ([A-Za-z0-9_.-]+) \]; do sleep [0-9.]+; done$/;
const untilPollMs = 100;

/**
 * A `view` line on another host than the line before it reads what that host has heard of
 * the change just made elsewhere, which the cluster's metadata carries there within a
 * moment: an operator walking to the other host sees it. It is looked at until it shows
 * what the guide says (every untilPollMs, at most viewSettleMsMax); then checked as any
 * line. The same host's own view of its own change is checked at once.
 */
const viewSettleMsMax = 10_000;

async function viewSettled(dir: string, args: readonly string[], holds: (stdout: string) => boolean): Promise<RunResult> {
  const deadline = Date.now() + viewSettleMsMax;
  for (;;) {
    const r = await adm(dir, ...args);
    if ((r.code === 0 && holds(r.stdout)) || Date.now() >= deadline) return r;
    await new Promise((resolve) => setTimeout(resolve, untilPollMs));
  }
}

/** Whether a successful line's output is what its comment says (prints, shows, lacks). */
function shows(stdout: string, expect: NonNullable<Expectation>): boolean {
  if (expect.kind === 'prints') return stdout.trim() === expect.text;
  if (expect.kind === 'shows') return stdout.includes(expect.text);
  if (expect.kind === 'lacks') return stdout.trim() !== '' && !stdout.includes(expect.text);
  return true;
}

async function untilPrints(dir: string, args: readonly string[], value: string): Promise<RunResult> {
  await waitFor(`marsadm ${args.join(' ')} to print ${value}`, async () => (await adm(dir, ...args)).stdout.trim() === value, lineTimeoutMs, untilPollMs);
  return { code: 0, stdout: '', stderr: '' };
}

export type Expectation = { readonly kind: 'prints' | 'shows' | 'lacks' | 'refused'; readonly text: string } | undefined;

export interface RunbookLine {
  readonly host: string;
  readonly command: string;
  readonly expect: Expectation;
}

const blockStart = /^```sh runbook=([a-z-]+)\s*$/;

function expectation(comment: string | undefined): Expectation {
  if (comment === undefined) return undefined;
  if (comment.startsWith('→ ')) return { kind: 'prints', text: comment.slice(2).trim() };
  if (comment.startsWith('shows ')) return { kind: 'shows', text: comment.slice(6).trim() };
  if (comment.startsWith('lacks ')) return { kind: 'lacks', text: comment.slice(6).trim() };
  if (comment.startsWith('refused: ')) return { kind: 'refused', text: comment.slice(9).trim() };
  return undefined;
}

/** The runbook blocks of a markdown text, by name. */
export function parseRunbooks(markdown: string): Map<string, RunbookLine[]> {
  const blocks = new Map<string, RunbookLine[]>();
  let current: RunbookLine[] | undefined;
  let host = '';
  for (const raw of markdown.split('\n')) {
    const start = blockStart.exec(raw);
    if (start !== null) {
      current = [];
      host = '';
      blocks.set(start[1]!, current);
      continue;
    }
    if (current === undefined) continue;
    const line = raw.trim();
    if (line === '```') {
      current = undefined;
      continue;
    }
    if (line === '') continue;
    if (line.startsWith('#')) {
      const on = /^# on ([a-z]+)/.exec(line);
      if (on !== null) host = on[1]!;
      continue;
    }
    assert.ok(host !== '', `runbook line before any "# on HOST": ${line}`);
    const split = /^(.*?)\s+#\s(.*)$/.exec(line);
    current.push({ host, command: (split?.[1] ?? line).trim(), expect: expectation(split?.[2]) });
  }
  return blocks;
}

/** The runbooks of docs/operations.md. */
export function operationsRunbooks(): Map<string, RunbookLine[]> {
  return parseRunbooks(readFileSync(join(repoRoot, 'docs', 'operations.md'), 'utf8'));
}

export interface RunbookHost {
  readonly dir: string;
}

export interface RunbookContext<H extends RunbookHost> {
  readonly hosts: ReadonlyMap<string, H>;
  /** Documented text -> the test's (addresses, device paths, the secret's path). */
  map(text: string, host: H): string;
  startDaemon(host: H): Promise<void>;
  stopDaemon(host: H): Promise<void>;
  /** Called before each line runs (e.g. to let a client go while a command waits for it). */
  beforeLine?(line: RunbookLine): void;
  diagnostic(message: string): void;
}

const lineTimeoutMs = 90_000;

/** Runs one runbook line by line; fails at the first line that does not do what it says. */
export async function runRunbook<H extends RunbookHost>(lines: readonly RunbookLine[], c: RunbookContext<H>): Promise<void> {
  assert.ok(lines.length > 0, 'an empty runbook');
  const path = `${join(repoRoot, 'bin')}:${process.env['PATH'] ?? ''}`;
  let previousHost: string | undefined;
  for (const line of lines) {
    const host = c.hosts.get(line.host);
    assert.ok(host !== undefined, `runbook names an unknown host ${line.host}`);
    c.beforeLine?.(line);
    if (line.command === 'systemctl start marsd') {
      await c.startDaemon(host);
      continue;
    }
    if (line.command === 'systemctl stop marsd') {
      await c.stopDaemon(host);
      continue;
    }
    const command = c.map(line.command, host);
    const startedMs = Date.now();
    const loop = untilMarsadm.exec(command);
    const expect = line.expect === undefined ? undefined : { ...line.expect, text: c.map(line.expect.text, host) };
    const settles = line.host !== previousHost && expect !== undefined && expect.kind !== 'refused' && /^marsadm view/.test(command);
    previousHost = line.host;
    const r = plainMarsadm.test(command)
      ? settles
        ? await viewSettled(host.dir, command.split(' ').slice(1), (out) => shows(out, expect))
        : await adm(host.dir, ...command.split(' ').slice(1))
      : loop !== null
        ? await untilPrints(host.dir, loop[1]!.split(' '), loop[2]!)
        : await run('bash', ['-c', command], { timeoutMs: lineTimeoutMs, env: { ...process.env, MARS_DIR: host.dir, PATH: path } });
    c.diagnostic(`${line.host}$ ${command} -> exit ${r.code} in ${Date.now() - startedMs} ms${r.stdout.trim() === '' ? '' : `\n${r.stdout.trimEnd()}`}${r.stderr.trim() === '' ? '' : `\n${r.stderr.trimEnd()}`}`);
    const where = `on ${line.host}: ${line.command}`;
    if (expect?.kind === 'refused') {
      assert.equal(r.code, 1, `${where}: expected a refusal (exit 1), got exit ${r.code}: ${r.stdout}${r.stderr}`);
      const errLines = r.stderr.trim().split('\n');
      assert.equal(errLines.length, 1, `${where}: a refusal is one line: ${r.stderr}`);
      assert.ok(errLines[0]!.includes(expect.text), `${where}: refusal ${JSON.stringify(errLines[0])} lacks ${JSON.stringify(expect.text)}`);
      continue;
    }
    assert.equal(r.code, 0, `${where}: exit ${r.code}: ${r.stderr.trim()}`);
    if (expect?.kind === 'prints') assert.equal(r.stdout.trim(), expect.text, where);
    if (expect?.kind === 'shows') assert.ok(r.stdout.includes(expect.text), `${where}: the output lacks ${JSON.stringify(expect.text)}:\n${r.stdout}`);
    if (expect?.kind === 'lacks') assert.ok(r.stdout.trim() !== '' && !r.stdout.includes(expect.text), `${where}: the output shows ${JSON.stringify(expect.text)}:\n${r.stdout}`);
  }
}
