// The contract between the TypeScript control plane and the native addon (native/addon/).
// The addon owns the per-connection hot path on its own epoll thread; TypeScript pushes table
// changes down and reads counters and listener tables back.
import { createRequire } from 'node:module';
import { installPaths } from '../common/paths.js';
import type { EnginePolicy } from './policy.js';

export interface EngineOptions {
  /** Host address the reserved port binds to; host connections to peers originate from it too. */
  hostIp: string;
  /** The reserved TCP port for container traffic (default 4800; 0 = ephemeral, see counters().port). */
  port: number;
  /** The whole overlay network, e.g. "10.200.0.0/16"; told to every preload in HELLO_OK. */
  overlayCidr: string;
  /** This host's share of the overlay, e.g. "10.200.1.0/24". */
  localSubnet: string;
  /** Per-connection log events (default false). */
  debug?: boolean;
  /** Deadline for a peer's header on the reserved port (default 5000 ms). */
  headerTimeoutMs?: number;
  /** Reserved-port connections waiting for their header from one source address (default 1024)
   *  and in all (default 16384); past either a new one is reset at once (header_overload). */
  headerPeerMax?: number;
  headerPendingMax?: number;
  /** Deadline for a cross-host connect before falling back (default 3000 ms). */
  connectTimeoutMs?: number;
  /** Kernel steering of incoming connections straight to listeners (default true where the kernel
   *  can; false: the broker hands every connection over through the listener's channel). */
  steering?: boolean;
  /** false: act as a host without the confinement guard, i.e. hand no host socket to any container
   *  (for tests of that refusal; default true, and without the kernel's support it is off anyway). */
  guard?: boolean;
  /** Pre-established connections a process gets per peer at first (0..64, default 4; 0: no pools). */
  poolDepth?: number;
  /** Largest a pool grows when its process keeps finding it empty (1..256, default 64). */
  poolMax?: number;
  /** Pooled connections to one peer, all processes together (1..65536, default 1024): the peer's
   *  kernel holds each idle one. */
  poolPeerMax?: number;
  /** The cluster's shared secret, 16..64 bytes (32 random bytes recommended), the same on every
   *  host. Each host's header key is then derived from it and the host's address, so no key is
   *  announced; every header (SYNC included) must be signed by the member that owns its source
   *  subnet, come from that member's address, be fresh (headerWindowMs) and not be a replay.
   *  Refusals count as header_forged / header_stale / header_replayed / header_not_member (and
   *  steer_bad_tag / steer_stale / steer_replayed / steer_not_member on the kernel's path).
   *  Unset: random per-start host keys, announced in SYNC headers (docs/protocol.md). */
  clusterKey?: Buffer;
  /** With clusterKey: how old a header's nonce may be (default 30000 ms; at least 25000 with pools,
   *  since a pooled header is sent up to 20 s after it was signed). Nonces more than 5 s in the
   *  future are refused too, so hosts' clocks must agree to within a few seconds. */
  headerWindowMs?: number;
  /** Unix socket the seccomp agent listens on for runc's notify fds (OCI linux.seccomp.listenerPath;
   *  STATE_DIR/seccomp.sock for the daemon). Unset: no agent. */
  seccompSocket?: string;
  /** slimfast-seccomp-keeper's broker socket: the agent attaches there and gets the notify fds from
   *  the keeper (which then owns seccompSocket); nobody there: the agent listens on seccompSocket. */
  seccompKeeper?: string;
  /** Per-container limits (native/addon/limits.cc): broker connections (about one per process),
   *  pools (one per process and peer host), listener channels, and handoffs in progress
   *  (cross-host connects, held seccomp connects and accepts). Unset: 1024, 4096, 1024, 1024,
   *  scaled down when RLIMIT_NOFILE is too small for them (one container at all of them holds at
   *  most a quarter of the engine's descriptors). Past one, the container is told EMFILE and falls
   *  back to its own network for that call or process; counted as limit_conns, limit_pools,
   *  limit_listeners, limit_pending. */
  containerConnsMax?: number;
  containerPoolsMax?: number;
  containerListenersMax?: number;
  containerPendingMax?: number;
  /** Descriptors kept for the control plane: the engine takes no new long-lived one numbered past
   *  RLIMIT_NOFILE - fdReserve (refused with ENFILE, counted as limit_fds). Unset: an eighth of
   *  RLIMIT_NOFILE, 256..65536. */
  fdReserve?: number;
}

/** What start() made of the limits (EngineOptions) under the process's RLIMIT_NOFILE. */
export interface EngineLimits {
  /** The soft RLIMIT_NOFILE when the engine started. */
  nofile: number;
  /** Kept for the control plane. */
  reserve: number;
  /** nofile - reserve. */
  budget: number;
  /** Per container. */
  conns: number;
  pools: number;
  listeners: number;
  pending: number;
}

/** How a container's network namespace is read at registration (addContainer). */
export interface ContainerNetns {
  /** Its path: net.ipv4.ip_unprivileged_port_start is read there (again, at most once a second,
   *  before refusing a port below it), and the user namespace owning it says whose
   *  CAP_NET_BIND_SERVICE counts. Unset: the broker's own namespace. */
  netns?: string;
  /** Fixes that sysctl's value instead (tests). */
  unprivilegedPortStart?: number;
}

export interface PeerRoute {
  /** Peer host address (its reserved port listens there). */
  ip: string;
  /** Overlay subnet owned by that host. */
  subnet: string;
  /** Peer's reserved port. */
  port: number;
}

export interface ListenerInfo {
  ip: string;
  port: number;
  containerId: string;
  /** Number of listener channels (processes/SO_REUSEPORT sockets) sharing this address. */
  channels: number;
}

