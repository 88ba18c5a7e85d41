// The benchmark's lab: two emulated hosts (lab/topology.ts) and, for every path, where each role
// runs.
//
//            host path            VXLAN path              SlimFast path
//   client   host 1 namespace     container c1 (host 1)   c1 with the preload env
//   server   host 2 namespace     container c2 (host 2)   c2 with the preload env
//   upstream host 1 namespace     container c3 (host 1)   c3 with the preload env   (nginx's upstream)
//   local    host 1 loopback      c3 over host 1's bridge c3 on SlimFast (same-host pairing)
// The seccomp path (some workloads): the client in c1 without the preload env, a static program
// under sfseccomp (the broker's seccomp agent); its servers are the SlimFast path's.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { ControlClient } from '../common/control-client.js';
import { stateLayout } from '../common/state-dir.js';
import { type Container, type Host, Topology } from '../lab/topology.js';
import { type BenchPath, CLIENTS, SFSECCOMP } from './measure.js';
import { type CpuSnapshot, netnsInodes, netnsOf, snapshotCpu } from './cpu.js';

export const CPUWRAP = path.join(CLIENTS, 'cpuwrap');

export type Role = 'client' | 'server' | 'upstream' | 'local';

export interface Place {
  ns: string;
  /** the address clients use to reach a server in this place */
  ip: string;
  /** preload env (SlimFast path only) */
  env: string[];
  /** short description for messages */
  where: string;
  /** the emulated host this place is on (1 or 2) */
  host: number;
}

export interface ClientRun {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  /** CPU seconds of the client and everything it reaped (cpuwrap) */
  cpu_s: number;
  timedOut: boolean;
}

export interface BrokerCounters {
  handed_out: number;
  handed_in: number;
  same_host: number;
  fallbacks: number;
  plain_accepts: number;
  connect_failures: number;
  /** of handed_out, connects served from a pre-established pool (no round trip to the broker) */
  pool_taken: number;
  pool_stocked: number;
  /** connects of programs without the preload that the seccomp agent answered with a SlimFast connection */
  seccomp_handed: number;
  /** notified calls the seccomp agent let the kernel run as they were */
  seccomp_continued: number;
  /** per host (h1 = host 1, h2 = host 2): connections its broker handed out / in, its engine thread's CPU */
  handed_out_h1: number;
  handed_in_h1: number;
  engine_cpu_us_h1: number;
  handed_out_h2: number;
  handed_in_h2: number;
  engine_cpu_us_h2: number;
}

export class BenchLab {
  private readonly controls: ControlClient[];
  private readonly inodes: Set<number>;
  private seq = 0;

  private constructor(readonly topo: Topology) {
    this.controls = topo.hosts.map((h) => new ControlClient(h.stateDir));
    this.inodes = netnsInodes([...topo.hosts.map((h) => h.ns), ...topo.containers.map((c) => c.ns)]);
  }

  /** Two hosts; c1 and c3 on host 1, c2 on host 2; all registered with their broker. */
  static async create(onTopology?: (t: Topology) => void, clusterKey: 'file' | 'none' = 'file'): Promise<BenchLab> {
    const topo = await Topology.create({ containers: [1, 1], clusterKey });
    onTopology?.(topo);
    try {
      await topo.addContainer(topo.hosts[0], 'c3');
      await topo.register(topo.container('c3'));
      return new BenchLab(topo);
    } catch (err) {
      await topo.destroy();
      throw err;
    }
  }

  get h1(): Host {
    return this.topo.hosts[0];
  }
  get h2(): Host {
    return this.topo.hosts[1];
  }

  place(role: Role, which: BenchPath): Place {
    if (which === 'seccomp') {
      const p = this.place(role, 'slimfast');
      return { ...p, env: [], where: `${p.where.replace(' (SlimFast)', '')} (SlimFast, seccomp agent)` };
    }
    if (which === 'host') {
      const h = role === 'server' ? this.h2 : this.h1;
      return { ns: h.ns, ip: role === 'local' ? '127.0.0.1' : h.ip, env: [], where: `host ${h.index} namespace`, host: h.index };
    }
    const name = role === 'client' ? 'c1' : role === 'server' ? 'c2' : 'c3';
    const c: Container = this.topo.container(name);
    const env = which === 'slimfast' ? Object.entries(c.env ?? {}).map(([k, v]) => `${k}=${v}`) : [];
    if (which === 'slimfast' && env.length === 0) throw new Error(`container ${name} is not registered with its broker`);
    return { ns: c.ns, ip: c.ip, env, where: `container ${name}${which === 'slimfast' ? ' (SlimFast)' : ''}`, host: c.host.index };
  }

