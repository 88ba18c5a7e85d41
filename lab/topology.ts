// Emulated hosts for tests, the demo and the benchmarks: every host is a network namespace with a
// bridge for its containers and a kernel VXLAN device joining the bridges into one overlay L2
// (the tunnelling baseline); containers are network namespaces on those bridges. Each host runs a
// real `slimfast daemon`. Every name carries a per-run prefix; destroy() removes everything, and
// sweepStale() removes what a killed run left behind.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { repoRoot } from '../common/paths.js';
import { pidAlive } from '../common/state-dir.js';
import { killNetns } from './procs.js';

export const CLI = path.join(repoRoot(), 'bin', 'slimfast');
const PREFIX = 'sft';
export const OVERLAY = '10.200.0.0/16';

export interface Host {
  index: number;
  ns: string;
  ip: string;
  subnet: string;
  bridgeIp: string;
  stateDir: string;
  daemon?: ResultPromise;
  daemonLog: string;
}

export interface Container {
  name: string;
  ns: string;
  netnsPath: string;
  ip: string;
  host: Host;
  /** Present once registered with the host's broker. */
  env?: Record<string, string>;
}

export interface TopologyOptions {
  hosts?: number;
  /** Containers per host, e.g. [2, 1]. */
  containers?: number[];
  /** Start a broker on every host and register every container (default true). */
  slimfast?: boolean;
  /** With slimfast: register the containers' namespaces with the brokers (default true); false leaves that to e.g. slimfast-hook. */
  register?: boolean;
  port?: number;
  /** Membership from a real etcd in the underlay switch's namespace instead of a peers file. */
  etcd?: { leaseTtl?: number };
  /**
   * How the brokers sign headers (docs/protocol.md §2 "Cluster key"), as a user's would:
   * - 'file' (the default without etcd): a random cluster key (32 bytes, mode 600) in the
   *   topology's directory, given to every broker with --cluster-key;
   * - 'etcd' (the default with etcd): no flag, the brokers share the key they find (or the first
   *   one makes) in etcd;
   * - 'none': --insecure-host-keys, per-start host keys announced in the clear.
   */
  clusterKey?: 'file' | 'etcd' | 'none';
  /** Extra `slimfast daemon` flags for host h's broker (e.g. --policy FILE). */
  brokerArgs?: (h: Host) => string[];
  /** The `slimfast` command the brokers and every CLI call run (default: this tree's bin/slimfast),
   *  e.g. an unpacked release's: its brokers then hand out that tree's preload library. */
  cli?: string;
}

/** The underlay switch's address, where the lab's etcd listens. */
export const ETCD_IP = '192.168.77.254';

async function run(cmd: string, args: string[], opts: { input?: string; timeout?: number } = {}): Promise<string> {
  const r = await execa(cmd, args, { reject: false, timeout: opts.timeout ?? 30_000, input: opts.input });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.exitCode}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Deletes namespaces and state dirs of earlier runs whose process is gone. */
export async function sweepStale(): Promise<void> {
  const list = await run('ip', ['netns', 'list']).catch(() => '');
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0];
    const m = /^sft(\d+)x/.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    // A killed run's brokers and servers still live in its namespaces: end them first.
    await killNetns(name);
    await run('ip', ['netns', 'del', name]).catch(() => {});
  }
  for (const entry of fs.readdirSync(os.tmpdir())) {
    const m = /^sft(\d+)x/.exec(entry);
    if (m && !pidAlive(Number(m[1]))) await removeTree(path.join(os.tmpdir(), entry));
  }
}

/**
 * Removes a directory a killed run left, unmounting first whatever is still mounted below it
 * (container root filesystems, /dev/shm, …), deepest first. Whatever still cannot go stays, with a
 * warning: a leftover must not fail the run that found it.
 */