export type EngineEvent =
  | { type: 'listener'; op: 'add' | 'remove'; ip: string; port: number; containerId: string }
  /** A peer broker opened a SYNC stream on the reserved port; fd is a connected TCP socket
   *  whose 48-byte header has been consumed. TypeScript now owns the fd. */
  | { type: 'sync'; fd: number; peerIp: string }
  /** containerId: the container the line is about, when it is about one. */
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; containerId?: string };

export interface NativeEngine {
  /** 16 bytes: the key this engine signs pooled headers with (new at every start()). Peers learn it
   *  from the tag of the SYNC header we subscribe with. Throws (EPERM) with a clusterKey: the
   *  derived key is a secret; use syncHeader(). */
  hostKey(): Buffer;
  /** The 48-byte SYNC header to send first on a subscription to a peer's reserved port; call it
   *  for each connection (it carries a fresh nonce, and a peer refuses a header it has seen).
   *  Without a clusterKey: key_id 1 and the tag = hostKey(), as always; with one: signed with this
   *  host's derived key. Throws (ENOTCONN) before start(). */
  syncHeader(): Buffer;
  /** "" while the confinement guard is attached and checked; else why not: then no host socket is
   *  handed to any container (connects fall back, listeners stay the applications' own). */
  unconfined(): string;
  /** Binds the reserved port and starts the epoll thread. Throws on failure (e.g. EADDRINUSE). */
  start(opts: EngineOptions, onEvent: (ev: EngineEvent) => void): void;
  /** Stops the thread and closes every socket it owns. Idempotent. */
  stop(): void;
  /** Creates the container's SOCK_SEQPACKET broker socket at socketPath (mode 0666) and starts
   *  serving preloads on it. Throws if the id or ip is already registered. A process of the
   *  container may name a source or listening port below the namespace's
   *  ip_unprivileged_port_start only with CAP_NET_BIND_SERVICE there (else EACCES, sport_denied). */
  addContainer(id: string, ip: string, socketPath: string, netns?: ContainerNetns): void;
  /** Closes the container's broker socket, its preload connections and its listeners. */
  removeContainer(id: string): boolean;
  /** Replaces the routing table used for longest-prefix match (peers other than this host). */
  setPeers(peers: PeerRoute[]): void;
  /** Listening addresses ("ip:port") of a peer's containers, or null when unknown; connects
   *  to a peer whose view is unknown or lacks the address fall back to the ordinary path. */
  setRemoteListeners(peerIp: string, listeners: string[] | null): void;
  /** Installs the connect-time policy (null: none). A connect to an overlay destination that it
   *  denies is answered EACCES and counted as policy_denied; a container it may restrict gets no
   *  pooled connections (those would not ask), and loses the ones it has. Throws a TypeError
   *  naming the rule and field on a bad shape (broker/policy.ts builds a good one). */
  setPolicy(policy: EnginePolicy | null): void;
  listeners(): ListenerInfo[];
  counters(): Record<string, number>;
  /** The limits in force (before start(): nofile, reserve and budget 0, the default limits). */
  limits(): EngineLimits;
  /** Handoff latency histograms since the engine was made (native/addon/latency.h). */
  handoffLatency(): HandoffLatency;
}

/** One side's histogram: buckets[i] counts handoffs up to boundsSeconds[i] (cumulative); the
 *  last one, past every bound, equals count. */
export interface LatencySide {
  buckets: number[];
  count: number;
  sumSeconds: number;
}

export interface HandoffLatency {
  boundsSeconds: number[];
  /** Cross-host connects the broker made, from the preload's request to the socket handed back
   *  (connects served from a pool never ask the broker). */
  out: LatencySide;
  /** Reserved-port connections the broker handed in, from accept() to the listener's channel
   *  (those the kernel steers straight to the listener never reach it). */
  in: LatencySide;
}

interface AddonModule {
  Engine: new () => NativeEngine;
  /** Loads the kernel steering program (the cluster-key one when auth) and closes it again:
   *  "" when it loads, else why not. Opens no socket and changes no setting. */
  probeSteering(auth: boolean): string;
  /** Attaches the confinement guard, checks it on probe sockets over 127.0.0.1 and detaches it:
   *  "" when host sockets could be handed to containers here, else why not. */
  probeConfinement(): string;
  /** Raises this process's RLIMIT_NOFILE soft limit to its hard limit, and with CAP_SYS_RESOURCE
   *  the hard limit first to min(fs.nr_open, 1048576) where that is higher; with cap, sets the
   *  soft limit to cap (at most the hard limit) instead. */
  raiseFdLimit(cap?: number): { softBefore: number; hardBefore: number; soft: number; hard: number };
  /** The first global IPv4 address in the network namespace at path ("" when none), or why it could not be read. */
  netnsIpv4(path: string): { ip?: string; error?: string };
  /** Calls onExit once when pid exits (a pidfd on Node's event loop): a watch id > 0, or -errno
   *  (-ESRCH: no such process). */
  watchExit(pid: number, onExit: () => void): number;
  /** Cancels a watch; false when it had fired or was cancelled already. */
  unwatchExit(id: number): boolean;
  /** What start() would make of the limits in opts under RLIMIT_NOFILE nofile. */
  sizeLimits(nofile: number, opts?: Partial<EngineOptions>): EngineLimits;
}

let cached: AddonModule | undefined;

export function loadAddon(): AddonModule {
  if (!cached) {
    const require = createRequire(import.meta.url);
    const file = installPaths().addon;
    try {
      cached = require(file) as AddonModule;
    } catch (err) {
      throw new Error(`cannot load the SlimFast addon at ${file} (${(err as Error).message}); run "npm run build:native"`);
    }
  }
  return cached;
}
