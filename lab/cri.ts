// A small CRI client (runtime.v1 RuntimeService, proto/cri.proto) over containerd's unix socket: the
// calls the kubelet makes to run a pod (RunPodSandbox with a runtime handler, CreateContainer,
// StartContainer, ExecSync, Stop/Remove), for tests that drive containerd's CRI plugin as
// Kubernetes does. Every call has a deadline; a failed call rejects with the method's name and
// containerd's message.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { repoRoot } from '../common/paths.js';

export const CRI_PROTO = path.join(repoRoot(), 'proto', 'cri.proto');

export interface PodConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  logDirectory?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { cgroupParent?: string };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  envs?: { key: string; value: string }[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Relative to the pod's logDirectory. */
  logPath?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface PodStatus {
  id: string;
  state: string;
  network?: { ip: string };
  runtimeHandler: string;
  annotations: Record<string, string>;
}

export interface CriContainer {
  id: string;
  podSandboxId: string;
  metadata: { name: string };
  state: string;
}

type Unary = (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: any) => void) => void;

let loaded: grpc.ServiceClientConstructor | undefined;

function serviceCtor(): grpc.ServiceClientConstructor {
  if (!loaded) {
    const def = protoLoader.loadSync(CRI_PROTO, { keepCase: false, longs: Number, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    loaded = pkg.runtime.v1.RuntimeService as grpc.ServiceClientConstructor;
  }
  return loaded;
}

export class CriClient {
  private readonly client: grpc.Client;

  /** socket: containerd's gRPC socket (its CRI plugin serves on the same one). */
  constructor(
    readonly socket: string,
    private readonly timeoutMs = 60_000,
  ) {
    const Ctor = serviceCtor();
    this.client = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  private call<T>(method: string, req: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const fn = (this.client as unknown as Record<string, Unary>)[method].bind(this.client);
    return new Promise((resolve, reject) => {
      fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new Error(`CRI ${method} on ${this.socket}: ${err.details || err.message}`));
        else resolve(res as T);
      });
    });
  }

  async version(): Promise<{ runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }> {
    return this.call('Version', { version: 'v1' }, 5_000);
  }

  /** RunPodSandbox; returns the sandbox id. */
  async runPod(config: PodConfig, runtimeHandler = ''): Promise<string> {
    return (await this.call<{ podSandboxId: string }>('RunPodSandbox', { config, runtimeHandler })).podSandboxId;
  }

  async podStatus(podId: string): Promise<PodStatus> {
    return (await this.call<{ status: PodStatus }>('PodSandboxStatus', { podSandboxId: podId })).status;
  }

  async listPods(): Promise<{ id: string; state: string; runtimeHandler: string }[]> {
    return (await this.call<{ items: { id: string; state: string; runtimeHandler: string }[] }>('ListPodSandbox', {})).items;
  }

  async stopPod(podId: string): Promise<void> {
    await this.call('StopPodSandbox', { podSandboxId: podId });
  }

  async removePod(podId: string): Promise<void> {
    await this.call('RemovePodSandbox', { podSandboxId: podId });
  }

  /** CreateContainer (the pod's config passed again, as the kubelet does); returns the container id. */
  async createContainer(podId: string, config: ContainerConfig, podConfig: PodConfig): Promise<string> {
    return (await this.call<{ containerId: string }>('CreateContainer', { podSandboxId: podId, config, sandboxConfig: podConfig })).containerId;
  }

  async startContainer(id: string): Promise<void> {
    await this.call('StartContainer', { containerId: id });
  }

  /** CreateContainer + StartContainer. */
  async runContainer(podId: string, config: ContainerConfig, podConfig: PodConfig): Promise<string> {
    const id = await this.createContainer(podId, config, podConfig);
    await this.startContainer(id);
    return id;
  }

  async stopContainer(id: string, timeoutS = 0): Promise<void> {
    await this.call('StopContainer', { containerId: id, timeout: timeoutS });
  }

  async removeContainer(id: string): Promise<void> {
    await this.call('RemoveContainer', { containerId: id });
  }

  async listContainers(podId?: string): Promise<CriContainer[]> {
    return (await this.call<{ containers: CriContainer[] }>('ListContainers', { filter: podId ? { podSandboxId: podId } : {} })).containers;
  }

  /** ExecSync: cmd in the container, bounded by timeoutS (containerd kills it then). */
  async execSync(id: string, cmd: string[], timeoutS = 30): Promise<ExecResult> {
    const r = await this.call<{ stdout: Buffer; stderr: Buffer; exitCode: number }>(
      'ExecSync',
      { containerId: id, cmd, timeout: timeoutS },
      (timeoutS + 15) * 1000,
    );
    return { stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), exitCode: r.exitCode };
  }

  close(): void {
    this.client.close();
  }
}
