/**
 * marsd's wiring: the resources of this host, the NBD server that exports the ones it is
 * primary of, and the control socket that marsadm talks to. Requests from the control
 * socket are validated here (the edge) and turned into typed errors.
 */
import { readdir, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { Clock } from '../core/clock.js';
import { MarsError } from '../core/errors.js';
import { NbdServer } from '../nbd/server.js';
import type { BlockBackend, ExportRegistry } from '../nbd/backend.js';
import { openDevice } from '../storage/fs-storage.js';
import { ControlServer } from '../control/server.js';
import type { LoggerLimits } from '../logger/limits.js';
import { Resource, type ResourceContext, type ResourceStatus } from './resource.js';
import { checkResourceName, paths, type HostConfig } from './state-dir.js';

export const deviceAlignmentBytes = 4096;

export interface DaemonOptions {
  dir: string;
  hostConfig: HostConfig;
  nbd: { host: string; port: number };
  clock: Clock;
  limits: Partial<LoggerLimits>;
  log: ResourceContext['log'];
}

export interface HostStatus {
  host: string;
  clusterId: string;
  listen: string;
  nbd: string;
  resources: ResourceStatus[];
}

export class Daemon implements ExportRegistry {
  private readonly resources = new Map<string, Resource>();
  private readonly nbdServer: NbdServer;
  private readonly control: ControlServer;
  private nbdAddress = '';

  constructor(private readonly options: DaemonOptions) {
    this.nbdServer = new NbdServer(this, { logger: (msg: string) => options.log('info', msg) });
    this.control = new ControlServer(paths.controlSocket(options.dir), (cmd, args) => this.handle(cmd, args));
  }

  private get ctx(): ResourceContext {
    return {
      host: this.options.hostConfig.host,
      clock: this.options.clock,
      limits: this.options.limits,
      log: this.options.log,
      onFailed: (name) => void this.nbdServer.closeExport(name),
    };
  }

  // ---- ExportRegistry ----
  get(name: string): BlockBackend | undefined {
    return this.resources.get(name)?.backend();
  }

  names(): string[] {
    return [...this.resources.values()].filter((r) => r.backend() !== undefined).map((r) => r.name);
  }

  async start(): Promise<void> {
    for (const entry of await readdir(this.options.dir)) {
      if (!entry.startsWith('resource-')) continue;
      let resource: Resource;
      try {
        resource = await Resource.load(`${this.options.dir}/${entry}`, this.ctx);
      } catch (err) {
        this.options.log('error', `cannot load ${entry}: ${(err as Error).message}`);
        continue;
      }
      this.resources.set(resource.name, resource);
      await resource.start();
    }
    await this.nbdServer.listen(this.options.nbd.host, this.options.nbd.port);
    const addr = this.nbdServer.address();
    this.nbdAddress = `${addr.host}:${addr.port}`;
    await this.control.listen();
    this.options.log('info', 'marsd is ready', { host: this.options.hostConfig.host, nbd: this.nbdAddress, resources: [...this.resources.keys()] });
  }

  async stop(): Promise<void> {
    await this.control.close();
    await this.nbdServer.close();
    for (const r of this.resources.values()) await r.stop();
  }

  private async handle(cmd: string, args: Record<string, unknown>): Promise<unknown> {
    switch (cmd) {
      case 'create-resource':
        return this.createResource(args);
      case 'log-rotate':
        return { logNumber: await this.resource(args).logRotate() };
      case 'log-delete':
        return { deleted: await this.resource(args).logDelete() };
      case 'cron':
        return this.cron();
      case 'view':
        return this.view(args);
      default:
        throw new MarsError('BAD_REQUEST', `unknown control command '${cmd}'`);
    }
  }

  private resource(args: Record<string, unknown>): Resource {
    const name = stringArg(args, 'name');
    const r = this.resources.get(name);
    if (r === undefined) throw new MarsError('NOT_FOUND', `resource ${name} does not exist on this host`);
    return r;
  }

  private async createResource(args: Record<string, unknown>): Promise<unknown> {
    const name = checkResourceName(stringArg(args, 'name'));
    const devicePath = stringArg(args, 'device');
    if (!isAbsolute(devicePath)) throw new MarsError('EINVAL', `device path must be absolute: ${devicePath}`);
    if (this.resources.has(name)) throw new MarsError('EXISTS', `resource ${name} already exists`);
    for (const r of this.resources.values()) {
      if (r.config.devicePath === devicePath) throw new MarsError('EXISTS', `device ${devicePath} already belongs to resource ${r.name}`);
    }
    const sizeBytes = await this.checkDevice(devicePath, args['sizeBytes']);
    const dir = paths.resourceDir(this.options.dir, name);
    if (await exists(dir)) throw new MarsError('EXISTS', `${dir} already exists`);
    const resource = await Resource.create(dir, { name, devicePath, sizeBytes, primary: this.options.hostConfig.host }, this.ctx);
    this.resources.set(name, resource);
    await resource.start();
    const status = await resource.status();
    if (status.state !== 'serving') throw new MarsError('RESOURCE_FAILED', `resource ${name} was created but is not served: ${status.failure ?? status.state}`);
    this.options.log('info', 'resource created', { resource: name, device: devicePath, sizeBytes });
    return { name, sizeBytes, export: `nbd://${this.nbdAddress}/${name}` };
  }

  private async checkDevice(devicePath: string, sizeArg: unknown): Promise<number> {
    const device = await openDevice(devicePath);
    let deviceBytes: number;
    try {
      deviceBytes = await device.size();
    } finally {
      await device.close();
    }
    let sizeBytes = deviceBytes;
    if (sizeArg !== undefined && sizeArg !== null) {
      if (typeof sizeArg !== 'number' || !Number.isSafeInteger(sizeArg) || sizeArg <= 0) throw new MarsError('EINVAL', 'size must be a positive number of bytes');
      if (sizeArg > deviceBytes) throw new MarsError('BAD_DEVICE', `size ${sizeArg} is larger than device ${devicePath} (${deviceBytes} bytes)`);
      sizeBytes = sizeArg;
    }
    if (sizeBytes === 0) throw new MarsError('BAD_DEVICE', `device ${devicePath} is empty`);
    if (sizeBytes % deviceAlignmentBytes !== 0) throw new MarsError('BAD_DEVICE', `size ${sizeBytes} of ${devicePath} is not a multiple of ${deviceAlignmentBytes}`);
    return sizeBytes;
  }

  private async cron(): Promise<unknown> {
    const results: Record<string, unknown> = {};
    for (const r of this.resources.values()) {
      if (r.backend() === undefined) continue;
      const status = await r.status();
      const current = status.logFiles.at(-1);
      if (current !== undefined && current.sizeBytes > 0) await r.logRotate();
      results[r.name] = { deleted: await r.logDelete() };
    }
    return results;
  }

  private async view(args: Record<string, unknown>): Promise<HostStatus> {
    const name = args['name'];
    const selected = typeof name === 'string' && name !== 'all' ? [this.resource(args)] : [...this.resources.values()];
    const resources: ResourceStatus[] = [];
    for (const r of selected) resources.push(await r.status());
    const h = this.options.hostConfig;
    return { host: h.host, clusterId: h.clusterId, listen: h.listen, nbd: this.nbdAddress, resources };
  }
}

function stringArg(args: Record<string, unknown>, key: string): string {
  const v = args[key];
  if (typeof v !== 'string' || v.length === 0) throw new MarsError('BAD_REQUEST', `missing argument ${key}`);
  return v;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
