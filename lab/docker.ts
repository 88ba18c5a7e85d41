// A real dockerd for the lab, kept apart from the machine's: its own data root, exec root, API socket,
// pidfile, daemon.json and client config, all under one directory; the containerd it starts for itself
// (no --containerd) keeps its files below the exec and data roots. The daemon runs in an emulated host's
// network namespace (`nsenter --net`: `ip netns exec` would remount /sys and hide the cgroup mounts)
// with that host's environment (e.g. SLIMFAST_STATE_DIR), which its containerd, shims and runtimes
// inherit: one dockerd per host, as deployed. No iptables, NAT or forwarding changes; vfs storage (no
// overlay mounts to leak); containers' cgroups below /<cgroupParent>. Images come from archives
// (`docker load`), never a registry.
//
// Outside the directory: containerd 1.6's shim sockets in /run/containerd/s, and dockerd's plugin
// directory /run/docker/plugins; destroy() removes those it leaves (the directories when it made them).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { pidAlive } from '../common/state-dir.js';
import { SHIM_SOCKET_ROOT, cgroupDirs, killAll, killQuietly, processes, rmdirWhenEmpty, safeReaddir, shimSockets, unmountUnder } from './procs.js';

// Debian's docker.io, by path: another `docker` earlier in PATH may speak a newer API than this dockerd.
export const DOCKERD = process.env.SLIMFAST_TEST_DOCKERD ?? '/usr/sbin/dockerd';
export const DOCKER = process.env.SLIMFAST_TEST_DOCKER ?? '/usr/bin/docker';
const PLUGIN_DIRS = ['/run/docker', '/run/docker/plugins'];
/** Longest the daemon lives, in case a killed run leaves it behind. */
const DAEMON_LIFETIME_S = 300;

export interface DockerResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface DockerOptions {
  /** Network namespace (a path such as /run/netns/NAME) the daemon and its containers' runtimes run in. */
  netns: string;
  /** Added to the daemon's environment; its containerd, shims and runtimes inherit it. */
  env?: Record<string, string>;
  /** Parent cgroup of the containers (--cgroup-parent), one per lab so that a sweep finds them. */
  cgroupParent: string;
  /** Extra dockerd flags, e.g. --bridge and --fixed-cidr. */
  args?: string[];
}

/** dockerd (--data-root), its containerd (--config) and shims (-address) whose files lie below dir. */
function processesUnder(dir: string): number[] {
  const below = (p: string | undefined) => !!p && p.startsWith(`${dir}/`);
  return processes((argv) => {
    const base = path.basename(argv[0] ?? '');
    const flag =
      base === 'dockerd' ? '--data-root' : base === 'containerd' ? '--config' : base.startsWith('containerd-shim') ? '-address' : undefined;
    return !!flag && below(argv[argv.indexOf(flag) + 1]);
  });
}

/** Kills what is left in a lab's parent cgroup and its containers' cgroups below it, and removes them. */
async function removeCgroupTree(parent: string): Promise<void> {
  for (const dir of cgroupDirs(parent)) {
    const children = safeReaddir(dir)
      .map((e) => path.join(dir, e))
      .filter((d) => fs.statSync(d).isDirectory());
    for (const d of [...children, dir]) {
      try {
        killAll(fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean));
      } catch {
        // gone
      }
    }
    for (const d of children) await rmdirWhenEmpty(d, 50);
    await rmdirWhenEmpty(dir, 50);
  }
}

/** Kills the daemons, containerds and shims, removes the shim sockets and unmounts everything of the labs at or below dir. */
function scrub(dir: string): void {
  killAll(processesUnder(dir));
  for (const s of shimSockets(dir, (lab) => path.join(lab, 'exec', 'containerd', 'daemon', 'io.containerd.runtime.v2.task')))
    fs.rmSync(s, { force: true });
  unmountUnder(dir);
}

