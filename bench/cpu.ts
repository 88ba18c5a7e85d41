// CPU accounting for the benchmark, read from /proc (see bench/README.md, "CPU time"):
//  - every process whose network namespace is one of the lab's (the emulated hosts, with their
//    brokers, and the containers, with their servers): utime+stime+cutime+cstime of /proc/PID/stat,
//    as a delta between two snapshots (a process that started in between counts in full);
//  - the clients, which exit before the second snapshot: their own rusage, recorded by cpuwrap;
//  - the kernel's softirq time of the whole machine from the first line of /proc/stat.
import fs from 'node:fs';

const HZ = 100; // USER_HZ: /proc reports clock ticks of 10 ms (sysconf(_SC_CLK_TCK) on Linux)

export interface CpuSnapshot {
  /** key "pid:starttime" → ticks used so far (self + reaped children) */
  procs: Map<string, number>;
  softirq: number;
  steal: number;
  idle: number;
  at: number;
}

export interface CpuUsage {
  /** seconds used by the lab's long-running processes (servers, brokers) */
  tasks_s: number;
  /** seconds of softirq time, whole machine */
  softirq_s: number;
  /** seconds the hypervisor took away (all vCPUs) — a noise indicator, not counted */
  steal_s: number;
  /** idle seconds (all vCPUs) — not counted */
  idle_s: number;
  wall_s: number;
}

/** Inode numbers of the named network namespaces (/run/netns/NAME). */
export function netnsInodes(names: string[]): Set<number> {
  const out = new Set<number>();
  for (const n of names) out.add(fs.statSync(`/run/netns/${n}`).ino);
  return out;
}

/** The network namespace inode of a process (undefined once it exited). */
export function netnsOf(pid: string): number | undefined {
  try {
    const link = fs.readlinkSync(`/proc/${pid}/ns/net`);
    const m = /\[(\d+)\]/.exec(link);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function machine(): { softirq: number; steal: number; idle: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return { idle: f[3] + f[4], softirq: f[6], steal: f[7] ?? 0 };
}

export function snapshotCpu(namespaces: Set<number>): CpuSnapshot {
  const procs = new Map<string, number>();
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const ns = netnsOf(pid);
    if (ns === undefined || !namespaces.has(ns)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17, starttime 22
    const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
    procs.set(`${pid}:${rest[19]}`, ticks);
  }
  return { procs, ...machine(), at: performance.now() };
}

/** Seconds one process (all its threads, plus children it reaped) used between two snapshots. */
export function processSeconds(a: CpuSnapshot, b: CpuSnapshot, pid: number): number {
  let ticks = 0;
  for (const [key, t] of b.procs) if (key.startsWith(`${pid}:`)) ticks += t - (a.procs.get(key) ?? 0);
  return ticks / HZ;
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuUsage {
  let ticks = 0;
  for (const [key, t] of b.procs) ticks += t - (a.procs.get(key) ?? 0);
  return {
    tasks_s: ticks / HZ,
    softirq_s: (b.softirq - a.softirq) / HZ,
    steal_s: (b.steal - a.steal) / HZ,
    idle_s: (b.idle - a.idle) / HZ,
    wall_s: (b.at - a.at) / 1000,
  };
}
