/**
 * marsadm in the test's own process: the same program (src/cli/marsadm-main.ts, from
 * argument parsing to its output lines and exit code) without a node process per call.
 * A process costs about 0.2 s of CPU to start, and on two shared CPUs the daemons under
 * test wait for it: the setup of the multi-host tests (create-cluster, join-cluster,
 * create-resource, join-resource, wait-cluster …) went through hundreds of them.
 *
 * What only a real process shows (bin/marsadm, the exit status, stdout and stderr of the
 * process) stays with `marsadm` of processes.ts: test/cli and the runbooks use it. Calls
 * that must run elsewhere (`ip netns exec`) need a process too, and `events` and
 * `completion`, which write to their process's stdout themselves, get one here.
 */
import { runMarsadm } from '../../src/cli/marsadm-main.js';
import { traceTestStep } from './wait.js';
import { marsadm, type RunResult } from './processes.js';

/** Commands that write to the process's own stdout: they run as a process. */
const processOnly: readonly string[] = ['events', 'completion'];
/** As `run` of processes.ts: a call that takes longer fails the test. */
const admTimeoutMs = 60_000;

/** `marsadm --dir DIR ARGS…` in this process; resolves as `marsadm` of processes.ts does. */
export async function adm(dir: string, ...args: string[]): Promise<RunResult> {
  const word = args.find((a) => !a.startsWith('-'));
  if (word !== undefined && processOnly.includes(word)) return marsadm(dir, ...args);
  const result: RunResult = { code: -1, stdout: '', stderr: '' };
  const startMs = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`marsadm ${args.join(' ')} did not finish within ${admTimeoutMs} ms\n${result.stderr}`)), admTimeoutMs);
  });
  const call = runMarsadm([process.execPath, 'marsadm', '--dir', dir, ...args], {
    stdout: (text) => (result.stdout += text),
    stderr: (text) => (result.stderr += text),
  });
  try {
    result.code = await Promise.race([call, late]);
  } finally {
    clearTimeout(timer);
  }
  traceTestStep('adm', args.join(' '), startMs);
  return result;
}
