// Ending what a lab (or a killed earlier run of it) left running: processes, mounts, shim sockets, cgroups.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';

export function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

/** Pids of processes whose argv satisfies match. */
export function processes(match: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const e of safeReaddir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (match(argv)) pids.push(Number(e));
    } catch {
      // gone
    }
  }
  return pids;
}

function mountsUnder(dir: string): string[] {
  const found = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)));
  return [...new Set(found)].sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below dir, deepest first. */
export function unmountUnder(dir: string): void {
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m], { stdio: 'ignore', timeout: 10_000 });
}

export const SHIM_SOCKET_ROOT = '/run/containerd';

/**
 * Shim sockets (in /run/containerd/s) recorded in the runc v2 task state of the labs at or one level
 * below dir; taskDir(lab) is where a lab's containerd keeps io.containerd.runtime.v2.task.
 */
export function shimSockets(dir: string, taskDir: (lab: string) => string): string[] {
  const found: string[] = [];
  for (const lab of [dir, ...safeReaddir(dir).map((e) => path.join(dir, e))]) {
    const tasks = taskDir(lab);
    for (const ns of safeReaddir(tasks)) {
      for (const id of safeReaddir(path.join(tasks, ns))) {
        try {
          const addr = fs
            .readFileSync(path.join(tasks, ns, id, 'address'), 'utf8')
            .trim()
            .replace(/^unix:\/\//, '');
          if (addr.startsWith(`${SHIM_SOCKET_ROOT}/s/`)) found.push(addr);
        } catch {
          // no shim socket recorded
        }
      }
    }
  }
  return found;
}

/** The cgroup directories named `name` (a path below the root) in every hierarchy (v1 controllers, or v2). */
export function cgroupDirs(name: string): string[] {
  const root = '/sys/fs/cgroup';
  const hierarchies = fs.existsSync(path.join(root, 'cgroup.controllers')) ? [root] : safeReaddir(root).map((d) => path.join(root, d));
  return hierarchies.map((h) => path.join(h, name)).filter((d) => fs.existsSync(d));
}

/** SIGKILL to every pid (numbers, or the lines of a pid list); those already gone are skipped. */
export function killAll(pids: Iterable<number | string>): void {
  for (const p of pids) {
    const pid = Number(p);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Kills every process in network namespace ns (`ip netns pids`). */
export async function killNetns(ns: string): Promise<void> {
  const r = await execa('ip', ['netns', 'pids', ns], { reject: false });
  killAll(String(r.stdout).split('\n').filter(Boolean));
}

/**
 * Removes a directory that empties itself soon (a cgroup whose killed processes are being reaped):
 * up to `tries` attempts 100 ms apart; gone already is fine.
 */
export async function rmdirWhenEmpty(dir: string, tries: number): Promise<void> {
  for (let i = 0; i < tries; i++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
