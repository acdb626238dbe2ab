/**
 * The resources of this host and the reconciler's shell. On every change of a resource's
 * metadata keys (and of this host's record), the resource's loop asks the pure planner
 * (src/strategy) for the next step, carries it out against the local Resource, and
 * repeats until only the indicator is left to report; it then writes
 * `resource/R/actual/HOST` if that changed. One loop per resource at a time; a change
 * that arrives meanwhile makes it run once more.
 */
import { join } from 'node:path';
import { MarsError } from '../core/errors.js';
import { rm } from 'node:fs/promises';
import { actualKey, dataKey, desiredKey, hostKey, parseKey } from '../meta/index.js';
import { nextStep, resourceSpec, type LocalState, type ResourceSpec, type Step, type Switches } from '../strategy/index.js';
import type { JsonValue } from '../meta/index.js';
import type { Cluster } from './cluster.js';
import { resourceConfigFile } from './resource-config.js';
import { Resource, type ResourceContext } from './resource.js';
import { exists, paths } from './state-dir.js';

/** Steps one reconcile pass may take before it stops and reports (a planner that never settles is a bug). */
export const reconcileStepsMax = 16;

export interface ResourceSetOptions {
  readonly dir: string;
  readonly cluster: Cluster;
  readonly ctx: Omit<ResourceContext, 'onFailed' | 'onChange'>;
  /** The resource stopped serving: its NBD export must disconnect its clients. */
  readonly closeExport: (name: string) => void;
}

interface Loop {
  dirty: boolean;
  readonly done: Promise<void>;
}

export class ResourceSet {
  private readonly resources = new Map<string, Resource>();
  private readonly loops = new Map<string, Loop>();
  private stopping = false;

  constructor(private readonly o: ResourceSetOptions) {
    o.cluster.onChange((keys) => this.onKeys(keys));
  }

  get(name: string): Resource | undefined {
    return this.resources.get(name);
  }

  values(): IterableIterator<Resource> {
    return this.resources.values();
  }

  private get host(): string {
    return this.o.cluster.host;
  }

  /** The spec of a resource as the metadata says it for this host. */
  spec(name: string): ResourceSpec {
    const member = this.o.cluster.ownRecord()?.resources.includes(name) === true;
    return resourceSpec((key) => this.o.cluster.get(key), this.host, name, member);
  }

  private onKeys(keys: readonly string[]): void {
    const names = new Set<string>();
    for (const key of keys) {
      if (key === hostKey(this.host)) for (const name of this.known()) names.add(name);
      const resource = parseKey(key)?.resource;
      if (resource !== undefined) names.add(resource);
    }
    for (const name of names) void this.schedule(name);
  }

  /** Resources of this host's record and resources loaded here. */
  known(): Set<string> {
    return new Set([...(this.o.cluster.ownRecord()?.resources ?? []), ...this.resources.keys()]);
  }

  /** Reconciles every known resource; resolves when all are settled. */
  async reconcileAll(): Promise<void> {
    await Promise.all([...this.known()].map((name) => this.schedule(name)));
  }

  /** Runs (or re-runs) the resource's loop; resolves once it has settled after this call. */
  schedule(name: string): Promise<void> {
    const loop = this.loops.get(name);
    if (loop !== undefined) {
      loop.dirty = true;
      return loop.done;
    }
    const fresh: { dirty: boolean; done: Promise<void> } = { dirty: true, done: Promise.resolve() };
    fresh.done = this.run(name, fresh);
    this.loops.set(name, fresh);
    return fresh.done;
  }

  private async run(name: string, loop: Loop): Promise<void> {
    await Promise.resolve(); // let schedule() register the loop first
    try {
      while (loop.dirty && !this.stopping) {
        loop.dirty = false;
        await this.reconcile(name).catch((err: unknown) => {
          this.o.ctx.log('error', `reconciling ${name} failed: ${(err as Error).message}`, { resource: name });
        });
      }
    } finally {
      this.loops.delete(name);
    }
  }

  private async reconcile(name: string): Promise<void> {
    for (let i = 0; i < reconcileStepsMax; i++) {
      const step = nextStep(this.host, this.spec(name), await this.localState(name));
      if (step.kind === 'none') return;
      if (step.kind === 'report') {
        if (this.spec(name).member) await this.o.cluster.set(actualKey(name, this.host), step.actual);
        return;
      }
      await this.carryOut(name, step);
    }
    this.o.ctx.log('error', `reconciling ${name} did not settle within ${reconcileStepsMax} steps`, { resource: name });
  }

