/**
 * Shared helpers of the fetch tests: a primary (LogWriter over MemStorage, its log source
 * with the writer's durable end, and a model of the device its log describes), a fetch
 * server on 127.0.0.1 behind authenticated PeerLinks, clients with fast reconnects, and
 * polling with a deadline.
 */
import assert from 'node:assert/strict';
import { systemClock } from '../../src/core/clock.js';
import { Random } from '../../src/core/random.js';
import { FetchClient, FetchServer, LocalCopies, liveWriterEnd, StorageLogSource, type FetchClientOptions, type LogSource } from '../../src/fetch/index.js';
import { encodeRecord, formatLogName, listLogFiles, LogWriter, type LogEntry, type LogRecord } from '../../src/log/index.js';
import { PeerServer, dialPeer, systemTimers, type PeerLink } from '../../src/net/index.js';
import { MemStorage } from '../../src/storage/mem-storage.js';
import type { CompressionName } from '../../src/compress/index.js';
import type { Storage, StorageFile } from '../../src/storage/storage.js';

export const secret = Buffer.from('a cluster secret of 32 bytes....');
export const clusterId = 'prod';
export const resource = 'r1';
export const deviceSizeBytes = 1024 * 1024;
export const blockBytes = 4096;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A random write, trim or write-zeroes within the device, block-aligned or not. */
export function randomEntry(random: Random, lamport: bigint, payloadBytesMax = 8192): LogEntry {
  const roll = random.int(10);
  const lengthBytes = 1 + random.int(payloadBytesMax);
  const offsetBytes = random.int(deviceSizeBytes - lengthBytes);
  if (roll === 0) return { kind: 'trim', lamport, offsetBytes, lengthBytes };
  if (roll === 1) return { kind: 'zeroes', lamport, offsetBytes, lengthBytes };
  return { kind: 'write', lamport, offsetBytes, payload: random.bytes(lengthBytes) };
}

/** The "dumb" reference disk: applies entries in order. */
export function applyToModel(model: Buffer, entry: LogEntry): void {
  if (entry.kind === 'write') entry.payload.copy(model, entry.offsetBytes);
  else model.fill(0, entry.offsetBytes, entry.offsetBytes + entry.lengthBytes);
}

/** A primary: its log writer, the log source a fetch server serves, and the device model. */
export class Primary {
  readonly storage = new MemStorage();
  readonly model = Buffer.alloc(deviceSizeBytes);
  readonly random: Random;
  source!: StorageLogSource;
  writer!: LogWriter;
  private lamport = 1n;

  private constructor(readonly host: string, seed: number) {
    this.random = new Random(seed);
  }

  static async open(host: string, seed: number, rotateBytes = 1 << 30): Promise<Primary> {
    const primary = new Primary(host, seed);
    primary.writer = await LogWriter.open(primary.storage, {
      host,
      logNumber: 1,
      startOffsetBytes: 0,
      nextSeq: 1n,
      rotateBytes,
      onRotate: () => primary.source.notifyChange(),
    });
    primary.source = new StorageLogSource({ storage: primary.storage, live: liveWriterEnd(primary.writer, host) });
    return primary;
  }

  /** Appends `count` random records (written, not yet durable). */
  async append(count: number, payloadBytesMax = 8192): Promise<void> {
    for (let i = 0; i < count; i++) {
      const entry = randomEntry(this.random, this.lamport++, payloadBytesMax);
      await this.writer.append(entry);
      applyToModel(this.model, entry);
    }
  }

  /** Group commit, then tell the source (the daemon will do this after each fdatasync). */
  async sync(): Promise<void> {
    await this.writer.sync();
    this.source.notifyChange();
  }

  durableBytes(): number {
    return this.writer.durablePosition().endOffsetBytes;
  }

  logName(logNumber = this.writer.position().logNumber): string {
    return formatLogName(logNumber, this.host);
  }
}

/** A fetch server of one host, listening on 127.0.0.1 (port 0), with every link it accepted. */
export class Server {
  private constructor(
    readonly peer: PeerServer,
    readonly fetch: FetchServer,
    readonly links: PeerLink[],
    readonly streamStarts: { logName: string; fromOffsetBytes: number }[],
  ) {}

