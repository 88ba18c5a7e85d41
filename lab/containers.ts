// Real OCI containers for the lab: a root filesystem from busybox-static plus chosen host binaries
// (with every shared library they load), an OCI bundle from `runc spec` that joins a network namespace
// the lab made (veth and IP already configured, as CNI leaves it for the runtime), and slimfast-runc
// run/exec/kill/delete/state against one host's broker. Every container lives under a runc root inside
// the topology's directory and is deleted (--force) when the topology is destroyed.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ResultPromise, execa } from 'execa';
import { installPaths } from '../common/paths.js';
import { pidAlive } from '../common/state-dir.js';
import { killAll, rmdirWhenEmpty } from './procs.js';
import type { Host, Topology } from './topology.js';

export const REAL_RUNC = process.env.SLIMFAST_TEST_RUNC ?? '/usr/sbin/runc';
export const SLIMFAST_RUNC = installPaths().runc;

const DEFAULT_APPLETS = ['sh', 'sleep', 'cat', 'env', 'echo', 'timeout', 'true', 'ls'];

/** The host's busybox, when it is statically linked (it runs in any root filesystem). */
export function staticBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!fs.existsSync(p)) continue;
    const ldd = spawnSync('ldd', [p], { encoding: 'utf8' });
    if (/not a dynamic executable|statically linked/.test(`${ldd.stdout}${ldd.stderr}`)) return p;
  }
  throw new Error('a static busybox is needed for container tests: apt-get install busybox-static');
}

/** Absolute paths of the shared libraries (and the dynamic loader) a binary or library loads, per ldd. */
export function sharedLibraries(file: string): string[] {
  const r = spawnSync('ldd', [file], { encoding: 'utf8' });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (/not a dynamic executable|statically linked/.test(text)) return [];
  if (r.status !== 0) throw new Error(`ldd ${file} failed: ${text}`);
  const libs = new Set<string>();
  for (const line of text.split('\n')) {
    if (/not found/.test(line)) throw new Error(`ldd ${file}: ${line.trim()}`);
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.add(m[1]);
  }
  return [...libs];
}

/** Copies a host file to the same path under root (symlinks followed), keeping the mode. */
function copyInto(root: string, file: string): void {
  const dest = path.join(root, file);
  if (fs.existsSync(dest)) return;
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(file, dest);
  fs.chmodSync(dest, fs.statSync(file).mode & 0o7777);
}

export interface RootfsOptions {
  /** busybox applets linked in /bin (busybox itself is always /bin/busybox). */
  applets?: string[];
  /** Host binaries copied to the same paths, with their shared libraries. */
  binaries?: string[];
  /** Extra libraries whose dependencies must be present, e.g. one loaded through LD_PRELOAD (not copied themselves). */
  libraryDeps?: string[];
}

/** A root filesystem at dir: /bin/busybox with applet links, the given binaries and their libraries. */
export function makeRootfs(dir: string, opts: RootfsOptions = {}): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.copyFileSync(staticBusybox(), path.join(bin, 'busybox'));
  fs.chmodSync(path.join(bin, 'busybox'), 0o755);
  for (const a of opts.applets ?? DEFAULT_APPLETS) {
    if (!fs.existsSync(path.join(bin, a))) fs.symlinkSync('busybox', path.join(bin, a));
  }
  for (const d of ['proc', 'dev', 'sys', 'tmp', 'etc']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  for (const b of opts.binaries ?? []) {
    const abs = path.resolve(b);
    copyInto(dir, abs);
    for (const lib of sharedLibraries(abs)) copyInto(dir, lib);
  }
  for (const l of opts.libraryDeps ?? []) for (const lib of sharedLibraries(path.resolve(l))) copyInto(dir, lib);
  return dir;
}

export interface BundleOptions extends RootfsOptions {
  args: string[];
  /** Network namespace to join (a path such as /run/netns/NAME); without it the container gets a new one. */
  netns?: string;
  env?: string[];
}