export async function removeTree(dir: string): Promise<void> {
  let mounts: string[] = [];
  try {
    mounts = fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
      .filter((p): p is string => !!p && (p === dir || p.startsWith(`${dir}/`)));
  } catch {
    // no mountinfo: nothing to unmount
  }
  for (const p of mounts.sort((a, b) => b.length - a.length)) await execa('umount', ['-l', p], { reject: false });
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    console.warn(`lab: cannot remove ${dir} left by an earlier run: ${(err as Error).message}`);
  }
}

let counter = 0;

/** Thrown by a waitFor check to stop waiting at once. */
export class GiveUp extends Error {}

export class Topology {
  readonly id: string;
  readonly dir: string;
  readonly hosts: Host[] = [];
  readonly containers: Container[] = [];
  readonly port: number;
  /** The `slimfast` command this topology runs (TopologyOptions.cli). */
  readonly cliPath: string;
  private readonly children = new Set<ResultPromise>();
  private readonly namespaces: string[] = [];
  private readonly cleanups: (() => Promise<void>)[] = [];
  private destroyed = false;
  private etcdOpts?: { leaseTtl?: number };
  private brokerArgs?: (h: Host) => string[];
  private underlay?: string;
  private etcdProc?: ResultPromise;
  /** The key file brokers get with --cluster-key (TopologyOptions.clusterKey 'file'). */
  clusterKeyFile?: string;
  /** TopologyOptions.clusterKey, defaulted. */
  keyMode: 'file' | 'etcd' | 'none' = 'file';

  private constructor(port: number, cli: string) {
    this.id = `${PREFIX}${process.pid}x${(counter++).toString(36)}${Math.random().toString(36).slice(2, 5)}`;
    this.dir = path.join(os.tmpdir(), this.id);
    this.port = port;
    this.cliPath = cli;
  }

  static async create(opts: TopologyOptions = {}): Promise<Topology> {
    await sweepStale();
    const t = new Topology(opts.port ?? 4800, opts.cli ?? CLI);
    t.etcdOpts = opts.etcd;
    t.brokerArgs = opts.brokerArgs;
    t.keyMode = opts.clusterKey ?? (opts.etcd ? 'etcd' : 'file');
    try {
      if (t.keyMode === 'etcd' && !opts.etcd) throw new Error("clusterKey 'etcd' needs the etcd option");
      await t.build(opts.hosts ?? 2, opts.containers ?? [1, 1]);
      if (t.keyMode === 'file') {
        t.clusterKeyFile = path.join(t.dir, 'cluster.key');
        fs.writeFileSync(t.clusterKeyFile, crypto.randomBytes(32), { mode: 0o600 });
      }
      if (opts.etcd) await t.startEtcd();
      if (opts.slimfast ?? true) {
        await t.startBrokers();
        if (opts.register ?? true) for (const c of t.containers) await t.register(c);
      }
      return t;
    } catch (err) {
      await t.destroy();
      throw err;
    }
  }

  private async addNs(name: string): Promise<void> {
    await run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    // No IPv6: its autoconfiguration chatter would cross the VXLAN device and blur its counters.
    // Short-connection loops would otherwise stall on ports held in TIME_WAIT after a few seconds.
    await run('ip', [
      'netns',
      'exec',
      name,
      'sysctl',
      '-qw',
      'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1',
      'net.ipv4.tcp_tw_reuse=1',
      'net.ipv4.ip_local_port_range=10000 65000',
    ]);
  }