  static async listen(host: string, source: LogSource, port = 0, compressions: readonly CompressionName[] = [], yieldTurn?: () => Promise<void>): Promise<Server> {
    const streamStarts: Server['streamStarts'] = [];
    const links: PeerLink[] = [];
    const fetch = new FetchServer({
      sources: (name) => (name === resource ? source : undefined),
      onStreamStart: (_peer, logName, fromOffsetBytes) => streamStarts.push({ logName, fromOffsetBytes }),
      compressions,
      ...(yieldTurn === undefined ? {} : { yieldTurn }),
    });
    const peer = await PeerServer.listen({
      listenHost: '127.0.0.1',
      port,
      auth: { secret, clusterId, localHost: host },
      onLink: (link) => {
        links.push(link);
        if (link.info.channel === 'fetch') fetch.adopt(link);
        else link.close();
      },
    });
    return new Server(peer, fetch, links, streamStarts);
  }

  get port(): number {
    return this.peer.port;
  }

  async close(): Promise<void> {
    this.fetch.close();
    await this.peer.close();
  }
}

/** Dials `peerHost` on the fetch channel at the current `target.port` (tests change it). */
export function dialer(localHost: string, peerHost: string, target: { port: number }): () => Promise<PeerLink> {
  return () => dialPeer({ host: '127.0.0.1', port: target.port, auth: { secret, clusterId, localHost }, peerHost, channel: 'fetch' });
}

/** A fetch client with fast reconnects over real timers. */
export function newClient(copies: LocalCopies, dial: () => Promise<PeerLink>, seed: number, extra: Partial<FetchClientOptions> = {}): FetchClient {
  return new FetchClient({
    resource,
    copies,
    dial,
    clock: systemClock,
    timers: systemTimers,
    random: new Random(seed),
    backoffMsMin: 10,
    backoffMsMax: 100,
    noSpaceRetryMsMin: 10,
    noSpaceRetryMsMax: 50,
    ...extra,
  });
}

/** Every log file of a storage with its bytes, in log order. */
export async function logImages(storage: MemStorage | Storage): Promise<Map<string, Buffer>> {
  const images = new Map<string, Buffer>();
  for (const f of await listLogFiles(storage)) images.set(f.name, (await storage.readAll(f.name)) ?? Buffer.alloc(0));
  return images;
}

/** The local copies equal the origin's durable prefix, file by file. */
export async function assertCopiesEqual(origin: Storage, copies: Storage, message: string): Promise<void> {
  const a = await logImages(origin);
  const b = await logImages(copies);
  assert.deepEqual([...b.keys()], [...a.keys()], `${message}: the same log files`);
  for (const [name, bytes] of a) assert.ok(b.get(name)?.equals(bytes), `${message}: ${name} differs (${b.get(name)?.length} vs ${bytes.length} bytes)`);
}

/** Wraps a Storage: calls `onWrite` after every completed write to a file (to act at a given point of a fetch). */
export function hookWrites(inner: Storage, onWrite: (name: string, endBytes: number) => void): Storage {
  return {
    open: async (name, mode) => {
      const file = await inner.open(name, mode);
      return {
        name: file.name,
        read: (target, position) => file.read(target, position),
        write: async (data, position) => {
          await file.write(data, position);
          onWrite(name, position + data.length);
        },
        writeBatch: (jobs) => file.writeBatch(jobs),
        sync: () => file.sync(),
        size: () => file.size(),
        truncate: (lengthBytes) => file.truncate(lengthBytes),
        close: () => file.close(),
      };
    },
    list: () => inner.list(),
    exists: (name) => inner.exists(name),
    remove: (name) => inner.remove(name),
    syncDir: () => inner.syncDir(),
    writeAtomic: (name, data) => inner.writeAtomic(name, data),
    readAll: (name) => inner.readAll(name),
  };
}

/** Counts the files a source opened and not yet closed. */
export function countingOpens(inner: LogSource): { source: LogSource; open: () => number } {
  let openFiles = 0;
  const source: LogSource = {
    list: () => inner.list(),
    info: (name) => inner.info(name),
    nextChange: () => inner.nextChange(),
    open: async (name): Promise<StorageFile> => {
      const file = await inner.open(name);
      openFiles++;
      let closed = false;
      return Object.assign(Object.create(file) as StorageFile, {
        close: async (): Promise<void> => {
          if (!closed) openFiles--;
          closed = true;
          await file.close();
        },
      });
    },
  };
  return { source, open: () => openFiles };
}

/** A log holding `records` in order from offset 0: its bytes and the end offset of each record. */
export function encodeLog(records: readonly LogRecord[]): { bytes: Buffer; ends: number[] } {
  const parts: Buffer[] = [];
  const ends: number[] = [];
  let end = 0;
  for (const r of records) {
    const encoded = encodeRecord(r, end);
    parts.push(encoded);
    end += encoded.length;
    ends.push(end);
  }
  return { bytes: Buffer.concat(parts), ends };
}
