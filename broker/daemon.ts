// The per-host broker: native engine (hot path) + registry + listener sync + gRPC control API.
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { ContainerMsg, RegisterRequest, SlimFastHandlers } from '../common/api-types.js';
import { formatCidr, parseCidr, parseIp } from '../common/cidr.js';
import { type EngineLimits, loadAddon, type EngineEvent, type NativeEngine } from './native-engine.js';
import { readNetnsIp } from './netns.js';
import { EtcdMembership, type EtcdStatus, type SharedClusterKey } from './etcd-membership.js';
import { loadPeersFile, type HostEntry, type Membership } from './peers.js';
import { loadPolicyFile, PolicyKeeper, watchPolicyFile } from './policy-source.js';
import { serviceDefinition } from '../common/proto.js';
import { ApiError, REASON_KEY } from '../common/api-errors.js';
import { PidfdExitWatcher } from './process-exit.js';
import { checkRequest } from './registration.js';
import { containerEnv, type ContainerRecord, Registry } from './registry.js';
import { DEFAULT_KEY_FILE, keyFingerprint, loadClusterKey, makeKeyHint } from '../common/cluster-key.js';
import { stateLayout, type StateLayout } from '../common/state-dir.js';
import { claimStateDir, releaseStateDir, writeFileAtomic } from './state-dir.js';
import { startSeccompKeeper } from './seccomp-keeper.js';
import { ListenerSync } from './sync.js';
import { Logger } from './log.js';
import { buildRegistry, type MetricsAddress, parseMetricsAddress, serveMetrics } from './metrics.js';
import type http from 'node:http';

export const VERSION = '0.1.0';

/** `--container-limits conns=N,pools=N,listeners=N,pending=N` (any of them). */
export interface ContainerLimits {
  conns?: number;
  pools?: number;
  listeners?: number;
  pending?: number;
}

/** Parses the --container-limits value; throws naming what is wrong. */
export function parseContainerLimits(text: string): ContainerLimits {
  const out: ContainerLimits = {};
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(conns|pools|listeners|pending)=(\d+)$/.exec(part);
    const n = m ? Number(m[2]) : NaN;
    if (!m || !Number.isInteger(n) || n < 1 || n > 1 << 24) {
      throw new Error(`--container-limits: "${part}" is not NAME=N with NAME one of conns, pools, listeners, pending and N 1..${1 << 24}`);
    }
    out[m[1] as keyof ContainerLimits] = n;
  }
  if (!Object.keys(out).length) throw new Error('--container-limits needs at least one NAME=N, e.g. conns=1024');
  return out;
}
export const DEFAULT_SUBNET = '10.88.0.0/16';
/** Below this RLIMIT_NOFILE the per-container limits are scaled down (native/addon/limits.cc). */
export const LOW_NOFILE = 65536;

export interface DaemonOptions {
  hostIp: string;
  stateDir: string;
  port: number;
  peersFile?: string;
  subnet?: string;
  logLevel?: string;
  /** Pre-established connections per process and peer at first (0 = none); see EngineOptions.poolDepth. */
  poolDepth?: number;
  /** false: no kernel steering (EngineOptions.steering). */
  steering?: boolean;
  /** File holding the cluster key (common/cluster-key.ts): headers are then signed and checked.
   *  Without it, with etcd, the key every broker shares through etcd (<prefix>/cluster-key); with
   *  a peers file naming other hosts, the daemon refuses to start unless insecureHostKeys. */
  clusterKeyFile?: string;
  /** --insecure-host-keys: no cluster key, also with peers; per-start host keys announced in the
   *  clear (anything at a member's address can pose as that member). */
  insecureHostKeys?: boolean;
  /** Connect-time policy file (broker/policy.ts), watched; without it, with etcd, <prefix>/policy. */
  policyFile?: string;
  /** Serve Prometheus metrics at http://HOST:PORT/metrics (broker/metrics.ts). */
  metrics?: string;
  /** Per-container limits (EngineOptions.containerConnsMax …); unset ones are sized from RLIMIT_NOFILE. */
  containerLimits?: ContainerLimits;
  /** RLIMIT_NOFILE to run with (at most the hard limit); unset: the highest the system allows. */
  fdLimit?: number;
  /** Membership from etcd instead of a peers file. */
  etcd?: {
    endpoints: string[];
    prefix?: string;
    clusterCidr?: string;
    subnetLen?: number;
    leaseTtl?: number;
  };
}

