// A real containerd for the lab, kept apart from the machine's: its own root, state, gRPC socket, temp
// dir, runc root and FIFO dir, all under one directory, and a minimal config (CRI off unless asked
// for: then with its own CNI config and IPAM state, see CriConfig). The daemon runs in
// an emulated host's network namespace with that host's environment (e.g. SLIMFAST_STATE_DIR), which its
// shims and the runtimes they run inherit: one containerd per host, as deployed. Images come from OCI
// archives (`ctr images import`), never a registry; containers join network namespaces the lab made
// (`ctr run --with-ns network:PATH`).
//
// containerd 1.6 keeps one thing outside: shim sockets in /run/containerd/s/. destroy() removes the
// ones its shims left, and the directories when this lab made them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { pidAlive } from '../common/state-dir.js';
import { REAL_RUNC } from './containers.js';
import { CriClient } from './cri.js';
import { SHIM_SOCKET_ROOT, cgroupDirs, killAll, killQuietly, processes, rmdirWhenEmpty, safeReaddir, shimSockets, unmountUnder } from './procs.js';

export const CONTAINERD = process.env.SLIMFAST_TEST_CONTAINERD ?? '/usr/bin/containerd';
export const CTR = process.env.SLIMFAST_TEST_CTR ?? '/usr/bin/ctr';
/** containerd 1.6 puts shim sockets here whatever its root and state. */
/** Longest the daemon lives, in case a killed run leaves it behind. */
const DAEMON_LIFETIME_S = 300;

export interface CtrResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface ContainerdOptions {
  /** containerd namespace for everything this lab does. */
  namespace: string;
  /** Network namespace (a path such as /run/netns/NAME) the daemon, its shims and runc run in. */
  netns?: string;
  /** Added to the daemon's environment; its shims and the runtimes they run inherit it. */
  env?: Record<string, string>;
  /** Turns the CRI plugin on (Kubernetes' RuntimeService on the same socket; namespace k8s.io). */
  cri?: CriConfig;
  /** Edits the config file before the daemon starts, e.g. `slimfast install containerd --config FILE`. */
  editConfig?: (file: string) => Promise<void>;
}

/**
 * The CRI plugin's setup: runtime handler "runc" (the default: the real runc, root in the lab) and
 * whatever editConfig adds; CNI from Debian's containernetworking-plugins (bridge + host-local),
 * everything else of CNI's and the plugin's in the lab's directory.
 */
export interface CriConfig {
  /** The pause image (imported into k8s.io by the caller before the first pod). */
  sandboxImage: string;
  /** Pods' veths join this existing bridge; host-local hands out rangeStart..rangeEnd of subnet, default route via gateway. */
  cni: { bridge: string; subnet: string; rangeStart: string; rangeEnd: string; gateway: string; mtu?: number };
  /** The cgroup parent the caller gives its pods (LinuxPodSandboxConfig.cgroup_parent): removed by destroy(). */
  cgroupParent: string;
}

export const CNI_BIN_DIR = process.env.SLIMFAST_TEST_CNI_BIN ?? '/usr/lib/cni';
export const CRI_NAMESPACE = 'k8s.io';

export interface CtrRunOptions {
  /** Network namespace to join (--with-ns network:PATH). */
  netns: string;
  /** --runc-binary PATH, e.g. slimfast-runc. */
  runcBinary?: string;
  /** Detached (-d); the container's stdout and stderr go to this file (--log-uri). */
  log?: string;
  /** Foreground with --rm: ctr waits, passes the output on and removes the container. */
  rm?: boolean;
  timeout?: number;
}

/** Daemons (containerd --config FILE) and shims (-address SOCK) whose files lie below dir. */
function processesUnder(dir: string): number[] {
  const below = (p: string | undefined) => !!p && p.startsWith(`${dir}/`);
  return processes((argv) => {
    const base = path.basename(argv[0] ?? '');
    if (base === 'containerd') return below(argv[argv.indexOf('--config') + 1]);
    if (base.startsWith('containerd-shim')) return below(argv[argv.indexOf('-address') + 1]);
    return false;
  });
}

/** Kills the daemons and shims, removes the shim sockets and unmounts everything of the labs at or below dir. */
function scrub(dir: string): string[] {
  killAll(processesUnder(dir));
  const sockets = shimSockets(dir, (lab) => path.join(lab, 'state', 'io.containerd.runtime.v2.task'));
  for (const s of sockets) fs.rmSync(s, { force: true });
  unmountUnder(dir);
  return sockets;
}