  /**
   * cmd under sfseccomp for the seccomp path: the notify filter, its fd sent to the broker of
   * role's container with that container's id as the metadata (as slimfast-runc and runc would).
   */
  seccompCmd(role: Role, cmd: string[]): string[] {
    const name = role === 'client' ? 'c1' : role === 'server' ? 'c2' : 'c3';
    const c = this.topo.container(name);
    return [SFSECCOMP, stateLayout(c.host.stateDir).seccompSocket, name, ...cmd];
  }

  /** With pinning, every process of emulated host N runs on vCPU N-1 (see pinHosts). */
  private pinned = false;

  private cmdline(p: Place, cmd: string[]): string[] {
    const pin = this.pinned ? ['taskset', '-c', String((p.host - 1) % os.cpus().length)] : [];
    return [...(p.env.length ? ['env', ...p.env] : []), ...pin, ...cmd];
  }

  private argv(p: Place, cmd: string[]): string[] {
    return ['netns', 'exec', p.ns, ...this.cmdline(p, cmd)];
  }

  /**
   * Gives each emulated host its own vCPU: the brokers now, and every process started later.
   * Without it the scheduler sometimes puts a client and its server on one vCPU, sometimes not,
   * and on this machine kind a cross-vCPU wakeup costs more than the rest of a round trip.
   */
  async pinHosts(): Promise<void> {
    this.pinned = true;
    for (const h of this.topo.hosts) {
      const pids = await execa('ip', ['netns', 'pids', h.ns], { reject: false });
      for (const pid of pids.stdout.split('\n').filter(Boolean)) {
        await execa('taskset', ['-a', '-p', '-c', String((h.index - 1) % os.cpus().length), pid], { reject: false });
      }
    }
  }

  /** Starts a long-running server; destroy() kills it. */
  spawn(p: Place, cmd: string[]): ResultPromise {
    const child = execa('ip', this.argv(p, cmd), { reject: false, stdin: 'ignore', cleanup: true, buffer: true });
    this.topo.adopt(child);
    return child;
  }

  /** Runs a client to completion under cpuwrap, bounded by timeoutMs. */
  async run(p: Place, cmd: string[], timeoutMs: number): Promise<ClientRun> {
    return this.start(p, cmd, timeoutMs).result;
  }

  /** Starts a process under cpuwrap (bounded by timeoutMs); result resolves when it exits. */
  start(p: Place, cmd: string[], timeoutMs: number): { child: ResultPromise; result: Promise<ClientRun> } {
    const out = path.join(this.topo.dir, `cpu-${process.pid}-${this.seq++}.json`);
    const child = this.spawnBounded(p, [CPUWRAP, out], cmd, timeoutMs);
    return { child, result: this.finish(child, out) };
  }

  /** `wrapper cmd` in the place's namespace with its command line (env, pinning), bounded, adopted by the lab. */
  private spawnBounded(p: Place, wrapper: string[], cmd: string[], timeoutMs: number): ResultPromise {
    const child = execa('ip', ['netns', 'exec', p.ns, ...wrapper, ...this.cmdline(p, cmd)], {
      reject: false,
      stdin: 'ignore',
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      cleanup: true,
    });
    this.topo.adopt(child);
    return child;
  }