/** What keeps a static cluster's brokers from starting without a key, and how to give them one. */
export function keyRequiredMessage(peersFile: string): string {
  return (
    `--peers ${peersFile} lists other hosts and no --cluster-key is given. Without a key the hosts share, anything that ` +
    "reaches a peer's reserved port from this host's address (a container whose traffic the host masquerades, say) can announce " +
    'a host key of its own and pose as this host. Make one key and give every broker the same file:\n' +
    `  ${makeKeyHint(DEFAULT_KEY_FILE)}   # once; then copy the file to every host\n` +
    `  slimfast daemon … --peers ${peersFile} --cluster-key ${DEFAULT_KEY_FILE}\n` +
    'With --etcd the brokers share a key through etcd instead. --insecure-host-keys runs without one (per-start host keys ' +
    'announced in the clear, open to that attack)'
  );
}

/** Works out this host's subnet, the overlay and the other hosts from the options. */
export function resolveMembership(opts: DaemonOptions): { self: HostEntry; others: HostEntry[]; overlay: string } {
  parseIp(opts.hostIp);
  let m: Membership;
  if (opts.peersFile) {
    m = loadPeersFile(opts.peersFile, opts.port);
  } else {
    const subnet = opts.subnet ?? DEFAULT_SUBNET;
    const cidr = parseCidr(subnet);
    m = { hosts: [{ ip: opts.hostIp, subnet: formatCidr(cidr), port: opts.port, cidr }], overlay: formatCidr(cidr) };
  }
  const self = m.hosts.find((h) => h.ip === opts.hostIp);
  if (!self) {
    throw new Error(`--host-ip ${opts.hostIp} is not one of the hosts in ${opts.peersFile}; add it or fix --host-ip`);
  }
  if (opts.subnet && formatCidr(parseCidr(opts.subnet)) !== self.subnet) {
    throw new Error(`--subnet ${opts.subnet} disagrees with the peers file, which gives ${self.ip} the subnet ${self.subnet}`);
  }
  if (self.port !== opts.port) self.port = opts.port;
  return { self, others: m.hosts.filter((h) => h !== self), overlay: m.overlay };
}

/** This process's open descriptors (without the one listing them), resident memory and V8 heap. */
export function processResources(): { openFds: number; rssBytes: number; heapTotalBytes: number; heapUsedBytes: number } {
  let openFds = 0;
  try {
    openFds = fs.readdirSync('/proc/self/fd').length - 1;
  } catch {
    // no /proc: unknown
  }
  const m = process.memoryUsage();
  return { openFds, rssBytes: m.rss, heapTotalBytes: m.heapTotal, heapUsedBytes: m.heapUsed };
}

/** An ApiError keeps its status code and sends its reason as a trailer; anything else is UNKNOWN. */
function toServiceError(err: Error): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (err instanceof ApiError) metadata.set(REASON_KEY, err.reason);
  return { code: err instanceof ApiError ? err.grpcCode : grpc.status.UNKNOWN, details: err.message, metadata } as grpc.ServiceError;
}

function toMsg(rec: ContainerRecord): ContainerMsg {
  return { ...rec, env: containerEnv(rec) };
}

/** The control API's container calls, in process. */
export interface LocalContainerApi {
  stateDir: string;
  register(req: RegisterRequest): Promise<ContainerMsg>;
  unregister(id: string): Promise<boolean>;
  containers(): Promise<ContainerMsg[]>;
  close(): void;
}

export class Daemon {
  private engine!: NativeEngine;
  private registry!: Registry;
  private sync!: ListenerSync;
  private server?: grpc.Server;
  private metricsServer?: http.Server;
  private layout: StateLayout;
  private readonly started = Date.now();
  private membership!: ReturnType<typeof resolveMembership>;
  private etcd?: EtcdMembership;
  private stopping?: Promise<void>;
  private readonly policy: PolicyKeeper;
  private policyWatch?: { reload: () => void; stop: () => void };
  private readonly onHup = () => this.reloadPolicy();
  /** Set once engine, sync and registry exist; etcd events before that only update the view. */
  private serving = false;
  /** Where the cluster key came from ("file PATH", "etcd KEY"), and its fingerprint; unset: none. */
  private keyInfo?: { source: string; fingerprint: string };