  private async localState(name: string): Promise<LocalState> {
    const resource = this.resources.get(name);
    if (resource !== undefined) {
      const running = resource.stateKind === 'serving' || resource.stateKind === 'recovering';
      const report: Record<string, JsonValue> = {};
      const needsLog = resource.needsLog;
      if (needsLog !== undefined) report['needsLog'] = needsLog;
      const consistent = resource.consistent;
      if (consistent !== undefined) report['consistent'] = consistent;
      const version = await resource.version();
      if (version !== '') report['version'] = version;
      if (resource.deviceBytes !== undefined) report['deviceBytes'] = resource.deviceBytes;
      return {
        kind: resource.stateKind,
        primary: resource.config.primary,
        failure: resource.failure,
        sizeBytes: resource.config.sizeBytes,
        report,
        ...(running && !resource.isPrimaryRole ? { switches: resource.currentSwitches } : {}),
      };
    }
    const onDisk = await exists(join(paths.resourceDir(this.o.dir, name), resourceConfigFile));
    return { kind: onDisk ? 'on-disk' : 'absent', primary: undefined, failure: undefined };
  }

  private context(): ResourceContext {
    return {
      ...this.o.ctx,
      onFailed: (name) => {
        this.o.closeExport(name);
        void this.schedule(name);
      },
      onChange: (name) => void this.schedule(name),
    };
  }

  private switchesOf(name: string): Switches {
    const d = this.spec(name).desired;
    return { fetch: d.fetch, replay: d.replay, sync: d.sync };
  }

  private async carryOut(name: string, step: Exclude<Step, { kind: 'none' | 'report' }>): Promise<void> {
    const dir = paths.resourceDir(this.o.dir, name);
    switch (step.kind) {
      case 'create': {
        const resource = await Resource.create(dir, { name, devicePath: step.device, sizeBytes: step.sizeBytes, primary: step.primary }, this.context());
        this.resources.set(name, resource);
        this.o.ctx.log('info', step.primary === this.host ? 'resource created' : 'resource joined', { resource: name, device: step.device, sizeBytes: step.sizeBytes, primary: step.primary });
        await resource.start(this.switchesOf(name));
        return;
      }
      case 'load': {
        const resource = await Resource.load(dir, this.context());
        this.resources.set(name, resource);
        await resource.start(this.switchesOf(name));
        return;
      }
      case 'start':
        await this.mustGet(name).start(this.switchesOf(name));
        return;
      case 'switches':
        await this.mustGet(name).setSwitches(step.switches);
        return;
      case 'resize':
        await this.mustGet(name).resize(step.sizeBytes);
        return;
      case 'delete':
        await this.remove(name);
        return;
      case 'stop':
        this.o.closeExport(name);
        await this.mustGet(name).stop();
        return;
      case 'set-primary': {
        // A change of this host's role restarts the resource in the new role.
        const resource = this.mustGet(name);
        const roleChanges = (resource.config.primary === this.host) !== (step.primary === this.host);
        const running = resource.stateKind === 'serving' || resource.stateKind === 'recovering';
        if (roleChanges && running) {
          this.o.closeExport(name);
          await resource.stop();
        }
        await resource.setPrimary(step.primary);
        return;
      }
    }
  }

  /** delete-resource on this member: the resource directory goes (the device stays as it is), then its keys and its place in the host record. */
  private async remove(name: string): Promise<void> {
    const resource = this.resources.get(name);
    this.o.closeExport(name);
    if (resource !== undefined) await resource.stop();
    this.resources.delete(name);
    await rm(paths.resourceDir(this.o.dir, name), { recursive: true, force: true });
    const cluster = this.o.cluster;
    for (const key of [desiredKey(name, this.host), dataKey(name, this.host), actualKey(name, this.host)]) await cluster.delete(key);
    const record = cluster.ownRecord();
    if (record !== undefined) await cluster.setOwnRecord({ address: record.address, resources: record.resources.filter((r) => r !== name) });
    this.o.ctx.log('info', 'resource deleted on this host (its device is left as it is)', { resource: name });
  }

  private mustGet(name: string): Resource {
    const resource = this.resources.get(name);
    if (resource === undefined) throw new MarsError('NOT_FOUND', `resource ${name} is not loaded`);
    return resource;
  }

  /** Clean stop of every resource (after their loops have finished). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.loops.values()].map((loop) => loop.done));
    for (const resource of this.resources.values()) await resource.stop();
  }
}