function removeEmptyDirs(dirs: string[]): void {
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    try {
      fs.rmdirSync(d);
    } catch {
      // not empty: in use by another daemon
    }
  }
}

/** The cgroup parent a lab in directory dir gets: the directory's name, which carries the run's pid. */
function cgroupParentFor(dir: string): string {
  return `/${path.basename(path.dirname(dir))}-${path.basename(dir)}`;
}

/**
 * Cleans up after docker labs of killed earlier runs (in os.tmpdir()/sftPIDx…/…): kills their daemons,
 * containerds and shims (containers' processes by their cgroups), removes their shim sockets and
 * unmounts what they mounted, so that sweepStale() can remove the directories.
 */
export async function sweepStaleDocker(): Promise<void> {
  let stale = false;
  for (const entry of safeReaddir(os.tmpdir())) {
    const m = /^sft(\d+)x/.exec(entry);
    if (!m || pidAlive(Number(m[1]))) continue;
    const top = path.join(os.tmpdir(), entry);
    if (safeReaddir(top).some((e) => fs.existsSync(path.join(top, e, 'exec', 'containerd')))) stale = true;
    scrub(top);
  }
  // Cgroup parents are named after the run (sftPIDx…-NAME): also those whose directory is gone.
  const names = new Set<string>();
  for (const h of cgroupDirs('')) {
    for (const e of safeReaddir(h)) {
      const m = /^(sft(\d+)x[^-]*)-/.exec(e);
      if (m && !pidAlive(Number(m[2]))) names.add(`/${e}`);
    }
  }
  for (const n of names) await removeCgroupTree(n);
  // The killed run could not remove them; it made them if nothing else is in them (a daemon that
  // needs them again makes them again).
  if (stale) removeEmptyDirs([`${SHIM_SOCKET_ROOT}/s`, SHIM_SOCKET_ROOT, ...PLUGIN_DIRS]);
}

export class DockerLab {
  readonly socket: string;
  /** daemon.json (--config-file): written by create(), edit it (e.g. slimfast install docker) before start(). */
  readonly configFile: string;
  readonly log: string;
  readonly cgroupParent: string;
  private readonly opts: DockerOptions;
  private daemon?: ResultPromise;
  private daemonPid?: number;
  private readonly madeDirs: string[] = [];
  private destroyed = false;

  private constructor(
    readonly dir: string,
    opts: DockerOptions,
  ) {
    this.opts = opts;
    this.socket = path.join(dir, 'docker.sock');
    this.configFile = path.join(dir, 'daemon.json');
    this.log = path.join(dir, 'dockerd.log');
    this.cgroupParent = opts.cgroupParent;
  }

