/**
 * The one way a test waits for something: poll a predicate until it holds, at most
 * `timeoutMs`; the failure names what was awaited. A test never sleeps to let something
 * happen and then checks it (a sleep that was too short on a loaded machine makes a
 * negative check pass without having checked anything): it waits for the thing itself,
 * or for an observable sign that the moment has passed.
 */
export async function waitFor(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs = 20_000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
