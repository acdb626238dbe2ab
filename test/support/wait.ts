/**
 * The one way a test waits for something: poll a predicate until it holds, at most
 * `timeoutMs`; the failure names what was awaited. A test never sleeps to let something
 * happen and then checks it (a sleep that was too short on a loaded machine makes a
 * negative check pass without having checked anything): it waits for the thing itself,
 * or for an observable sign that the moment has passed.
 */
import { appendFileSync } from 'node:fs';

/**
 * MARS_TEST_TRACE=FILE: every wait, process run, in-process marsadm call, daemon start and
 * cluster stop and removal of test/support is appended to FILE as one line (test process PID, start in ms since the
 * epoch, elapsed ms, kind, what), to find where a slow test spends its time. Off unless set.
 */
const traceFile = process.env['MARS_TEST_TRACE'];

export function traceTestStep(kind: string, what: string, startMs: number): void {
  if (traceFile === undefined || traceFile === '') return;
  appendFileSync(traceFile, `${process.pid} ${startMs} ${Date.now() - startMs} ${kind} ${what.replace(/\s+/g, ' ').slice(0, 200)}\n`);
}

export async function waitFor(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs = 20_000, intervalMs = 50): Promise<void> {
  const startMs = Date.now();
  const deadline = startMs + timeoutMs;
  for (;;) {
    if (await predicate()) {
      traceTestStep('wait', what, startMs);
      return;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
