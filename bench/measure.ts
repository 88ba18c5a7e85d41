// Side-by-side measurement of the three paths between two emulated hosts: host namespace to host
// namespace, container to container over the kernel VXLAN overlay, and container to container on
// SlimFast. Rounds are interleaved (A B C A B C …) so that a noisy neighbour hits all paths alike.
import path from 'node:path';
import { execa } from 'execa';
import { repoRoot } from '../common/paths.js';
import type { Topology } from '../lab/topology.js';

export const CLIENTS = path.join(repoRoot(), 'bench', 'clients');
export const CONNRATE = path.join(CLIENTS, 'connrate');
export const ECHOD = path.join(CLIENTS, 'echod');

export const CONNRATE_STATIC = path.join(CLIENTS, 'connrate-static');
export const SFSECCOMP = path.join(CLIENTS, 'sfseccomp');

export const PATHS = ['host', 'vxlan', 'slimfast'] as const;
export type PathName = (typeof PATHS)[number];

/**
 * The bench's fourth path, for the workloads that ask for it: the SlimFast container's client
 * statically linked (connrate-static) under sfseccomp, i.e. on the broker's seccomp agent instead of
 * the preload; it talks to the SlimFast path's servers.
 */
export const ALL_PATHS = [...PATHS, 'seccomp'] as const;
export type BenchPath = (typeof ALL_PATHS)[number];

export interface ConnrateResult {
  conns: number;
  errors: number;
  seconds: number;
  rate: number;
  connect_p50_us: number;
  connect_p99_us: number;
  rtt_p50_us: number;
  rtt_p99_us: number;
  /** close() (0 with -k); absent from older builds' output */
  close_p50_us?: number;
  close_p99_us?: number;
  first_error: string;
}

/** The echo servers: on SlimFast and plain (VXLAN baseline) in the server container, and on host 2. */
export const PORTS: Record<PathName, number> = { host: 8082, vxlan: 8081, slimfast: 8080 };

/** The JSON line connrate prints (its only output line when it succeeds). */
export function parseConnrate(text: string): ConnrateResult {
  const line = text.split('\n').find((l) => l.startsWith('{"conns"'));
  if (!line) throw new Error(`no connrate result in: ${text.trim().slice(0, 300)}`);
  return JSON.parse(line) as ConnrateResult;
}

/** Runs connrate once over one path, between the lab's namespace containers c1 and c2. */
export async function connrate(topo: Topology, which: PathName, args: string[]): Promise<ConnrateResult> {
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  const argv =
    which === 'host'
      ? ['netns', 'exec', h1.ns, CONNRATE, h2.ip, String(PORTS.host), ...args]
      : topo.argv(c1, [CONNRATE, c2.ip, String(PORTS[which]), ...args], which === 'slimfast');
  const r = await execa('ip', argv, { reject: false, timeout: 120_000 });
  if (r.exitCode !== 0) throw new Error(`connrate over ${which} failed (${r.exitCode}): ${r.stderr || r.stdout}`);
  return parseConnrate(r.stdout);
}

export function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}
