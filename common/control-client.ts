// gRPC client of a broker's control socket, used by the CLI and the OCI hook.
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ApiError, isApiReason, REASON_KEY } from './api-errors.js';
import type { ContainerMsg, HealthMsg, ListenerMsg, PeerMsg, RegisterRequest, SlimFastClient } from './api-types.js';
import { clientConstructor } from './proto.js';
import type { GetCountersReply__Output } from './proto-types/slimfast/v1/GetCountersReply.js';
import type { ListContainersReply__Output } from './proto-types/slimfast/v1/ListContainersReply.js';
import type { ListListenersReply__Output } from './proto-types/slimfast/v1/ListListenersReply.js';
import type { ListPeersReply__Output } from './proto-types/slimfast/v1/ListPeersReply.js';
import type { UnregisterContainerReply__Output } from './proto-types/slimfast/v1/UnregisterContainerReply.js';
import { stateLayout } from './state-dir.js';

export class BrokerUnreachable extends Error {}

/** One call of a generated client method, given the metadata, options and callback. */
type Invoke<Res> = (md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

export class ControlClient {
  private readonly client: SlimFastClient;
  readonly socketPath: string;

  constructor(
    stateDir: string,
    private readonly timeoutMs = 5000,
  ) {
    this.socketPath = stateLayout(stateDir).controlSocket;
    const Ctor = clientConstructor();
    this.client = new Ctor(`unix:${this.socketPath}`, grpc.credentials.createInsecure());
  }

  close(): void {
    this.client.close();
  }

  private call<Res>(invoke: Invoke<Res>): Promise<Res> {
    if (!fs.existsSync(this.socketPath)) {
      return Promise.reject(
        new BrokerUnreachable(
          `no SlimFast broker at ${this.socketPath}: start one with "slimfast daemon --state-dir ${stateDirOf(this.socketPath)} …" or set SLIMFAST_STATE_DIR`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      invoke(new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (!err) return resolve(res!);
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
    return this.call<HealthMsg>((md, o, cb) => this.client.health({}, md, o, cb));
  }
  register(req: RegisterRequest & { id: string; netns: string }): Promise<ContainerMsg> {
    return this.call<ContainerMsg>((md, o, cb) => this.client.registerContainer(req, md, o, cb));
  }
  async unregister(id: string): Promise<boolean> {
    return (await this.call<UnregisterContainerReply__Output>((md, o, cb) => this.client.unregisterContainer({ id }, md, o, cb))).removed;
  }
  async containers(): Promise<ContainerMsg[]> {
    return (await this.call<ListContainersReply__Output>((md, o, cb) => this.client.listContainers({}, md, o, cb))).containers;
  }
  async listeners(): Promise<ListenerMsg[]> {
    return (await this.call<ListListenersReply__Output>((md, o, cb) => this.client.listListeners({}, md, o, cb))).listeners;
  }
  async counters(): Promise<Record<string, number>> {
    return (await this.call<GetCountersReply__Output>((md, o, cb) => this.client.getCounters({}, md, o, cb))).counters;
  }
  async peers(): Promise<PeerMsg[]> {
    return (await this.call<ListPeersReply__Output>((md, o, cb) => this.client.listPeers({}, md, o, cb))).peers;
  }
}

function stateDirOf(socketPath: string): string {
  return socketPath.replace(/\/slimfast\.sock$/, '');
}
