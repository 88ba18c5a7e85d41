// Pure logic of cluster membership in etcd: the network config, the subnet lease records and how a
// host picks its subnet. broker/etcd-membership.ts does the talking to etcd.
import { type Cidr, contains, formatCidr, overlaps, parseCidr, parseIp } from '../common/cidr.js';
import type { HostEntry } from './peers.js';

/** `<prefix>/config`: the cluster's overlay network and the size of each host's share. */
export interface ClusterConfig {
  network: Cidr;
  subnetLen: number;
}

/** One `<prefix>/subnets/<a.b.c.d-len>` record: the subnet and the host holding it. */
export interface SubnetLease {
  subnet: Cidr;
  hostIp: string;
  port: number;
  /** etcd mod revision of the record (compare-and-swap on takeover). */
  modRevision: string;
}

export function parseClusterConfig(text: string, source: string): ClusterConfig {
  let doc: { network?: unknown; subnetLen?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (err) {
    throw new Error(`${source}: not valid JSON (${(err as Error).message}); expected {"network":"10.200.0.0/16","subnetLen":24}`);
  }
  if (typeof doc?.network !== 'string') throw new Error(`${source}: needs a "network" CIDR, e.g. {"network":"10.200.0.0/16","subnetLen":24}`);
  const network = parseCidr(doc.network);
  const subnetLen = doc.subnetLen === undefined ? Math.max(network.prefix, 24) : Number(doc.subnetLen);
  if (!Number.isInteger(subnetLen) || subnetLen < network.prefix || subnetLen > 30) {
    throw new Error(`${source}: "subnetLen" must be an integer from ${network.prefix} (the network's own) to 30, got ${String(doc.subnetLen)}`);
  }
  return { network, subnetLen };
}

export function formatClusterConfig(c: ClusterConfig): string {
  return JSON.stringify({ network: formatCidr(c.network), subnetLen: c.subnetLen });
}

/** "10.200.1.0/24" -> "10.200.1.0-24" (a key segment without a slash). */
export function subnetKeyName(c: Cidr): string {
  return formatCidr(c).replace('/', '-');
}

export function parseSubnetRecord(keyName: string, value: string, modRevision: string): SubnetLease {
  const subnet = parseCidr(keyName.replace('-', '/'));
  let doc: { hostIp?: unknown; port?: unknown };
  try {
    doc = JSON.parse(value) as typeof doc;
  } catch {
    throw new Error(`subnet record ${keyName}: not valid JSON`);
  }
  if (typeof doc?.hostIp !== 'string') throw new Error(`subnet record ${keyName}: no "hostIp"`);
  parseIp(doc.hostIp);
  const port = Number(doc.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`subnet record ${keyName}: bad "port"`);
  return { subnet, hostIp: doc.hostIp, port, modRevision };
}

export function subnetRecordValue(hostIp: string, port: number): string {
  return JSON.stringify({ hostIp, port });
}

export type SubnetChoice = { subnet: Cidr; takeover?: SubnetLease } | { error: string };

/**
 * Which subnet this host claims: the one asked for (--subnet), else the one it already holds,
 * else the one it held last time (state dir), else the first free block of the network.
 * A subnet that overlaps another host's live record is never chosen.
 */
export function chooseSubnet(
  cfg: ClusterConfig,
  taken: readonly SubnetLease[],
  hostIp: string,
  opts: { requested?: Cidr; remembered?: Cidr } = {},
): SubnetChoice {
  const others = taken.filter((l) => l.hostIp !== hostIp);
  const mine = taken.filter((l) => l.hostIp === hostIp);
  const inNetwork = (c: Cidr) => c.prefix >= cfg.network.prefix && contains(cfg.network, c.network);
  const holder = (c: Cidr) => others.find((l) => overlaps(l.subnet, c));
  const same = (a: Cidr, b: Cidr) => a.network === b.network && a.prefix === b.prefix;
  const pick = (c: Cidr): SubnetChoice => ({ subnet: c, takeover: mine.find((l) => same(l.subnet, c)) });

  if (opts.requested) {
    const r = opts.requested;
    if (!inNetwork(r)) return { error: `--subnet ${formatCidr(r)} is not inside the cluster network ${formatCidr(cfg.network)}` };
    const h = holder(r);
    if (h) {
      return {
        error: `--subnet ${formatCidr(r)} conflicts with ${formatCidr(h.subnet)}, held by host ${h.hostIp}; choose another subnet, or leave --subnet out to get a free one`,
      };
    }
    return pick(r);
  }
  const held = mine.find((l) => inNetwork(l.subnet) && !holder(l.subnet));
  if (held) return pick(held.subnet);
  if (opts.remembered && inNetwork(opts.remembered) && !holder(opts.remembered)) return pick(opts.remembered);

  const size = 2 ** (32 - cfg.subnetLen);
  const count = 2 ** (cfg.subnetLen - cfg.network.prefix);
  for (let i = 0; i < count; i++) {
    const c: Cidr = { network: (cfg.network.network + i * size) >>> 0, prefix: cfg.subnetLen };
    if (!holder(c)) return pick(c);
  }
  return {
    error: `the cluster network ${formatCidr(cfg.network)} has no free /${cfg.subnetLen} left (${taken.length} held); widen the network or free a host's subnet`,
  };
}

/**
 * The hosts a set of subnet records describes. A host with more than one record (it changed its
 * --subnet while its old lease still runs) is listed once, with its newest record.
 */
export function hostsOf(leases: readonly SubnetLease[]): HostEntry[] {
  const byHost = new Map<string, SubnetLease>();
  for (const l of leases) {
    const prev = byHost.get(l.hostIp);
    if (!prev || BigInt(l.modRevision) > BigInt(prev.modRevision)) byHost.set(l.hostIp, l);
  }
  return [...byHost.values()]
    .map((l) => ({ ip: l.hostIp, subnet: formatCidr(l.subnet), port: l.port, cidr: l.subnet }))
    .sort((a, b) => parseIp(a.ip) - parseIp(b.ip));
}
