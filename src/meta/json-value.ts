/**
 * Metadata values are JSON. They are canonicalised (object keys sorted, recursively) when
 * they enter the core, locally or from a peer or a file, so that equal values have equal
 * bytes: digests and the merge's tie-break compare those bytes.
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Depth of nested arrays and objects in a value; deeper values are refused. */
export const jsonDepthMax = 16;

/**
 * A canonical, deeply frozen copy of an untrusted value, or undefined if it is not plain
 * JSON. Frozen because entries are shared (between tables, and with callers of `get`).
 */
export function canonicalJson(input: unknown, depth = 0): JsonValue | undefined {
  if (depth > jsonDepthMax) return undefined;
  if (input === null || typeof input === 'boolean' || typeof input === 'string') return input;
  if (typeof input === 'number') return Number.isFinite(input) ? input : undefined;
  if (Array.isArray(input)) {
    const out: JsonValue[] = [];
    for (const item of input as unknown[]) {
      const c = canonicalJson(item, depth + 1);
      if (c === undefined) return undefined;
      out.push(c);
    }
    return Object.freeze(out) as JsonValue[];
  }
  if (typeof input === 'object' && Object.getPrototypeOf(input) === Object.prototype) {
    const record = input as Record<string, unknown>;
    const out: { [key: string]: JsonValue } = {};
    for (const key of Object.keys(record).sort()) {
      if (key === '__proto__') return undefined; // would set the prototype, not a field
      const c = canonicalJson(record[key], depth + 1);
      if (c === undefined) return undefined;
      out[key] = c;
    }
    return Object.freeze(out);
  }
  return undefined;
}
