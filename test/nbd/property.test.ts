/**
 * Random operation sequences through our client and server against a dumb model: a
 * Buffer and the NBD error the spec asks for on a bad range. Each sequence runs twice:
 * once waiting for every reply, once pipelined (all requests sent at once). MemBackend
 * applies each call when it is made, and the server calls the backend in request order,
 * so the pipelined run must give the same results as the model too.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { NbdClient, NbdRequestError } from '../../src/nbd/client.js';
import { MemBackend } from '../../src/nbd/mem-backend.js';
import { NbdErrno } from '../../src/nbd/protocol.js';
import { HOST, startServer } from './helpers.js';

const fcSeed = Number(process.env['FC_SEED'] ?? 42);
const SIZE_BYTES = 64 * 1024;

type Op =
  | { readonly kind: 'write'; readonly offset: number; readonly length: number; readonly fill: number; readonly fua: boolean }
  | { readonly kind: 'read' | 'trim' | 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'flush' };

/** What one op yields: read data, or 0 for success, or the NBD error value. */
type Outcome = Buffer | number;

const rangeArb = { offset: fc.integer({ min: 0, max: SIZE_BYTES + 512 }), length: fc.integer({ min: 0, max: 9000 }) };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), ...rangeArb, fill: fc.integer({ min: 0, max: 255 }), fua: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('read' as const), ...rangeArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('trim' as const, 'zero' as const), ...rangeArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
);

function payload(op: { offset: number; length: number; fill: number }): Buffer {
  const buf = Buffer.allocUnsafe(op.length);
  for (let i = 0; i < op.length; i++) buf[i] = (op.fill + i) & 0xff;
  return buf;
}

function applyToModel(model: Buffer, op: Op): Outcome {
  if (op.kind === 'flush') return 0;
  if (op.offset + op.length > model.length) return op.kind === 'write' || op.kind === 'zero' ? NbdErrno.ENOSPC : NbdErrno.EINVAL;
  switch (op.kind) {
    case 'write':
      payload(op).copy(model, op.offset);
      return 0;
    case 'read':
      return Buffer.from(model.subarray(op.offset, op.offset + op.length));
    default:
      model.fill(0, op.offset, op.offset + op.length);
      return 0;
  }
}

function send(client: NbdClient, op: Op): Promise<Outcome> {
  const call = (): Promise<Buffer | undefined> => {
    switch (op.kind) {
      case 'write':
        return client.write(op.offset, payload(op), { fua: op.fua }).then(() => undefined);
      case 'read':
        return client.read(op.offset, op.length);
      case 'trim':
        return client.trim(op.offset, op.length).then(() => undefined);
      case 'zero':
        return client.writeZeroes(op.offset, op.length).then(() => undefined);
      case 'flush':
        return client.flush().then(() => undefined);
    }
  };
  return call().then(
    (data) => data ?? 0,
    (err: unknown) => {
      if (err instanceof NbdRequestError) return err.nbdError;
      throw err;
    },
  );
}

async function runOps(port: number, ops: readonly Op[], pipelined: boolean): Promise<Outcome[]> {
  const client = await NbdClient.connect({ host: HOST, port, exportName: 'disk' });
  try {
    if (pipelined) return await Promise.all(ops.map((op) => send(client, op)));
    const outcomes: Outcome[] = [];
    for (const op of ops) outcomes.push(await send(client, op));
    return outcomes;
  } finally {
    await client.close();
  }
}

void test('random operation sequences behave like a plain buffer, sequential and pipelined', async () => {
  const s = await startServer({});
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
        for (const pipelined of [false, true]) {
          const backend = new MemBackend(SIZE_BYTES);
          s.registry.set('disk', backend);
          const model = Buffer.alloc(SIZE_BYTES);
          const expected = ops.map((op) => applyToModel(model, op));
          const actual = await runOps(s.port, ops, pipelined);
          assert.deepEqual(actual, expected);
          assert.ok(backend.snapshot().equals(model), 'the disk equals the model');
        }
      }),
      { seed: fcSeed, numRuns: 60 },
    );
  } finally {
    await s.close();
  }
});