  constructor(
    private readonly opts: DaemonOptions,
    private readonly log = new Logger(opts.logLevel ?? 'info'),
  ) {
    this.layout = stateLayout(opts.stateDir);
    this.policy = new PolicyKeeper(
      (p) => this.engine.setPolicy(p?.engine ?? null),
      (level, msg) => this.log[level](msg),
    );
  }

  async start(): Promise<void> {
    // Before anything is claimed: a bad key file, or none where one is needed, must cost nothing.
    if (this.opts.clusterKeyFile && this.opts.insecureHostKeys) throw new Error('--cluster-key and --insecure-host-keys exclude each other');
    const staticView = this.opts.etcd ? undefined : resolveMembership(this.opts);
    let clusterKey: Buffer | undefined;
    if (this.opts.clusterKeyFile) {
      const k = loadClusterKey(this.opts.clusterKeyFile);
      if (k.warning) this.log.warn(k.warning);
      clusterKey = k.key;
      this.keyInfo = { source: `file ${this.opts.clusterKeyFile}`, fingerprint: keyFingerprint(k.key) };
    } else if (staticView && staticView.others.length > 0 && !this.opts.insecureHostKeys) {
      throw new Error(keyRequiredMessage(this.opts.peersFile!));
    }
    if (this.opts.insecureHostKeys && (this.opts.etcd || staticView!.others.length > 0)) {
      this.log.warn(
        '--insecure-host-keys: no cluster key; headers are signed with per-start host keys announced to peers in the clear, so ' +
          "anything that reaches a peer's reserved port from this host's address (a container behind its NAT, say) can pose as this host. " +
          `Give every broker --cluster-key FILE (${makeKeyHint(DEFAULT_KEY_FILE)}, the same file on every host)${this.opts.etcd ? ', or leave the flag out to share a key through etcd' : ''}`,
      );
    }
    const policyFile = this.opts.policyFile ? { file: this.opts.policyFile, ...loadPolicyFile(this.opts.policyFile) } : undefined;
    const metricsAddr = this.opts.metrics === undefined ? undefined : parseMetricsAddress(this.opts.metrics);
    // Listening before the state dir is claimed: a port in use costs nothing either.
    if (metricsAddr) this.metricsServer = await this.serveMetrics(metricsAddr);
    try {
      await this.startServing(clusterKey, policyFile, staticView);
    } catch (err) {
      this.metricsServer?.close(); // else it would keep a failed daemon's process alive
      throw err;
    }
    if (metricsAddr) this.log.info(`metrics at http://${this.opts.metrics}/metrics`);
  }