/** An OCI bundle at dir (config.json from `runc spec`, rootfs/) running args in an existing network namespace. */
export function makeBundle(dir: string, opts: BundleOptions): string {
  makeRootfs(path.join(dir, 'rootfs'), opts);
  const r = spawnSync(REAL_RUNC, ['spec', '--bundle', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`runc spec failed: ${r.stderr}`);
  const file = path.join(dir, 'config.json');
  const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
  spec.process.terminal = false;
  spec.process.args = opts.args;
  spec.process.env = [...spec.process.env.filter((e: string) => !e.startsWith('TERM=')), ...(opts.env ?? [])];
  spec.root.readonly = true;
  spec.hostname = path.basename(dir).slice(0, 60);
  const namespaces = (spec.linux.namespaces as { type: string; path?: string }[]).filter((n) => n.type !== 'user' && n.type !== 'network');
  namespaces.push(opts.netns ? { type: 'network', path: opts.netns } : { type: 'network' });
  spec.linux.namespaces = namespaces;
  fs.writeFileSync(file, JSON.stringify(spec, null, '\t'));
  return dir;
}

export interface RuncResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

interface Managed {
  id: string;
  host: Host;
  bundle: string;
}

/**
 * runc containers of one topology, run through slimfast-runc against each host's broker. Ids carry the
 * topology id; destroy() (registered with the topology) kills and deletes every one of them.
 */
export class RuncLab {
  readonly root: string;
  private readonly containers = new Map<string, Managed>();

  constructor(readonly topo: Topology) {
    this.root = path.join(topo.dir, 'runc');
    fs.mkdirSync(this.root, { recursive: true });
    topo.onDestroy(() => this.destroy());
  }

  /** The container id for a short name: unique per topology (and so per run). */
  id(name: string): string {
    return `${this.topo.id}-${name}`;
  }

  /** Environment for slimfast-runc acting for host h. */
  env(h: Host): NodeJS.ProcessEnv {
    return { ...process.env, SLIMFAST_STATE_DIR: h.stateDir, SLIMFAST_RUNC: REAL_RUNC, SLIMFAST_HOOK_TIMEOUT: '10' };
  }

  private managed(name: string): Managed {
    const m = this.containers.get(name);
    if (!m) throw new Error(`no runc container ${name} in this lab`);
    return m;
  }

  /** Runs `slimfast-runc --root ROOT ARGS` (or the real runc with real=true) for host h. */
  async runc(h: Host, args: string[], opts: { real?: boolean; timeout?: number } = {}): Promise<RuncResult> {
    const r = await execa(opts.real ? REAL_RUNC : SLIMFAST_RUNC, ['--root', this.root, ...args], {
      env: this.env(h),
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: opts.timeout ?? 60_000,
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /**
   * `slimfast-runc run -d` of bundle as container `name` on host h. The container's stdout and stderr go
   * to files (a detached container keeps runc's stdio, so they must not be pipes we wait on).
   */
  async run(h: Host, name: string, bundle: string): Promise<{ id: string; pid: number; stdout: string; stderr: string }> {
    const id = this.id(name);
    if (this.containers.has(name)) throw new Error(`runc container ${name} exists already`);
    this.containers.set(name, { id, host: h, bundle });
    const out = path.join(this.topo.dir, `${id}.out`);
    const err = path.join(this.topo.dir, `${id}.err`);
    const pidFile = path.join(this.topo.dir, `${id}.pid`);
    const log = path.join(this.topo.dir, `${id}.runc.log`);
    // Plain file descriptors, not pipes: the detached container keeps runc's stdio open.
    const outFd = fs.openSync(out, 'w');
    const errFd = fs.openSync(err, 'w');
    let exitCode: number;
    try {
      exitCode = await new Promise<number>((resolve, reject) => {
        const child = spawn(SLIMFAST_RUNC, ['--root', this.root, '--log', log, 'run', '-d', '--pid-file', pidFile, '-b', bundle, id], {
          env: this.env(h),
          stdio: ['ignore', outFd, errFd],
        });
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.on('error', reject);
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          resolve(code ?? (signal ? -1 : 1));
        });
      });
    } finally {
      fs.closeSync(outFd);
      fs.closeSync(errFd);
    }
    if (exitCode !== 0) {
      const text = [err, log].map((f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '')).join('\n');
      throw new Error(`slimfast-runc run ${id} failed (${exitCode}): ${text.trim()}`);
    }
    return { id, pid: Number(fs.readFileSync(pidFile, 'utf8')), stdout: out, stderr: err };
  }

  /** `slimfast-runc exec ID ARGS…` (foreground, stdio captured). */
  exec(name: string, args: string[], opts: { timeout?: number; flags?: string[] } = {}): Promise<RuncResult> {
    const m = this.managed(name);
    return this.runc(m.host, ['exec', ...(opts.flags ?? []), m.id, ...args], { timeout: opts.timeout });
  }

  /**
   * `slimfast-runc exec ID ARGS…` in the background, for a server: the child to await or kill (runc
   * forwards the signal to the process). destroy() of the topology kills it if it is still running.
   */
  start(name: string, args: string[], opts: { timeout?: number } = {}): ResultPromise<{ reject: false; stdin: 'ignore' }> {
    const m = this.managed(name);
    const child = execa(SLIMFAST_RUNC, ['--root', this.root, 'exec', m.id, ...args], {
      env: this.env(m.host),
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: opts.timeout ?? 60_000,
    });
    this.topo.adopt(child);
    return child;
  }

  state(name: string, opts: { real?: boolean } = {}): Promise<RuncResult> {
    const m = this.managed(name);
    return this.runc(m.host, ['state', m.id], opts);
  }

  async status(name: string): Promise<string | undefined> {
    const r = await this.state(name);
    if (r.exitCode !== 0) return undefined;
    return (JSON.parse(r.stdout) as { status: string }).status;
  }

  kill(name: string, signal = 'KILL'): Promise<RuncResult> {
    const m = this.managed(name);
    return this.runc(m.host, ['kill', m.id, signal]);
  }

  /** Waits (bounded) until the container has stopped. */
  async waitStopped(name: string, timeoutMs = 10_000): Promise<void> {
    await this.topo.waitFor(async () => (await this.status(name)) === 'stopped', timeoutMs, `runc container ${name} to stop`);
  }

  async delete(name: string, force = false): Promise<RuncResult> {
    const m = this.managed(name);
    const r = await this.runc(m.host, ['delete', ...(force ? ['--force'] : []), m.id]);
    if (r.exitCode === 0) this.containers.delete(name);
    return r;
  }

  /** Kills and deletes every container still here, then removes the runc root. */
  async destroy(): Promise<void> {
    for (const [name, m] of [...this.containers]) {
      const r = await this.runc(m.host, ['delete', '--force', m.id], { timeout: 30_000 }).catch(() => undefined);
      // Not through slimfast-runc/hooks: whatever is left, the real runc removes.
      if (r?.exitCode !== 0) await this.runc(m.host, ['delete', '--force', m.id], { real: true, timeout: 30_000 }).catch(() => {});
      this.containers.delete(name);
    }
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** True for a runc container id of this lab (TOPOLOGYID-NAME) whose test process is gone. */
function staleId(name: string): boolean {
  const m = /^sft(\d+)x[0-9a-z]+-[\w.-]+$/.exec(name);
  return m !== null && !pidAlive(Number(m[1]));
}

/** Cgroup directories named like a stale container id, at most `depth` levels below dir. */
function staleCgroupDirs(dir: string, depth: number, found: string[] = []): string[] {
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const p = path.join(dir, e.name);
    if (staleId(e.name)) found.push(p);
    else if (depth > 0) staleCgroupDirs(p, depth - 1, found);
  }
  return found;
}

/**
 * Removes what runc containers of a killed earlier run left behind: `runc delete --force` for those
 * still in its topology directory (os.tmpdir()/sftPIDx…/runc), then, since another run's sweepStale()
 * may have removed that directory first, kills every process in a cgroup named like a stale container
 * id (runc names cgroups after the container) and removes those cgroups.
 */
export async function sweepStaleRunc(): Promise<void> {
  for (const entry of fs.readdirSync(os.tmpdir())) {
    const m = /^sft(\d+)x/.exec(entry);
    if (!m || pidAlive(Number(m[1]))) continue;
    const root = path.join(os.tmpdir(), entry, 'runc');
    let ids: string[] = [];
    try {
      ids = fs.readdirSync(root);
    } catch {
      continue;
    }
    for (const id of ids) spawnSync(REAL_RUNC, ['--root', root, 'delete', '--force', id], { stdio: 'ignore', timeout: 30_000 });
  }
  const dirs = staleCgroupDirs('/sys/fs/cgroup', 3);
  if (dirs.length === 0) return;
  for (const d of dirs) {
    let procs = '';
    try {
      procs = fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8');
    } catch {
      continue;
    }
    killAll(procs.split('\n').filter(Boolean));
  }
  // Deepest first; a cgroup is removable once its killed processes are reaped.
  for (const d of dirs.sort((a, b) => b.length - a.length)) await rmdirWhenEmpty(d, 20);
}

/** A process.json for `runc exec --process FILE`, as root in / with env (PATH=/bin unless given). */
export function writeProcessFile(file: string, args: string[], env: string[] = ['PATH=/bin']): string {
  fs.writeFileSync(file, JSON.stringify({ terminal: false, user: { uid: 0, gid: 0 }, cwd: '/', env, args }));
  return file;
}
