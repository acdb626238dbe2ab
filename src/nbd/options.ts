/**
 * Option haggling, as decisions without I/O: one option in, the replies to send and what
 * the connection does next out. The connection (connection.ts) only moves bytes.
 * We run NOTLS with simple replies only; every option we do not implement gets
 * NBD_REP_ERR_UNSUP, which the spec requires clients to accept.
 */
import type { BlockBackend, ExportRegistry } from './backend.js';
import {
  decodeGoRequest,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoName,
  encodeOptionReply,
  encodeServerEntry,
} from './codec.js';
import type { NbdLimits } from './limits.js';
import { NbdInfo, NbdOption, NbdReply, NbdTransmissionFlag, NbdWire } from './protocol.js';

export interface OptionContext {
  readonly registry: ExportRegistry;
  readonly limits: NbdLimits;
  /** The client set NBD_FLAG_C_NO_ZEROES. */
  readonly noZeroes: boolean;
  /** False when the export has as many connections as it may (exportConnectionsMax). */
  readonly mayOpenExport?: (exportName: string) => boolean;
}

export type OptionOutcome =
  /** Send the replies and wait for the next option. */
  | { readonly kind: 'continue'; readonly replies: Buffer[] }
  /** Send the replies and enter transmission on this export. */
  | { readonly kind: 'transmit'; readonly replies: Buffer[]; readonly exportName: string; readonly backend: BlockBackend }
  /** Send the replies, then close the connection (NBD_OPT_ABORT). */
  | { readonly kind: 'abort'; readonly replies: Buffer[] }
  /** Hard disconnect without a reply (NBD_OPT_EXPORT_NAME of an unknown export). */
  | { readonly kind: 'drop'; readonly reason: string };

export function transmissionFlagsFor(backend: BlockBackend): number {
  let flags =
    NbdTransmissionFlag.HAS_FLAGS |
    NbdTransmissionFlag.SEND_FLUSH |
    NbdTransmissionFlag.SEND_FUA |
    NbdTransmissionFlag.SEND_TRIM |
    NbdTransmissionFlag.SEND_WRITE_ZEROES;
  if (backend.canMultiConn) flags |= NbdTransmissionFlag.CAN_MULTI_CONN;
  return flags;
}

export function handleOption(option: number, data: Buffer, ctx: OptionContext): OptionOutcome {
  switch (option) {
    case NbdOption.EXPORT_NAME:
      return exportName(data, ctx);
    case NbdOption.ABORT:
      // The spec asks us to ignore any data sent with ABORT.
      return { kind: 'abort', replies: [encodeOptionReply(option, NbdReply.ACK)] };
    case NbdOption.LIST:
      return list(data, ctx);
    case NbdOption.INFO:
    case NbdOption.GO:
      return infoOrGo(option, data, ctx);
    default:
      return { kind: 'continue', replies: [encodeOptionReply(option, NbdReply.ERR_UNSUP)] };
  }
}

function exportName(data: Buffer, ctx: OptionContext): OptionOutcome {
  if (data.length > NbdWire.STRING_BYTES_MAX) return { kind: 'drop', reason: 'export name too long' };
  const name = data.toString('utf8');
  const backend = ctx.registry.get(name);
  if (backend === undefined) return { kind: 'drop', reason: `unknown export ${JSON.stringify(name)}` };
  if (ctx.mayOpenExport?.(name) === false) return { kind: 'drop', reason: `export ${JSON.stringify(name)} has as many connections as it may` };
  const reply = encodeExportNameReply(backend.sizeBytes, transmissionFlagsFor(backend), ctx.noZeroes);
  return { kind: 'transmit', replies: [reply], exportName: name, backend };
}

function list(data: Buffer, ctx: OptionContext): OptionOutcome {
  if (data.length !== 0) return { kind: 'continue', replies: [encodeOptionReply(NbdOption.LIST, NbdReply.ERR_INVALID)] };
  const replies = ctx.registry.names().map((name) => encodeOptionReply(NbdOption.LIST, NbdReply.SERVER, encodeServerEntry(name)));
  replies.push(encodeOptionReply(NbdOption.LIST, NbdReply.ACK));
  return { kind: 'continue', replies };
}

function infoOrGo(option: number, data: Buffer, ctx: OptionContext): OptionOutcome {
  const request = decodeGoRequest(data);
  if (request === undefined) return { kind: 'continue', replies: [encodeOptionReply(option, NbdReply.ERR_INVALID)] };
  const backend = ctx.registry.get(request.exportName);
  if (backend === undefined) return { kind: 'continue', replies: [encodeOptionReply(option, NbdReply.ERR_UNKNOWN)] };
  if (option === NbdOption.GO && ctx.mayOpenExport?.(request.exportName) === false) {
    const message = Buffer.from(`export ${request.exportName} has as many connections as it may`, 'utf8');
    return { kind: 'continue', replies: [encodeOptionReply(option, NbdReply.ERR_POLICY, message)] };
  }
  const info = (payload: Buffer): Buffer => encodeOptionReply(option, NbdReply.INFO, payload);
  const replies = [
    info(encodeInfoExport(backend.sizeBytes, transmissionFlagsFor(backend))),
    // Sent even when not requested: our maximum is smaller than the default "unlimited".
    info(
      encodeInfoBlockSize({
        minBytes: ctx.limits.blockBytesMin,
        preferredBytes: ctx.limits.blockBytesPreferred,
        maxBytes: ctx.limits.requestBytesMax,
      }),
    ),
  ];
  if (request.infoRequests.includes(NbdInfo.NAME)) replies.push(info(encodeInfoName(request.exportName)));
  replies.push(encodeOptionReply(option, NbdReply.ACK));
  if (option === NbdOption.INFO) return { kind: 'continue', replies };
  return { kind: 'transmit', replies, exportName: request.exportName, backend };
}