/** Removes the shim socket directories when empty (containerd makes them again when it needs them). */
function removeShimDirs(dirs: string[]): void {
  for (const d of dirs) {
    try {
      fs.rmdirSync(d);
    } catch {
      // not empty: in use by another containerd
    }
  }
}

/**
 * Cleans up after containerd labs of killed earlier runs (in os.tmpdir()/sftPIDx…/…): kills their
 * daemons and shims, removes their shim sockets and unmounts their snapshots, so that sweepStale() can
 * remove the directories. Their containers' processes are left to sweepStaleRunc() (lab/containers.ts),
 * which finds them by cgroup: run() names each container's cgroup after its id.
 */
export function sweepStaleContainerd(): void {
  let sockets = 0;
  for (const entry of fs.readdirSync(os.tmpdir())) {
    const m = /^sft(\d+)x/.exec(entry);
    if (m && !pidAlive(Number(m[1]))) sockets += scrub(path.join(os.tmpdir(), entry)).length;
  }
  // The killed run's labs could not remove them; they made them if nothing else is in them.
  if (sockets > 0) removeShimDirs([`${SHIM_SOCKET_ROOT}/s`, SHIM_SOCKET_ROOT]);
}

export class ContainerdLab {
  readonly address: string;
  readonly namespace: string;
  readonly log: string;
  private readonly opts: ContainerdOptions;
  private daemon?: ResultPromise;
  private daemonPid?: number;
  private readonly containers = new Set<string>();
  private readonly madeShimDirs: string[] = [];
  private destroyed = false;

  /** dir: a new directory of this run below os.tmpdir()/sftPIDx… (so that a killed run's is swept). */
  private constructor(
    readonly dir: string,
    opts: ContainerdOptions,
  ) {
    this.opts = opts;
    this.namespace = opts.namespace;
    this.address = path.join(dir, 'containerd.sock');
    this.log = path.join(dir, 'containerd.log');
  }

