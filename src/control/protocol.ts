/**
 * marsadm <-> marsd over DIR/control.sock: one JSON object per line each way.
 * Request:  {"id": 1, "cmd": "create-resource", "args": {...}}
 * Response: {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "code": "EXISTS", "message": "..."}
 * The socket is a Unix socket in the state directory (mode 0700), so only the owner of
 * the directory can use it.
 */
export const controlLineBytesMax = 1024 * 1024;
export const controlConnectionsMax = 64;

export interface ControlRequest {
  id: number;
  cmd: string;
  args: Record<string, unknown>;
}

export type ControlResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; code: string; message: string };

/** Splits a byte stream into lines, refusing any line longer than the limit. */
export class LineReader {
  private pending = '';
  constructor(private readonly onLine: (line: string) => void, private readonly lineBytesMax = controlLineBytesMax) {}

  /** Returns false once a line is too long (the caller closes the connection). */
  push(chunk: Buffer): boolean {
    this.pending += chunk.toString('utf8');
    for (;;) {
      const nl = this.pending.indexOf('\n');
      if (nl < 0) break;
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      if (line.length > 0) this.onLine(line);
    }
    return this.pending.length <= this.lineBytesMax;
  }
}
