// gRPC client of a broker's control socket, used by the CLI and the OCI hook.
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ApiError, isApiReason, REASON_KEY } from './api-errors.js';
import type { ContainerMsg, HealthMsg, ListenerMsg, PeerMsg } from './api-types.js';
import { clientConstructor } from './proto.js';
import { stateLayout } from './state-dir.js';

export class BrokerUnreachable extends Error {}

type Unary = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

export class ControlClient {
  private readonly client: grpc.Client;
  readonly socketPath: string;

  constructor(stateDir: string, private readonly timeoutMs = 5000) {
    this.socketPath = stateLayout(stateDir).controlSocket;
    const Ctor = clientConstructor();
    this.client = new Ctor(`unix:${this.socketPath}`, grpc.credentials.createInsecure());
  }

  close(): void {
    this.client.close();
  }

  private call<T>(method: string, req: object): Promise<T> {
    if (!fs.existsSync(this.socketPath)) {
      return Promise.reject(new BrokerUnreachable(`no SlimFast broker at ${this.socketPath}: start one with "slimfast daemon --state-dir ${stateDirOf(this.socketPath)} …" or set SLIMFAST_STATE_DIR`));
    }
    const fn = (this.client as unknown as Record<string, Unary>)[method].bind(this.client);
    return new Promise((resolve, reject) => {
      fn(req, new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (!err) return resolve(res as T);
        if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
          reject(new BrokerUnreachable(`SlimFast broker at ${this.socketPath} is not answering (${err.details}); is "slimfast daemon" running?`));
        } else {
          const reason = err.metadata?.get(REASON_KEY)[0];
          reject(isApiReason(reason) ? new ApiError(reason, err.details || err.message) : new Error(err.details || err.message));
        }
      });
    });
  }

  health(): Promise<HealthMsg> {
    return this.call('health', {});
  }
  register(req: { id: string; netns: string; ip?: string; pid?: number; share?: boolean }): Promise<ContainerMsg> {
    return this.call('registerContainer', req);
  }
  async unregister(id: string): Promise<boolean> {
    return (await this.call<{ removed: boolean }>('unregisterContainer', { id })).removed;
  }
  async containers(): Promise<ContainerMsg[]> {
    return (await this.call<{ containers: ContainerMsg[] }>('listContainers', {})).containers;
  }
  async listeners(): Promise<ListenerMsg[]> {
    return (await this.call<{ listeners: ListenerMsg[] }>('listListeners', {})).listeners;
  }
  async counters(): Promise<Record<string, number>> {
    return (await this.call<{ counters: Record<string, number> }>('getCounters', {})).counters;
  }
  async peers(): Promise<PeerMsg[]> {
    return (await this.call<{ peers: PeerMsg[] }>('listPeers', {})).peers;
  }
}

function stateDirOf(socketPath: string): string {
  return socketPath.replace(/\/slimfast\.sock$/, '');
}