  /**
   * Makes the lab's directory and its daemon.json (only the trust key's path, which would otherwise go to
   * /etc/docker/key.json); start() starts the daemon. dir: a new directory of this run below
   * os.tmpdir()/sftPIDx… (so that a killed run's is swept).
   */
  static create(dir: string, opts: Omit<DockerOptions, 'cgroupParent'>): DockerLab {
    for (const f of [DOCKERD, DOCKER]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: apt-get install docker.io (see ci/packages.txt)`);
    const lab = new DockerLab(dir, { ...opts, cgroupParent: cgroupParentFor(dir) });
    for (const d of ['data', 'exec', 'tmp', 'client']) fs.mkdirSync(lab.sub(d), { recursive: true });
    fs.writeFileSync(lab.configFile, `${JSON.stringify({ 'deprecated-key-path': lab.sub('key.json') }, null, 2)}\n`);
    return lab;
  }

  private sub(name: string): string {
    return path.join(this.dir, name);
  }

  /** Starts dockerd with daemon.json as it is now and waits until it serves its socket. */
  async start(): Promise<void> {
    for (const d of [SHIM_SOCKET_ROOT, `${SHIM_SOCKET_ROOT}/s`, ...PLUGIN_DIRS]) if (!fs.existsSync(d)) this.madeDirs.push(d);
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.opts.env, TMPDIR: this.sub('tmp') };
    delete env.XDG_RUNTIME_DIR;
    delete env.DOCKER_HOST;
    const cmd = [
      'nsenter',
      `--net=${this.opts.netns}`,
      DOCKERD,
      '--data-root',
      this.sub('data'),
      '--exec-root',
      this.sub('exec'),
      '-H',
      `unix://${this.socket}`,
      '--pidfile',
      this.sub('docker.pid'),
      '--config-file',
      this.configFile,
      '--cgroup-parent',
      this.cgroupParent,
      // The lab's namespaces are the network: no NAT, filter rules or sysctl changes.
      '--iptables=false',
      '--ip-masq=false',
      '--ip-forward=false',
      '--userland-proxy=false',
      '--storage-driver',
      'vfs',
      ...(this.opts.args ?? []),
    ];
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
    const end = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`dockerd exited with ${child.exitCode}; its log ends:\n${this.logTail()}`);
      const v = await this.docker(['version', '--format', '{{.Server.Version}}'], { timeout: 5000 }).catch(() => undefined);
      if (v?.exitCode === 0) break;
      if (Date.now() > end) throw new Error(`dockerd did not serve ${this.socket} within 30 s; its log ends:\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // timeout's child, dockerd itself (nsenter execs it): the one to stop with SIGTERM, which stops its containerd too.
    const children = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    this.daemonPid = Number(children[0]) || undefined;
  }

  logTail(lines = 15): string {
    return fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '';
  }

  /** Runs Debian's `docker` client against this daemon only (its own socket and client config). */
  async docker(args: string[], opts: { timeout?: number } = {}): Promise<DockerResult> {
    const r = await execa(DOCKER, args, {
      reject: false,
      stdin: 'ignore',
      timeout: opts.timeout ?? 60_000,
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: this.dir,
        DOCKER_HOST: `unix://${this.socket}`,
        DOCKER_CONFIG: this.sub('client'),
      },
      extendEnv: false,
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  async must(args: string[], opts: { timeout?: number } = {}): Promise<string> {
    const r = await this.docker(args, opts);
    if (r.exitCode !== 0)
      throw new Error(
        `docker ${args.join(' ')} failed (${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}\ndockerd's log ends:\n${this.logTail(5)}`,
      );
    return r.stdout;
  }

  /** `docker load` of an archive; returns the images' repository:tag names now known. */
  async load(file: string): Promise<string[]> {
    await this.must(['load', '-q', '-i', file], { timeout: 60_000 });
    return (await this.must(['images', '--format', '{{.Repository}}:{{.Tag}}'])).split('\n').filter(Boolean);
  }

  /** `docker inspect` of one object. */
  async inspect(id: string): Promise<Record<string, any>> {
    return (JSON.parse(await this.must(['inspect', id])) as Record<string, any>[])[0];
  }

  /** Ids of all containers, running or not. */
  async containerIds(): Promise<string[]> {
    return (await this.must(['ps', '-aq', '--no-trunc'])).split('\n').filter(Boolean);
  }

  /**
   * Removes the containers left (their poststop hooks run while the caller's brokers still do), stops
   * dockerd (and so its containerd), kills what is left, unmounts what is mounted below dir, removes
   * the cgroups and dir.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const d = this.daemon;
    if (d && d.exitCode === null) {
      const ids = await this.containerIds().catch(() => [] as string[]);
      if (ids.length > 0) await this.docker(['rm', '-f', ...ids], { timeout: 30_000 }).catch(() => {});
    }
    if (d) {
      if (this.daemonPid) killQuietly(this.daemonPid, 'SIGTERM');
      else d.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (this.daemonPid) killQuietly(this.daemonPid, 'SIGKILL');
        d.kill('SIGKILL');
      }, 10_000);
      await d.catch(() => {});
      clearTimeout(timer);
    }
    scrub(this.dir);
    await removeCgroupTree(this.cgroupParent);
    removeEmptyDirs(this.madeDirs);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