  private async startServing(
    fileKey: Buffer | undefined,
    policyFile: ({ file: string } & ReturnType<typeof loadPolicyFile>) | undefined,
    staticView: ReturnType<typeof resolveMembership> | undefined,
  ): Promise<void> {
    const note = await claimStateDir(this.layout);
    if (note) this.log.info(note);
    let clusterKey = fileKey;
    try {
      const joined = await this.joinCluster(staticView);
      this.membership = joined.view;
      if (joined.sharedKey) {
        clusterKey = joined.sharedKey.key;
        this.keyInfo = { source: joined.sharedKey.source, fingerprint: keyFingerprint(clusterKey) };
      }
    } catch (err) {
      releaseStateDir(this.layout);
      throw err;
    }
    const { self, overlay } = this.membership;
    if (this.keyInfo)
      this.log.info(`cluster key: ${this.keyInfo.source}, fingerprint ${this.keyInfo.fingerprint}; headers are signed and checked, members only`);

    const keeper = startSeccompKeeper(this.layout);
    if (keeper.socket) this.log.info(keeper.note);
    else this.log.warn(keeper.note);
    const addon = loadAddon();
    // Every descriptor the system allows this process: the engine sizes its per-container limits
    // from what it gets, keeping a reserve for this control plane.
    const fds = addon.raiseFdLimit(this.opts.fdLimit);
    this.engine = new addon.Engine();
    // Before the engine serves anybody: no connect may slip past the policy.
    if (policyFile) this.policy.set(policyFile.policy, `file ${policyFile.file}`, policyFile.text);
    await this.watchPolicy();
    this.sync = new ListenerSync(self.ip, this.engine, (level, msg) => this.log[level](msg));
    // The view as it is now (etcd may have reported changes while the policy was read), given to
    // the engine before its reserved port opens: a peer's SYNC header that is already waiting there
    // must find the peer a member.
    const peers = this.membership.others;
    this.engine.setPeers(peers.map((h) => ({ ip: h.ip, subnet: h.subnet, port: h.port })));
    this.engine.start(
      {
        hostIp: self.ip,
        port: self.port,
        overlayCidr: overlay,
        localSubnet: self.subnet,
        poolDepth: this.opts.poolDepth,
        steering: this.opts.steering,
        clusterKey,
        debug: this.opts.logLevel === 'debug',
        seccompSocket: this.layout.seccompSocket,
        seccompKeeper: keeper.socket,
        containerConnsMax: this.opts.containerLimits?.conns,
        containerPoolsMax: this.opts.containerLimits?.pools,
        containerListenersMax: this.opts.containerLimits?.listeners,
        containerPendingMax: this.opts.containerLimits?.pending,
      },
      (ev) => this.onEngineEvent(ev),
    );
    this.logLimits(fds, this.engine.limits());
    this.registry = new Registry(this.layout, this.engine, self.cidr, {
      watcher: new PidfdExitWatcher(),
      exited: (id, shared) =>
        this.log.info(`container ${id} exited: ${shared ? 'its share of a registration was removed' : 'unregistered'}`, { container: id }),
    });
    this.registry.restore((msg, fields) => this.log.info(msg, fields));
    this.sync.start(peers);
    this.serving = true;

    this.server = new grpc.Server();
    this.server.addService(serviceDefinition(), this.handlers());
    await new Promise<void>((resolve, reject) => {
      this.server!.bindAsync(`unix:${this.layout.controlSocket}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(new Error(`cannot serve the control API on ${this.layout.controlSocket}: ${err.message}`)) : resolve(),
      );
    });
    fs.chmodSync(this.layout.controlSocket, 0o660);
    if (this.etcd && clusterKey && !fileKey) void this.etcd.followSharedKey(clusterKey);
    this.log.info(
      `serving: host ${self.ip}:${self.port}, subnet ${self.subnet}, overlay ${overlay}, ${peers.length} peer(s), state dir ${this.layout.dir}`,
    );
  }

  private logLimits(fds: { softBefore: number; hard: number }, l: EngineLimits): void {
    const what = `${l.conns} broker connections, ${l.pools} pools, ${l.listeners} listener channels, ${l.pending} handoffs in progress`;
    this.log.info(
      `descriptors: RLIMIT_NOFILE ${l.nofile} (was ${fds.softBefore}, hard limit ${fds.hard}); ${l.reserve} kept for the control plane; per container at most ${what}`,
    );
    if (l.nofile < LOW_NOFILE) {
      this.log.warn(
        `RLIMIT_NOFILE is only ${l.nofile}: the per-container limits are scaled down to fit it; raise the broker's limit (LimitNOFILE=1048576 in its systemd unit, ulimit -Hn as root)`,
      );
    }
  }

  /** The metrics endpoint: every value is read when scraped, nothing before the engine runs. */
  private serveMetrics(addr: MetricsAddress): Promise<http.Server> {
    return serveMetrics(
      addr,
      buildRegistry({
        counters: () => (this.serving ? this.engine.counters() : null),
        latency: () => (this.serving ? this.engine.handoffLatency() : null),
        limits: () => (this.serving ? this.engine.limits() : null),
        peers: () => {
          const states = this.serving ? this.sync.peerStates() : [];
          return { total: this.membership?.others.length ?? 0, synced: states.filter((p) => p.synced).length };
        },
        etcd: this.opts.etcd ? () => (this.etcd ? { up: this.etcd.status().state === 'connected' } : null) : undefined,
      }),
    );
  }

  /** Keeps the policy current: the file's, else etcd's <prefix>/policy (cached in the state dir,
   *  for a start while etcd does not answer). */
  private async watchPolicy(): Promise<void> {
    const file = this.opts.policyFile;
    if (file) {
      this.policyWatch = watchPolicyFile(file, this.policy, (level, msg) => this.log[level](msg));
      if (this.etcd) {
        const key = this.etcd.keyName('policy');
        void this.etcd.watchKey('policy', (v) => {
          if (v !== null) this.log.warn(`policy: the etcd key ${key} is ignored: --policy ${file} is in force`);
        });
      }
    } else if (this.etcd) {
      const key = this.etcd.keyName('policy');
      const cache = this.layout.policyFile;
      const read = await this.etcd.watchKey('policy', (v) => {
        if (!this.policy.offer(v, `etcd ${key}`)) return;
        try {
          if (v === null) fs.rmSync(cache, { force: true });
          else writeFileAtomic(cache, v);
        } catch (err) {
          this.log.warn(`policy: cannot cache it in ${cache}: ${(err as Error).message}`);
        }
      });
      if (!read && fs.existsSync(cache)) {
        this.log.warn(`policy: etcd does not answer; enforcing the copy of ${key} cached in ${cache} until it does`);
        this.policy.offer(fs.readFileSync(cache, 'utf8'), `etcd ${key} (cached)`);
      }
    } else {
      return;
    }
    process.on('SIGHUP', this.onHup);
  }

  private reloadPolicy(): void {
    if (!this.policyWatch) {
      this.log.info('policy: SIGHUP: the policy comes from etcd and is watched there; nothing to reload');
      return;
    }
    this.log.info(`policy: SIGHUP: reloading ${this.opts.policyFile}`);
    this.policyWatch.reload();
  }

  /** Static membership (peers file or a lone host), or etcd's (with the key shared there, unless
   *  the options give one or opt out). */
  private async joinCluster(
    staticView: ReturnType<typeof resolveMembership> | undefined,
  ): Promise<{ view: ReturnType<typeof resolveMembership>; sharedKey?: SharedClusterKey }> {
    const e = this.opts.etcd;
    if (!e) return { view: staticView ?? resolveMembership(this.opts) };
    if (this.opts.peersFile) throw new Error('--etcd and --peers exclude each other: membership comes from one of them');
    parseIp(this.opts.hostIp);
    this.etcd = new EtcdMembership({
      endpoints: e.endpoints,
      prefix: e.prefix,
      hostIp: this.opts.hostIp,
      port: this.opts.port,
      subnet: this.opts.subnet,
      clusterCidr: e.clusterCidr,
      subnetLen: e.subnetLen,
      ttlSeconds: e.leaseTtl,
      cacheFile: this.layout.membershipFile,
      sharedKeyCache: this.opts.clusterKeyFile || this.opts.insecureHostKeys ? undefined : this.layout.clusterKeyFile,
      log: (level, msg) => this.log[level](msg),
    });
    const { clusterKey: sharedKey, ...view } = await this.etcd.start((others) => this.peersChanged(others));
    return { view, sharedKey };
  }

  /** The health reply's headerAuth: "cluster key"; "insecure host keys" where peers could be
   *  impersonated (--insecure-host-keys with peers or etcd); "host keys" on a lone host. */
  private headerAuth(): string {
    if (this.keyInfo) return 'cluster key';
    return this.etcd || (this.opts.peersFile && this.membership.others.length > 0) ? 'insecure host keys' : 'host keys';
  }

  /** etcd told of a host joining, leaving or moving. */
  private peersChanged(others: HostEntry[]): void {
    if (!this.membership || this.stopping) return;
    const before = new Set(this.membership.others.map((h) => `${h.ip} ${h.subnet}`));
    const after = new Set(others.map((h) => `${h.ip} ${h.subnet}`));
    const joined = [...after].filter((x) => !before.has(x));
    const left = [...before].filter((x) => !after.has(x));
    this.membership.others = others;
    if (!this.serving) return; // start() takes the view as it then is
    this.engine.setPeers(others.map((h) => ({ ip: h.ip, subnet: h.subnet, port: h.port })));
    this.sync.setPeers(others);
    this.log.info(
      `peers now ${others.length}${joined.length ? `; joined: ${joined.join(', ')}` : ''}${left.length ? `; left: ${left.join(', ')}` : ''}`,
    );
  }

  etcdStatus(): EtcdStatus | undefined {
    return this.etcd?.status();
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      process.off('SIGHUP', this.onHup);
      this.policyWatch?.stop();
      await this.etcd?.close();
      this.sync?.stop();
      if (this.server) await new Promise<void>((resolve) => this.server!.tryShutdown(() => resolve()));
      if (this.metricsServer) {
        this.metricsServer.closeAllConnections();
        await new Promise<void>((resolve) => this.metricsServer!.close(() => resolve()));
      }
      this.engine?.stop();
      releaseStateDir(this.layout);
      this.log.info('stopped');
    })();
    return this.stopping;
  }

  private onEngineEvent(ev: EngineEvent): void {
    switch (ev.type) {
      case 'listener':
        this.log.debug(`listener ${ev.op} ${ev.ip}:${ev.port} (${ev.containerId})`, { container: ev.containerId });
        this.sync.localChange(ev.op, `${ev.ip}:${ev.port}`);
        break;
      case 'sync':
        this.sync.acceptSubscriber(ev.fd, ev.peerIp);
        break;
      case 'log':
        this.log[ev.level](ev.msg, ev.containerId ? { container: ev.containerId } : undefined);
        break;
    }
  }

  private async registerContainer(request: RegisterRequest): Promise<ContainerMsg> {
    const req = checkRequest(request);
    if (req.share) {
      const shared = this.registry.share({ id: req.id, netns: req.netns, pid: req.pid });
      if (shared) {
        const owner = this.registry.get(shared.owner)!;
        this.log.info(`container ${shared.id} shares the registration of ${owner.id} (${owner.ip})`, { container: shared.id });
        return toMsg({ ...owner, id: shared.id, socket: shared.socket, pid: shared.pid, netns: shared.netns });
      }
    }
    const ip = req.ip || (await readNetnsIp(req.netns));
    const rec = this.registry.add({ id: req.id, ip, netns: req.netns, pid: req.pid });
    this.log.info(`registered container ${rec.id} (${rec.ip})`, { container: rec.id });
    return toMsg(rec);
  }

  private unregisterContainer(id: string): boolean {
    const removed = this.registry.remove(id);
    if (removed) this.log.info(`unregistered container ${id}`, { container: id });
    return removed;
  }

  /** Registration in this process, as the control API does it (the runtime service's hooks use it). */
  containerApi(): LocalContainerApi {
    return {
      stateDir: this.layout.dir,
      register: (req) => this.registerContainer(req),
      unregister: async (id) => this.unregisterContainer(id),
      containers: async () => this.registry.list().map(toMsg),
      close: () => {},
    };
  }

  private handlers(): SlimFastHandlers {
    const unary =
      <Req, Res>(fn: (req: Req) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> =>
      (call, callback) => {
        Promise.resolve()
          .then(() => fn(call.request))
          .then(
            (res) => callback(null, res),
            (err: Error) => callback(toServiceError(err)),
          );
      };
    const { self, overlay } = this.membership;
    return {
      Health: unary(() => ({
        ...processResources(),
        serving: true,
        hostIp: self.ip,
        port: self.port,
        subnet: self.subnet,
        overlay,
        version: VERSION,
        pid: process.pid,
        uptimeSeconds: (Date.now() - this.started) / 1000,
        membership: this.etcd ? 'etcd' : 'static',
        etcdState: this.etcd?.status().state ?? '',
        etcdError: this.etcd?.status().lastError ?? '',
        headerAuth: this.headerAuth(),
        clusterKeySource: this.keyInfo?.source ?? '',
        clusterKeyFingerprint: this.keyInfo?.fingerprint ?? '',
        policy: this.policy.describe(),
        unconfined: this.engine.unconfined(),
        ...(() => {
          const l = this.engine.limits();
          return {
            fdLimit: l.nofile,
            fdReserve: l.reserve,
            containerConnsMax: l.conns,
            containerPoolsMax: l.pools,
            containerListenersMax: l.listeners,
            containerPendingMax: l.pending,
          };
        })(),
      })),
      RegisterContainer: unary((req) => this.registerContainer(req)),
      UnregisterContainer: unary((req) => ({ removed: this.unregisterContainer(req.id) })),
      ListContainers: unary(() => ({ containers: this.registry.list().map(toMsg) })),
      ListListeners: unary(() => ({ listeners: this.engine.listeners() })),
      GetCounters: unary(() => ({ counters: this.engine.counters() })),
      ListPeers: unary(() => ({
        peers: this.sync.peerStates().map((p) => ({
          ip: p.peer.ip,
          subnet: p.peer.subnet,
          port: p.peer.port,
          synced: p.synced,
          listeners: p.listeners.size,
        })),
      })),
    };
  }
}