  /**
   * Runs a client to completion under wrapper (e.g. strace) instead of cpuwrap, bounded by timeoutMs:
   * the wrapper runs in the place's namespace and execs the usual command line (env, pinning, cmd).
   */
  async runWrapped(p: Place, wrapper: string[], cmd: string[], timeoutMs: number): Promise<Omit<ClientRun, 'cpu_s'>> {
    const r = await this.spawnBounded(p, wrapper, cmd, timeoutMs);
    return { exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), timedOut: Boolean(r.timedOut) };
  }

  /** The pid of the process in p's namespace whose command line is exactly argv (e.g. a server). */
  findProcess(p: Place, argv: string[]): number {
    const ns = netnsInodes([p.ns]);
    const want = argv.join('\0');
    const found: number[] = [];
    for (const pid of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const inode = netnsOf(pid);
      if (inode === undefined || !ns.has(inode)) continue;
      try {
        if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '') === want) found.push(Number(pid));
      } catch {
        // exited meanwhile, or a kernel thread
      }
    }
    if (found.length !== 1) throw new Error(`${found.length} processes run "${argv.join(' ')}" in ${p.where}, expected one`);
    return found[0];
  }

  /** The brokers' process ids (host 1's first), from their Health answers. */
  async brokerPids(): Promise<number[]> {
    return Promise.all(this.controls.map(async (c) => (await c.health()).pid));
  }

  private async finish(child: ResultPromise, out: string): Promise<ClientRun> {
    const r = await child;
    let cpu_s = 0;
    try {
      const u = JSON.parse(fs.readFileSync(out, 'utf8')) as { user_us: number; sys_us: number };
      cpu_s = (u.user_us + u.sys_us) / 1e6;
      fs.rmSync(out, { force: true });
    } catch {
      // killed before it could write: the sample is an error anyway
    }
    return { exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), cpu_s, timedOut: Boolean(r.timedOut) };
  }

  /** Waits until something listens on TCP port in namespace ns. */
  async waitPort(ns: string, port: number, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await execa('ip', ['netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`], { reject: false });
      if (r.stdout.trim().length > 0) return;
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for port ${port} to listen in ${ns}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  }

  /** Waits for a server: its port, and on SlimFast its entry in every broker's listener table. */
  async waitServer(p: Place, which: BenchPath, port: number, timeoutMs = 10_000): Promise<void> {
    await this.waitPort(p.ns, port, timeoutMs);
    if (which === 'slimfast' || which === 'seccomp') await this.waitListener(p.ip, port, timeoutMs);
  }

  /**
   * Waits until the broker owning ip lists ip:port and every other broker holds a synced copy of
   * exactly that many listeners (so a listener that was just added is known everywhere). Talks to
   * the brokers in-process: a CLI call per poll would cost a Node start-up each.
   */
  async waitListener(ip: string, port: number, timeoutMs = 10_000): Promise<void> {
    const owner = this.topo.hosts.findIndex((h) => ip.startsWith(`${h.subnet.split('.').slice(0, 3).join('.')}.`));
    if (owner < 0) throw new Error(`${ip} is in no host's subnet`);
    const end = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const local = await this.controls[owner].listeners();
        if (!local.some((l) => l.ip === ip && l.port === port)) last = `host ${owner + 1} does not list ${ip}:${port}`;
        else {
          last = '';
          for (const [i, c] of this.controls.entries()) {
            if (i === owner) continue;
            const peer = (await c.peers()).find((x) => x.ip === this.topo.hosts[owner].ip);
            if (!peer?.synced || peer.listeners !== local.length)
              last = `host ${i + 1} has ${peer?.listeners ?? 0}/${local.length} of host ${owner + 1}'s listeners`;
          }
          if (!last) return;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for listener ${ip}:${port} (${last})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  cpu(): CpuSnapshot {
    return snapshotCpu(this.inodes);
  }

  /** Packets sent by both hosts' VXLAN devices so far. */
  async vxlanPackets(): Promise<number> {
    const all = await Promise.all(this.topo.hosts.map((h) => this.topo.overlayPackets(h)));
    return all.reduce((s, x) => s + x.tx, 0);
  }

  /** Both brokers' counters, summed. */
  async brokerCounters(): Promise<BrokerCounters> {
    const all = await Promise.all(this.controls.map((c) => c.counters()));
    const sum = (k: keyof BrokerCounters) => all.reduce((s, c) => s + Number(c[k] ?? 0), 0);
    return {
      handed_out: sum('handed_out'),
      handed_in: sum('handed_in'),
      same_host: sum('same_host'),
      fallbacks: sum('fallbacks'),
      plain_accepts: sum('plain_accepts'),
      connect_failures: sum('connect_failures'),
      pool_taken: sum('pool_taken'),
      pool_stocked: sum('pool_stocked'),
      seccomp_handed: sum('seccomp_handed'),
      seccomp_continued: sum('seccomp_continued'),
      handed_out_h1: Number(all[0]?.handed_out ?? 0),
      handed_in_h1: Number(all[0]?.handed_in ?? 0),
      engine_cpu_us_h1: Number(all[0]?.engine_cpu_us ?? 0),
      handed_out_h2: Number(all[1]?.handed_out ?? 0),
      handed_in_h2: Number(all[1]?.handed_in ?? 0),
      engine_cpu_us_h2: Number(all[1]?.engine_cpu_us ?? 0),
    };
  }

  async destroy(): Promise<void> {
    for (const c of this.controls) c.close();
    await this.topo.destroy();
  }
}