  private async build(hostCount: number, perHost: number[]): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    const underlay = hostCount > 2 || this.etcdOpts ? `${this.id}sw` : undefined;
    this.underlay = underlay;
    if (underlay) {
      await this.addNs(underlay);
      await run('ip', ['-n', underlay, 'link', 'add', 'sw0', 'type', 'bridge']);
      if (this.etcdOpts) await run('ip', ['-n', underlay, 'addr', 'add', `${ETCD_IP}/24`, 'dev', 'sw0']);
      await run('ip', ['-n', underlay, 'link', 'set', 'sw0', 'up']);
    }
    for (let i = 1; i <= hostCount; i++) {
      const ns = `${this.id}h${i}`;
      await this.addNs(ns);
      const host: Host = {
        index: i,
        ns,
        ip: `192.168.77.${i}`,
        subnet: `10.200.${i}.0/24`,
        bridgeIp: `10.200.${i}.1`,
        stateDir: path.join(this.dir, `h${i}`),
        daemonLog: path.join(this.dir, `h${i}.log`),
      };
      this.hosts.push(host);
      if (underlay) {
        await run('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', underlay]);
        await run('ip', ['-n', underlay, 'link', 'set', `p${i}`, 'master', 'sw0', 'up']);
      }
    }
    if (!underlay && hostCount === 2) {
      await run('ip', ['link', 'add', 'eth0', 'netns', this.hosts[0].ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.hosts[1].ns]);
    }
    for (const h of this.hosts) {
      if (hostCount > 1) {
        await run('ip', ['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
        await run('ip', ['-n', h.ns, 'link', 'set', 'eth0', 'up']);
      } else {
        await run('ip', ['-n', h.ns, 'addr', 'add', `${h.ip}/32`, 'dev', 'lo']);
      }
      await run('ip', ['-n', h.ns, 'link', 'add', 'br0', 'type', 'bridge']);
      await run('ip', ['-n', h.ns, 'addr', 'add', `${h.bridgeIp}/16`, 'dev', 'br0']);
      await run('ip', ['-n', h.ns, 'link', 'set', 'br0', 'up']);
      if (hostCount > 1) {
        await run('ip', ['-n', h.ns, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'local', h.ip, 'dstport', '4789', 'dev', 'eth0']);
        await run('ip', ['-n', h.ns, 'link', 'set', 'vx0', 'master', 'br0', 'mtu', '1450', 'up']);
        for (const other of this.hosts) {
          if (other !== h) await run('bridge', ['-n', h.ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx0', 'dst', other.ip]);
        }
      }
    }
    let n = 0;
    for (const h of this.hosts) {
      for (let k = 0; k < (perHost[h.index - 1] ?? 0); k++) await this.addContainer(h, `c${++n}`);
    }
  }

  /** Adds a container namespace on host h (not registered with the broker). */
  async addContainer(h: Host, name: string): Promise<Container> {
    const ns = `${this.id}${name}`;
    await this.addNs(ns);
    const onHost = this.containers.filter((c) => c.host === h).length;
    const ip = `10.200.${h.index}.${onHost + 2}`;
    const hostIf = `v${name}`;
    await run('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', hostIf, 'netns', h.ns]);
    await run('ip', ['-n', h.ns, 'link', 'set', hostIf, 'master', 'br0', 'mtu', '1450', 'up']);
    await run('ip', ['-n', ns, 'addr', 'add', `${ip}/16`, 'dev', 'eth0']);
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'mtu', '1450', 'up']);
    await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', h.bridgeIp]);
    const c: Container = { name, ns, netnsPath: `/run/netns/${ns}`, ip, host: h };
    this.containers.push(c);
    return c;
  }

  container(name: string): Container {
    const c = this.containers.find((x) => x.name === name);
    if (!c) throw new Error(`no container ${name} in this topology`);
    return c;
  }

  /** Writes the static membership file once (brokers may start concurrently and read it). */
  peersFile(): string {
    const file = path.join(this.dir, 'peers.json');
    if (fs.existsSync(file)) return file;
    const doc = { overlay: OVERLAY, hosts: this.hosts.map((h) => ({ ip: h.ip, subnet: h.subnet, port: this.port })) };
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(doc, null, 2));
    fs.renameSync(`${file}.tmp`, file);
    return file;
  }

  get etcdUrl(): string {
    return `http://${ETCD_IP}:2379`;
  }

  /** Starts (or restarts, on the same data dir) a one-member etcd in the underlay's namespace. */
  async startEtcd(): Promise<void> {
    if (!this.underlay) throw new Error('etcd needs the underlay switch namespace');
    const dir = path.join(this.dir, 'etcd');
    const peer = 'http://127.0.0.1:2380';
    const child = execa(
      'ip',
      [
        'netns',
        'exec',
        this.underlay,
        'etcd',
        '--name',
        'lab',
        '--data-dir',
        dir,
        '--listen-client-urls',
        this.etcdUrl,
        '--advertise-client-urls',
        this.etcdUrl,
        '--listen-peer-urls',
        peer,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster',
        `lab=${peer}`,
      ],
      {
        reject: false,
        stdin: 'ignore',
        stdout: { file: path.join(this.dir, 'etcd.log'), append: true },
        stderr: { file: path.join(this.dir, 'etcd.log'), append: true },
        cleanup: true,
      },
    );
    this.etcdProc = child;
    this.adopt(child);
    await this.waitFor(
      async () => {
        if (child.exitCode !== null) throw new GiveUp(`etcd exited with ${child.exitCode}; see ${path.join(this.dir, 'etcd.log')}`);
        return (await this.etcdctl(['endpoint', 'health'])).exitCode === 0;
      },
      20_000,
      'etcd to serve',
    );
  }

  async stopEtcd(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.etcdProc;
    this.etcdProc = undefined;
    if (!p) return;
    p.kill(signal);
    await p.catch(() => {});
  }

  etcdctl(args: string[]) {
    return execa('ip', ['netns', 'exec', this.underlay ?? '', 'etcdctl', '--endpoints', this.etcdUrl, '--dial-timeout', '2s', ...args], {
      reject: false,
      timeout: 10_000,
      env: { ETCDCTL_API: '3' },
    });
  }

  /** How a broker learns its peers: the peers file, or etcd. */
  private membershipArgs(h: Host): string[] {
    if (!this.etcdOpts) return ['--peers', this.peersFile()];
    return ['--etcd', this.etcdUrl, '--cluster-cidr', OVERLAY, '--subnet', h.subnet, '--lease-ttl', String(this.etcdOpts.leaseTtl ?? 10)];
  }

  /** The key flags of the topology's mode, unless `extra` chooses for itself. */
  private keyArgs(extra: string[]): string[] {
    if (extra.includes('--cluster-key') || extra.includes('--insecure-host-keys')) return [];
    if (this.keyMode === 'file') return ['--cluster-key', this.clusterKeyFile!];
    return this.keyMode === 'none' ? ['--insecure-host-keys'] : [];
  }

  async startBroker(h: Host, extra: string[] = []): Promise<void> {
    // SLIMFAST_LAB_NODE_ARGS: Node.js flags for the brokers (e.g. --cpu-prof --cpu-prof-dir=DIR).
    const nodeArgs = (process.env.SLIMFAST_LAB_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const args = [
      'netns',
      'exec',
      h.ns,
      process.execPath,
      ...nodeArgs,
      this.cliPath,
      'daemon',
      '--host-ip',
      h.ip,
      '--state-dir',
      h.stateDir,
      '--port',
      String(this.port),
      ...this.membershipArgs(h),
      ...this.keyArgs(extra),
      ...(process.env.SLIMFAST_LAB_LOG_LEVEL ? ['--log-level', process.env.SLIMFAST_LAB_LOG_LEVEL] : []),
      ...(this.brokerArgs?.(h) ?? []),
      ...extra,
    ];
    const child = execa('ip', args, {
      reject: false,
      stdin: 'ignore',
      stdout: { file: h.daemonLog, append: true },
      stderr: { file: h.daemonLog, append: true },
      cleanup: true,
    });
    h.daemon = child;
    this.children.add(child);
    child.finally(() => this.children.delete(child)).catch(() => {});
    try {
      await this.waitFor(
        async () => {
          if (child.exitCode !== null) throw new GiveUp(`broker on ${h.ns} exited with ${child.exitCode}`);
          return (await this.cli(['status', '--state-dir', h.stateDir], { reject: false })).exitCode === 0;
        },
        15_000,
        `broker on ${h.ns} to serve`,
      );
    } catch (err) {
      const log = fs.existsSync(h.daemonLog) ? fs.readFileSync(h.daemonLog, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new Error(`${(err as Error).message}; its log ends:\n${log}`);
    }
  }

  async stopBroker(h: Host, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const d = h.daemon;
    if (!d) return;
    h.daemon = undefined;
    d.kill(signal);
    const timer = setTimeout(() => d.kill('SIGKILL'), 5000);
    await d.catch(() => {});
    clearTimeout(timer);
  }

  async startBrokers(): Promise<void> {
    await Promise.all(this.hosts.map((h) => this.startBroker(h)));
    if (this.hosts.length > 1) await this.waitSynced();
  }

  /** Waits until every broker holds a live copy of every peer's listener table. */
  async waitSynced(timeoutMs = 15_000): Promise<void> {
    await this.waitFor(
      async () => {
        for (const h of this.hosts) {
          const st = await this.status(h);
          if (!st.peers.every((p: { synced: boolean }) => p.synced)) return false;
        }
        return true;
      },
      timeoutMs,
      'brokers to sync listener tables',
    );
  }

  /** Waits until every host's view of peer listeners includes ip:port (or the local table does). */
  async waitListener(ip: string, port: number, timeoutMs = 10_000): Promise<void> {
    await this.waitFor(
      async () => {
        for (const h of this.hosts.filter((x) => x.daemon)) {
          const st = await this.status(h);
          const local = st.listeners.some((l: { ip: string; port: number }) => l.ip === ip && l.port === port);
          if (local) continue;
          const owner = this.hosts.find((x) => ip.startsWith(`${x.subnet.split('.').slice(0, 3).join('.')}.`));
          if (owner === h) return false;
          const peer = st.peers.find((p: { ip: string }) => p.ip === owner?.ip);
          if (!peer?.synced || peer.listeners === 0) return false;
        }
        return true;
      },
      timeoutMs,
      `listener ${ip}:${port} to be known on every host`,
    );
  }

  async status(h: Host): Promise<any> {
    const r = await this.cli(['status', '--json', '--state-dir', h.stateDir]);
    return JSON.parse(r.stdout);
  }

  /** The containers registered with host h's broker (`slimfast container ls --json`). */
  async registered(h: Host): Promise<{ id: string; ip: string; netns: string }[]> {
    const r = await this.cli(['container', 'ls', '--json', '--state-dir', h.stateDir]);
    return JSON.parse(r.stdout) as { id: string; ip: string; netns: string }[];
  }

  async counters(h: Host): Promise<Record<string, number>> {
    return (await this.status(h)).counters;
  }

  cli(args: string[], opts: { reject?: boolean } = {}) {
    return execa(process.execPath, [this.cliPath, ...args], { reject: opts.reject ?? true, timeout: 20_000 });
  }

  async register(c: Container): Promise<void> {
    const r = await this.cli(['container', 'add', '--state-dir', c.host.stateDir, '--id', c.name, '--netns', c.netnsPath]);
    const out = JSON.parse(r.stdout) as { ip: string; env: Record<string, string> };
    if (out.ip !== c.ip) throw new Error(`broker read IP ${out.ip} for ${c.name}, expected ${c.ip}`);
    c.env = out.env;
  }

  /** argv prefix that runs a command inside container c, on SlimFast when `slimfast` (default) and registered. */
  argv(c: Container, cmd: string[], slimfast = true): string[] {
    const env = slimfast && c.env ? Object.entries(c.env).map(([k, v]) => `${k}=${v}`) : [];
    return ['netns', 'exec', c.ns, 'env', ...env, ...cmd];
  }

  /** Runs a command to completion inside container c. */
  exec(c: Container, cmd: string[], opts: { slimfast?: boolean; timeout?: number; env?: Record<string, string>; reject?: boolean } = {}) {
    const extra = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
    return execa('ip', this.argv(c, [...(extra.length ? ['env', ...extra] : []), ...cmd], opts.slimfast ?? true), {
      reject: opts.reject ?? false,
      timeout: opts.timeout ?? 60_000,
      stdin: 'ignore',
    });
  }

  /** Starts a long-running command inside container c; it is killed by destroy(). */
  spawn(c: Container, cmd: string[], opts: { slimfast?: boolean; env?: Record<string, string> } = {}): ResultPromise {
    const extra = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
    const child = execa('ip', this.argv(c, [...(extra.length ? ['env', ...extra] : []), ...cmd], opts.slimfast ?? true), {
      reject: false,
      stdin: 'ignore',
      cleanup: true,
      buffer: true,
    });
    this.children.add(child);
    child.finally(() => this.children.delete(child)).catch(() => {});
    return child;
  }

  /** Lets destroy() kill a process started elsewhere. */
  adopt(child: ResultPromise): void {
    this.children.add(child);
    child.finally(() => this.children.delete(child)).catch(() => {});
  }

  /** Runs a command in a host's namespace. */
  hostExec(h: Host, cmd: string[]) {
    return execa('ip', ['netns', 'exec', h.ns, ...cmd], { reject: false, timeout: 30_000 });
  }

  /** One TcpExt counter of the host's namespace (/proc/net/netstat), e.g. TCPFastOpenPassive. */
  async tcpExt(h: Host, name: string): Promise<number> {
    const lines = (await run('ip', ['netns', 'exec', h.ns, 'cat', '/proc/net/netstat'])).split('\n').filter((l) => l.startsWith('TcpExt:'));
    const [names, values] = lines.map((l) => l.trim().split(/\s+/));
    const i = names?.indexOf(name) ?? -1;
    if (i < 1 || !values?.[i]) throw new Error(`no TcpExt counter ${name} in ${h.ns}`);
    return Number(values[i]);
  }

  /** Packet counters of the host's VXLAN device. */
  async overlayPackets(h: Host): Promise<{ tx: number; rx: number }> {
    const out = JSON.parse(await run('ip', ['-n', h.ns, '-s', '-j', 'link', 'show', 'vx0'])) as {
      stats64: { tx: { packets: number }; rx: { packets: number } };
    }[];
    return { tx: out[0].stats64.tx.packets, rx: out[0].stats64.rx.packets };
  }

  /** Waits until a TCP port is listening inside container c (checked with ss). */
  async waitPort(c: Container, port: number, timeoutMs = 10_000): Promise<void> {
    await this.waitFor(
      async () => {
        const r = await execa('ip', ['netns', 'exec', c.ns, 'ss', '-Hltn', `sport = :${port}`], { reject: false });
        return r.stdout.trim().length > 0;
      },
      timeoutMs,
      `port ${port} to listen in ${c.name}`,
    );
  }

  async waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        if (await check()) return;
      } catch (err) {
        if (err instanceof GiveUp) throw err;
        // not yet
      }
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Runs fn first thing in destroy() (latest first), while the brokers still run, e.g. to delete runc containers. */
  onDestroy(fn: () => Promise<void>): void {
    this.cleanups.push(fn);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const fn of [...this.cleanups].reverse()) await fn().catch(() => {});
    for (const h of this.hosts) await this.stopBroker(h).catch(() => {});
    for (const child of [...this.children]) child.kill('SIGKILL');
    // Forked servers hold our pipes and keep namespaces alive: kill everything inside first.
    for (const ns of this.namespaces) await killNetns(ns);
    await Promise.race([Promise.allSettled([...this.children]), new Promise((r) => setTimeout(r, 5000).unref())]);
    for (const ns of [...this.namespaces].reverse()) await run('ip', ['netns', 'del', ns]).catch(() => {});
    await removeTree(this.dir);
  }
}
