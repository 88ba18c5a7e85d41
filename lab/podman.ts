// Real Podman containers for the lab, kept apart from the machine's Podman: their own storage (vfs, so no
// overlay mounts to leak), runroot, libpod tmp dir, events log, network config dir and hooks directories,
// set in the containers.conf files it writes (CONTAINERS_CONF). Images come from a local root filesystem
// (`podman import`), never a registry. Containers join network namespaces the lab made (--network ns:PATH).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { create as createTar } from 'tar';
import { pidAlive } from '../common/state-dir.js';
import { unmountUnder } from './procs.js';

export const PODMAN = process.env.SLIMFAST_TEST_PODMAN ?? '/usr/bin/podman';
/** The lab's plain containers.conf, NAME.conf in its directory. */
const DEFAULT_CONF = 'default';

export interface PodmanResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface PodmanRunOptions {
  /** Network namespace to join (podman run --network ns:PATH). */
  netns: string;
  /** --hooks-dir DIR (Podman then reads no other hooks directory). */
  hooksDir?: string;
  /** --runtime PATH, e.g. slimfast-runc. */
  runtime?: string;
  /** A containers.conf from conf() (default: the lab's plain one), used for this container from then on. */
  conf?: string;
}

interface Managed {
  name: string;
  conf: string;
}

/** podman's global flags for a lab directory: everything under it. */
function globals(dir: string): string[] {
  return [
    '--root',
    path.join(dir, 'root'),
    '--runroot',
    path.join(dir, 'runroot'),
    '--tmpdir',
    path.join(dir, 'tmp'),
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
  ];
}

/**
 * Removes the containers a killed earlier run left in its os.tmpdir()/sftPIDx… lab directory (their
 * brokers are gone: the poststop hooks fail, Podman removes them anyway) and unmounts what is left there,
 * so that sweepStale() can remove the directory.
 */
export async function sweepStalePodman(): Promise<void> {
  for (const entry of fs.readdirSync(os.tmpdir())) {
    const m = /^sft(\d+)x/.exec(entry);
    if (!m || pidAlive(Number(m[1]))) continue;
    const dir = path.join(os.tmpdir(), entry);
    if (fs.existsSync(path.join(dir, 'root')) && fs.existsSync(path.join(dir, `${DEFAULT_CONF}.conf`))) {
      await execa(PODMAN, [...globals(dir), 'rm', '-a', '-f', '-t', '0'], {
        env: { CONTAINERS_CONF: path.join(dir, `${DEFAULT_CONF}.conf`) },
        reject: false,
        stdin: 'ignore',
        timeout: 60_000,
      });
    }
    unmountUnder(dir);
  }
}

/** One Podman installation for a test run: storage, configuration and the containers it made. */
export class PodmanLab {
  readonly dir: string;
  private readonly containers = new Map<string, Managed>();
  private readonly defaultConf: string;

