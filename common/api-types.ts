// Messages of proto/slimfast.proto as the TypeScript side sees them (camelCase, as proto-loader maps them).

export interface ContainerMsg {
  id: string;
  ip: string;
  netns: string;
  socket: string;
  env: Record<string, string>;
  pid: number;
  createdAt: string;
}

export interface HealthMsg {
  serving: boolean;
  hostIp: string;
  port: number;
  subnet: string;
  overlay: string;
  version: string;
  pid: number;
  membership: string;
  etcdState: string;
  etcdError: string;
  /** "cluster key", "insecure host keys" (--insecure-host-keys with peers) or "host keys" (a lone host). */
  headerAuth: string;
  /** With a cluster key: "file PATH", "etcd KEY" or "etcd KEY (the copy cached in FILE: …)"; else "". */
  clusterKeySource: string;
  /** With a cluster key: 12 hex digits naming it (the same on every host of one cluster); else "". */
  clusterKeyFingerprint: string;
  /** Where the policy in force comes from and what it holds, or "none". */
  policy: string;
  /** "" while the confinement guard is attached; else why not (nothing is handed out then). */
  unconfined: string;
  uptimeSeconds: number;
  openFds: number;
  /** RLIMIT_NOFILE of the broker, what its engine leaves to the control plane, and the
   *  per-container limits (0 from a broker older than these fields). */
  fdLimit: number;
  fdReserve: number;
  containerConnsMax: number;
  containerPoolsMax: number;
  containerListenersMax: number;
  containerPendingMax: number;
  rssBytes: number;
  heapTotalBytes: number;
  heapUsedBytes: number;
}

export interface ListenerMsg {
  ip: string;
  port: number;
  containerId: string;
  channels: number;
}

export interface PeerMsg {
  ip: string;
  subnet: string;
  port: number;
  synced: boolean;
  listeners: number;
}
