// Ending what a lab (or a killed earlier run of it) left running.
import fs from 'node:fs';
import { execa } from 'execa';

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
