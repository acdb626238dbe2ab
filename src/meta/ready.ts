/**
 * What the metadata core asks its shell to do after one event, and in which order:
 *
 *   1. persist: write every listed scope (MetaStore.save with MetaNode.exportScope), and
 *      wait until it is durable. A scope without entries is removed.
 *   2. send: only then send the messages, so that no peer ever learns a version that
 *      this host could forget in a crash.
 *   3. changed: reconcile on these keys (desired and actual state, membership).
 *   4. rejected: log each once, with the peer's address.
 *
 * Messages may be lost or reordered: the core repairs that by anti-entropy, so the shell
 * neither queues without bound nor retries.
 */
import type { MarsErrorCode } from '../core/errors.js';
import type { ScopeId } from './keys.js';
import { rejectionsPerEventMax } from './limits.js';
import type { MetaMessage } from './messages.js';

export interface Outbound {
  readonly to: string;
  readonly message: MetaMessage;
}

export interface Rejection {
  readonly peer: string;
  readonly code: MarsErrorCode;
  readonly detail: string;
}

export interface Ready {
  readonly persist: readonly ScopeId[];
  readonly send: readonly Outbound[];
  readonly changed: readonly string[];
  readonly rejected: readonly Rejection[];
}

export const emptyReady: Ready = { persist: [], send: [], changed: [], rejected: [] };

/** Collects the actions of one event. */
export class ReadyBuilder {
  private readonly persistSet = new Set<ScopeId>();
  private readonly sendList: Outbound[] = [];
  private readonly changedSet = new Set<string>();
  private readonly rejectedList: Rejection[] = [];
  private rejectedDropped = 0;

  persist(scope: ScopeId): void {
    this.persistSet.add(scope);
  }

  send(to: string, message: MetaMessage): void {
    this.sendList.push({ to, message });
  }

  changed(key: string): void {
    this.changedSet.add(key);
  }

  reject(peer: string, code: MarsErrorCode, detail: string): void {
    if (this.rejectedList.length < rejectionsPerEventMax) this.rejectedList.push({ peer, code, detail });
    else this.rejectedDropped++;
  }

  finish(): Ready {
    const rejected = [...this.rejectedList];
    const last = rejected.at(-1);
    if (last !== undefined && this.rejectedDropped > 0) {
      rejected[rejected.length - 1] = { ...last, detail: `${last.detail} (and ${this.rejectedDropped} more)` };
    }
    return { persist: [...this.persistSet], send: this.sendList, changed: [...this.changedSet], rejected };
  }
}

/**
 * One Ready that does what the given ones do, in order: their scopes persisted once (each
 * scope's write takes the node's current state, which covers every one of them), then
 * their sends in order. For a caller that makes several local changes that belong together.
 */
export function joinReadies(readies: readonly Ready[]): Ready {
  return {
    persist: [...new Set(readies.flatMap((r) => r.persist))],
    send: readies.flatMap((r) => r.send),
    changed: [...new Set(readies.flatMap((r) => r.changed))],
    rejected: readies.flatMap((r) => r.rejected),
  };
}