  static async start(dir: string, opts: ContainerdOptions): Promise<ContainerdLab> {
    for (const f of [CONTAINERD, CTR]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: apt-get install containerd (see ci/packages.txt)`);
    const lab = new ContainerdLab(dir, opts);
    try {
      await lab.startDaemon();
      return lab;
    } catch (err) {
      await lab.destroy();
      throw err;
    }
  }

  /** The runc root the shims get (--runc-root; runc's --root is this plus /NAMESPACE). */
  get runcRoot(): string {
    return path.join(this.sub('runc'), this.namespace);
  }

  private sub(name: string): string {
    return path.join(this.dir, name);
  }

  private writeConfig(): string {
    const q = (s: string) => JSON.stringify(s);
    const cri = this.opts.cri;
    const text = [
      'version = 2',
      `root = ${q(this.sub('root'))}`,
      `state = ${q(this.sub('state'))}`,
      // CRI is Kubernetes' (and wants CNI): on only when asked for; opt would install to
      // /opt/containerd; the other snapshotters are not used here and only log that they cannot load.
      `disabled_plugins = ${JSON.stringify([
        ...(cri ? [] : ['io.containerd.grpc.v1.cri']),
        'io.containerd.internal.v1.opt',
        'io.containerd.snapshotter.v1.aufs',
        'io.containerd.snapshotter.v1.btrfs',
        'io.containerd.snapshotter.v1.zfs',
        'io.containerd.snapshotter.v1.devmapper',
      ])}`,
      '[grpc]',
      `  address = ${q(this.address)}`,
      '[ttrpc]',
      `  address = ${q(`${this.address}.ttrpc`)}`,
      ...(cri ? this.criConfig(cri) : []),
      '',
    ].join('\n');
    const file = this.sub('config.toml');
    fs.writeFileSync(file, text);
    return file;
  }

  private criConfig(cri: CriConfig): string[] {
    const q = (s: string) => JSON.stringify(s);
    const confDir = this.sub('cni');
    fs.mkdirSync(confDir, { recursive: true });
    const { bridge, subnet, rangeStart, rangeEnd, gateway, mtu } = cri.cni;
    // isGateway false: the bridge has its address already (the gateway); the route comes from IPAM.
    // tuning: IPv6 off in the pod, as in the lab's own namespaces, so that no router solicitation or
    // MLD report crosses the VXLAN devices whose packet counts the tests compare.
    fs.writeFileSync(
      path.join(confDir, '10-lab.conflist'),
      JSON.stringify(
        {
          cniVersion: '0.4.0',
          name: 'lab',
          plugins: [
            {
              type: 'bridge',
              bridge,
              isGateway: false,
              ipMasq: false,
              hairpinMode: false,
              ...(mtu ? { mtu } : {}),
              ipam: {
                type: 'host-local',
                dataDir: this.sub('cni-ipam'),
                ranges: [[{ subnet, rangeStart, rangeEnd, gateway }]],
                routes: [{ dst: '0.0.0.0/0', gw: gateway }],
              },
            },
            { type: 'tuning', sysctl: { 'net.ipv6.conf.all.disable_ipv6': '1', 'net.ipv6.conf.default.disable_ipv6': '1' } },
          ],
        },
        null,
        2,
      ),
    );
    const plugin = 'plugins."io.containerd.grpc.v1.cri"';
    return [
      `[${plugin}]`,
      `  sandbox_image = ${q(cri.sandboxImage)}`,
      // Setting a container's oom_score_adj below the daemon's own needs CAP_SYS_RESOURCE, which a
      // root without it (some CI sandboxes) lacks: containerd keeps them at or above its own.
      '  restrict_oom_score_adj = true',
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      `  [${plugin}.containerd]`,
      '    default_runtime_name = "runc"',
      `    [${plugin}.containerd.runtimes.runc]`,
      '      runtime_type = "io.containerd.runc.v2"',
      `      [${plugin}.containerd.runtimes.runc.options]`,
      `        BinaryName = ${q(REAL_RUNC)}`,
      `        Root = ${q(this.sub('runc'))}`,
      `  [${plugin}.cni]`,
      `    bin_dir = ${q(CNI_BIN_DIR)}`,
      `    conf_dir = ${q(confDir)}`,
      '    max_conf_num = 1',
    ];
  }

  private async startDaemon(): Promise<void> {
    for (const d of ['root', 'state', 'tmp', 'runc', 'fifo']) fs.mkdirSync(this.sub(d), { recursive: true });
    for (const d of [SHIM_SOCKET_ROOT, `${SHIM_SOCKET_ROOT}/s`]) if (!fs.existsSync(d)) this.madeShimDirs.unshift(d);
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.opts.env, TMPDIR: this.sub('tmp') };
    // containerd makes its temporary mounts (image unpacking) in XDG_RUNTIME_DIR, else TMPDIR.
    delete env.XDG_RUNTIME_DIR;
    const config = this.writeConfig();
    if (this.opts.editConfig) await this.opts.editConfig(config);
    const cmd = [...(this.opts.netns ? ['nsenter', `--net=${this.opts.netns}`] : []), CONTAINERD, '--config', config];
    const child = execa('timeout', ['-s', 'KILL', String(DAEMON_LIFETIME_S), ...cmd], {
      env,
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      stdout: { file: this.log },
      stderr: { file: this.log },
      cleanup: true,
    });
    this.daemon = child;
    child.catch(() => {});
    const end = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`containerd exited with ${child.exitCode}; its log ends:\n${this.logTail()}`);
      const v = await this.ctr(['version'], { timeout: 5000 }).catch(() => undefined);
      if (v?.exitCode === 0) break;
      if (Date.now() > end) throw new Error(`containerd did not serve ${this.address} within 15 s; its log ends:\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // timeout's child, containerd itself (nsenter execs it): the one to stop with SIGTERM.
    const children = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    this.daemonPid = Number(children[0]) || undefined;
  }

  logTail(lines = 15): string {
    return fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '';
  }

  /** Runs `ctr -a SOCK -n NAMESPACE ARGS`. */
  async ctr(args: string[], opts: { timeout?: number } = {}): Promise<CtrResult> {
    const r = await execa(CTR, ['-a', this.address, '-n', this.namespace, ...args], {
      reject: false,
      stdin: 'ignore',
      timeout: opts.timeout ?? 60_000,
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  private async must(args: string[], opts: { timeout?: number } = {}): Promise<string> {
    const r = await this.ctr(args, opts);
    if (r.exitCode !== 0) throw new Error(`ctr ${args.join(' ')} failed (${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** Imports an OCI archive (lab/oci-image.ts) and returns the image names now in the namespace. */
  async importImage(file: string): Promise<string[]> {
    await this.must(['images', 'import', file], { timeout: 60_000 });
    return (await this.must(['images', 'ls', '-q'])).split('\n').filter(Boolean);
  }

  /**
   * `ctr run` of image as container id. Its cgroup is /ID: ctr's default, /NAMESPACE/ID, would leave the
   * namespace's cgroup behind in every hierarchy.
   */
  async run(id: string, image: string, cmd: string[], opts: CtrRunOptions): Promise<CtrResult> {
    if (!opts.log === !opts.rm) throw new Error('ctr run: give either log (detached) or rm (foreground)');
    this.containers.add(id);
    const args = [
      'run',
      ...(opts.rm ? ['--rm'] : ['-d', '--log-uri', `file://${opts.log}`]),
      ...(opts.runcBinary ? ['--runc-binary', opts.runcBinary] : []),
      '--runc-root',
      this.sub('runc'),
      '--fifo-dir',
      this.sub('fifo'),
      '--cgroup',
      `/${id}`,
      '--with-ns',
      `network:${opts.netns}`,
      image,
      id,
      ...cmd,
    ];
    const r = await this.ctr(args, { timeout: opts.timeout });
    if (opts.rm && r.exitCode === 0) this.containers.delete(id);
    return r;
  }

  /** `ctr task exec` (foreground, output captured). */
  exec(id: string, execId: string, cmd: string[], opts: { timeout?: number } = {}): Promise<CtrResult> {
    return this.ctr(['task', 'exec', '--fifo-dir', this.sub('fifo'), '--exec-id', execId, id, ...cmd], opts);
  }

  /** The task's status (RUNNING, STOPPED, …), or undefined when there is none. */
  async taskStatus(id: string): Promise<string | undefined> {
    const out = await this.must(['task', 'ls']);
    const line = out
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[0] === id);
    return line?.[2];
  }

  /** Kills the task, waits (bounded) until it has stopped, deletes it and the container. */
  async remove(id: string, timeoutMs = 15_000): Promise<void> {
    await this.must(['task', 'kill', '-s', 'KILL', id]);
    const end = Date.now() + timeoutMs;
    while ((await this.taskStatus(id)) !== 'STOPPED') {
      if (Date.now() > end) throw new Error(`task ${id} did not stop within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.must(['task', 'rm', id]);
    await this.must(['container', 'rm', id]);
    this.containers.delete(id);
  }

  /** Container ids in the namespace. */
  async containerIds(): Promise<string[]> {
    return (await this.must(['containers', 'ls', '-q'])).split('\n').filter(Boolean);
  }

  /** The bundle config.json the runtime was given (after slimfast-runc's edit, when it ran). */
  bundleSpec(id: string): Record<string, any> {
    return JSON.parse(fs.readFileSync(path.join(this.sub('state'), 'io.containerd.runtime.v2.task', this.namespace, id, 'config.json'), 'utf8'));
  }

  /**
   * Removes the containers left (their poststop hooks run while the caller's brokers still do), stops
   * the daemon, kills shims left, unmounts what is mounted below dir, removes the cgroups and dir.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const ids = [...this.containers];
    if (this.daemon && this.daemon.exitCode === null) {
      if (this.opts.cri) await this.removePods();
      for (const id of ids) {
        await this.ctr(['task', 'rm', '-f', id], { timeout: 20_000 }).catch(() => {});
        await this.ctr(['container', 'rm', id], { timeout: 20_000 }).catch(() => {});
      }
    }
    const d = this.daemon;
    if (d) {
      if (this.daemonPid) killQuietly(this.daemonPid, 'SIGTERM');
      else d.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (this.daemonPid) killQuietly(this.daemonPid, 'SIGKILL');
        d.kill('SIGKILL');
      }, 5000);
      await d.catch(() => {});
      clearTimeout(timer);
    }
    scrub(this.dir);
    for (const id of ids) for (const cg of cgroupDirs(id)) await removeCgroup(cg);
    if (this.opts.cri) for (const cg of cgroupDirs(this.opts.cri.cgroupParent.replace(/^\/+/, ''))) await removeCgroupTree(cg);
    removeShimDirs(this.madeShimDirs);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Removes what CRI pods are left (their poststop hooks run while the caller's brokers still do). */
  private async removePods(): Promise<void> {
    const cri = new CriClient(this.address, 20_000);
    try {
      for (const p of await cri.listPods()) {
        await cri.stopPod(p.id).catch(() => {});
        await cri.removePod(p.id).catch(() => {});
      }
    } catch {
      // CRI not serving: scrub() kills what is left
    } finally {
      cri.close();
    }
  }
}

/** removeCgroup() for dir and the cgroups below it, deepest first. */
async function removeCgroupTree(dir: string): Promise<void> {
  for (const e of safeReaddir(dir)) {
    const sub = path.join(dir, e);
    if (fs.statSync(sub, { throwIfNoEntry: false })?.isDirectory()) await removeCgroupTree(sub);
  }
  await removeCgroup(dir);
}

/** Kills what is left in a container's cgroup and removes it (empty once they are reaped). */
async function removeCgroup(dir: string): Promise<void> {
  try {
    killAll(fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
  } catch {
    // no processes file: nothing to kill
  }
  await rmdirWhenEmpty(dir, 50);
}
