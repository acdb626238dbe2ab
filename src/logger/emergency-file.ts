/**
 * The shell around `emergency-HOST` (src/space/emergency-state.ts): created while there is
 * room, then only overwritten in place, one slot per save, each save fdatasync'd. A
 * save therefore needs no free space in the log filesystem.
 */
import { fromSystemError, MarsError } from '../core/errors.js';
import type { Storage } from '../storage/storage.js';
import { decodeEmergencyState, emergencySlotBytes, emergencyStateBytes, emergencyStateFileName, encodeEmergencySlot, encodeEmergencyState, type EmergencyState } from '../space/emergency-state.js';

export class EmergencyFile {
  private constructor(
    private readonly storage: Storage,
    readonly name: string,
    private current: EmergencyState | undefined,
  ) {}

  /** Reads the file, or creates it (logging, no hole) when missing. A creation that fails (ENOSPC) is tried again at the next save. */
  static async open(storage: Storage, host: string): Promise<EmergencyFile> {
    const name = emergencyStateFileName(host);
    const raw = await storage.readAll(name);
    if (raw !== undefined) return new EmergencyFile(storage, name, decodeEmergencyState(raw, name));
    const file = new EmergencyFile(storage, name, undefined);
    await file.create({ mode: 'logging', generation: 0n, logNumber: 0, nextSeq: 0n }).catch(() => undefined);
    return file;
  }

  /** The saved state of HOST, without creating the file (undefined when there is none). */
  static async read(storage: Storage, host: string): Promise<EmergencyState | undefined> {
    const name = emergencyStateFileName(host);
    const raw = await storage.readAll(name);
    return raw === undefined ? undefined : decodeEmergencyState(raw, name);
  }

  /** The saved state; undefined when the file could not be created yet. */
  get state(): EmergencyState | undefined {
    return this.current;
  }

  /** The state saved last says: write the device directly, never replay the log onto it. */
  get inEmergency(): boolean {
    return this.current?.mode === 'emergency';
  }

  private async create(state: EmergencyState): Promise<void> {
    const file = await this.storage.open(this.name, 'create');
    try {
      await file.write(encodeEmergencyState(state), 0);
      await file.sync();
    } catch (err) {
      await file.close().catch(() => undefined);
      await this.storage.remove(this.name).catch(() => undefined);
      throw fromSystemError(err, `create ${this.name}`);
    }
    await file.close();
    await this.storage.syncDir();
    this.current = state;
  }

  /** Saves the mode with the log number and seq, durably, before returning. */
  async save(mode: EmergencyState['mode'], logNumber: number, nextSeq: bigint): Promise<void> {
    const before = this.current;
    if (before === undefined) {
      await this.create({ mode, generation: 0n, logNumber, nextSeq });
      return;
    }
    const next: EmergencyState = { mode, generation: before.generation + 1n, logNumber, nextSeq };
    const file = await this.storage.open(this.name, 'write');
    try {
      if ((await file.size()) < emergencyStateBytes) throw new MarsError('BAD_STATE_DIR', `${this.name} is shorter than ${emergencyStateBytes} bytes`);
      await file.write(encodeEmergencySlot(next), next.generation % 2n === 0n ? 0 : emergencySlotBytes);
      await file.sync();
    } catch (err) {
      throw err instanceof MarsError ? err : fromSystemError(err, `save ${this.name}`);
    } finally {
      await file.close().catch(() => undefined);
    }
    this.current = next;
  }
}