  /** dir: an empty directory of this run (os.tmpdir()/sftPIDx…, so that a killed run's is swept). */
  constructor(dir: string) {
    if (!fs.existsSync(PODMAN)) throw new Error(`${PODMAN} is missing: apt-get install podman (see ci/packages.txt)`);
    this.dir = dir;
    for (const d of ['root', 'runroot', 'tmp', 'copy-tmp', 'net', 'no-hooks']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    this.defaultConf = this.conf(DEFAULT_CONF);
  }

  /** Writes containers.conf NAME.conf; runtimeEnv goes to `conmon_env_vars`, the only environment Podman gives the runtime. */
  conf(name: string, runtimeEnv: string[] = []): string {
    const q = (s: string) => JSON.stringify(s);
    const text = [
      '[containers]',
      // Podman's defaults (1048576 files and processes) can exceed the hard limits it runs with, which runc
      // cannot raise without CAP_SYS_RESOURCE ("error setting rlimit type 6: operation not permitted").
      'default_ulimits = ["nofile=10000:10000", "nproc=10000:10000"]',
      'log_driver = "k8s-file"',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${q(path.join(this.dir, 'events.log'))}`,
      `image_copy_tmp_dir = ${q(path.join(this.dir, 'copy-tmp'))}`,
      // Not the machine's /etc/containers/oci/hooks.d: a run without --hooks-dir sees no hooks at all.
      `hooks_dir = [${q(path.join(this.dir, 'no-hooks'))}]`,
      `conmon_env_vars = [${['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...runtimeEnv].map(q).join(', ')}]`,
      '[network]',
      `network_config_dir = ${q(path.join(this.dir, 'net'))}`,
      '',
    ].join('\n');
    const file = path.join(this.dir, `${name}.conf`);
    fs.writeFileSync(file, text);
    return file;
  }

  /** Runs `podman GLOBALS ARGS` with the given containers.conf. */
  async podman(args: string[], opts: { conf?: string; timeout?: number } = {}): Promise<PodmanResult> {
    const r = await execa(PODMAN, [...globals(this.dir), ...args], {
      env: { CONTAINERS_CONF: opts.conf ?? this.defaultConf },
      reject: false,
      stdin: 'ignore',
      timeout: opts.timeout ?? 60_000,
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  private async must(args: string[], opts: { conf?: string; timeout?: number } = {}): Promise<string> {
    const r = await this.podman(args, opts);
    if (r.exitCode !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout.trim();
  }

  /**
   * Imports a root filesystem directory as image `tag` (tarred with the tar package). Podman 4.3 still
   * writes its blob info cache to /var/lib/containers/cache: no flag moves it.
   */
  async importRootfs(rootfs: string, tag: string): Promise<void> {
    const file = path.join(this.dir, `${path.basename(rootfs)}.tar`);
    await createTar({ file, cwd: rootfs, portable: false }, ['.']);
    await this.must(['import', '--quiet', file, tag], { timeout: 120_000 });
    fs.rmSync(file, { force: true });
  }

  /** `podman run -d` of image as container `name`; returns the container's full id. */
  async run(name: string, image: string, cmd: string[], opts: PodmanRunOptions): Promise<string> {
    if (this.containers.has(name)) throw new Error(`podman container ${name} exists already`);
    const conf = opts.conf ?? this.defaultConf;
    this.containers.set(name, { name, conf });
    const flags = [
      '-d',
      '--rm=false',
      '--pull',
      'never',
      '--name',
      name,
      '--network',
      `ns:${opts.netns}`,
      ...(opts.hooksDir ? ['--hooks-dir', opts.hooksDir] : []),
      ...(opts.runtime ? ['--runtime', opts.runtime] : []),
    ];
    return this.must(['run', ...flags, image, ...cmd], { conf });
  }

  private managed(name: string): Managed {
    const m = this.containers.get(name);
    if (!m) throw new Error(`no podman container ${name} in this lab`);
    return m;
  }

  /** `podman exec [FLAGS] NAME CMD…`. */
  exec(name: string, cmd: string[], opts: { flags?: string[]; timeout?: number } = {}): Promise<PodmanResult> {
    const m = this.managed(name);
    return this.podman(['exec', ...(opts.flags ?? []), name, ...cmd], { conf: m.conf, timeout: opts.timeout });
  }

  async logs(name: string): Promise<PodmanResult> {
    return this.podman(['logs', name], { conf: this.managed(name).conf });
  }

  /** `podman rm -f -t 0` (a container's init ignores SIGTERM: no 10 s grace period). */
  async rm(name: string): Promise<PodmanResult> {
    const r = await this.podman(['rm', '-f', '-t', '0', name], { conf: this.managed(name).conf });
    if (r.exitCode === 0) this.containers.delete(name);
    return r;
  }

  /** Removes every container still here, unmounts what Podman left and removes the directory. */
  async destroy(): Promise<void> {
    for (const name of [...this.containers.keys()]) await this.rm(name).catch(() => undefined);
    await this.podman(['rm', '-a', '-f', '-t', '0'], { timeout: 60_000 }).catch(() => undefined);
    unmountUnder(this.dir);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
