// `--profile`, the syscall part: conn-1 once more per path with a fixed count of connections, the
// client under `strace -f -c`, strace attached to its echo server and to both brokers meanwhile.
// Counts only: strace slows every call down, so the CPU and latency figures come from the ordinary
// samples (bench/budget.ts).
import path from 'node:path';
import type { BenchLab } from './lab.js';
import { type ConnrateResult, parseConnrate, type PathName } from './measure.js';
import { attach, type Attached, readSummary, straceCommand, type StraceSummary } from './strace.js';
import { echoConnections } from './workloads.js';

export const PROCESSES = ['client', 'server', 'broker1', 'broker2'] as const;
export type ProcessRole = (typeof PROCESSES)[number];

export interface SyscallBudget {
  pid?: number;
  /** syscalls per connection, and how many of them failed (EAGAIN, EINPROGRESS, …) */
  per_conn: number;
  errors_per_conn: number;
  /** every syscall seen, per connection, most first */
  calls: Record<string, number>;
  /** calls strace counted in the traced window */
  counted: number;
}

export type TracedRun = Record<ProcessRole, SyscallBudget>;

/**
 * How long the attached straces go on counting after the client exits: the sending broker restocks
 * the pools the last connections took from a moment later.
 */
const SETTLE_MS = 300;
const CLIENT_TIMEOUT_MS = 90_000;

/** Per-connection counts: (a − b) / n per syscall, b being what to take out (e.g. start-up). */
export function perConnection(a: StraceSummary, n: number, b?: StraceSummary): Omit<SyscallBudget, 'pid'> {
  const sub = new Map((b?.syscalls ?? []).map((r) => [r.name, r]));
  const calls: Record<string, number> = {};
  let errors = 0;
  for (const r of a.syscalls) {
    const x = Math.max(0, r.calls - (sub.get(r.name)?.calls ?? 0)) / n;
    if (x > 0) calls[r.name] = x;
    errors += Math.max(0, r.errors - (sub.get(r.name)?.errors ?? 0)) / n;
  }
  const sorted = Object.fromEntries(Object.entries(calls).sort((x, y) => y[1] - x[1]));
  return { per_conn: Object.values(calls).reduce((s, x) => s + x, 0), errors_per_conn: errors, calls: sorted, counted: a.calls };
}

/**
 * Syscalls per connection of conn-1 over one path, per process. The client's start-up (exec, the
 * loader, the preload's set-up, its first connection) is taken out by subtracting a one-connection
 * run's counts: (C(n) − C(1)) / (n − 1). The server and the brokers are counted while the n
 * connections run (plus SETTLE_MS), divided by n; their idle work in that time is included.
 */
export async function traceConnections(lab: BenchLab, which: PathName, n: number): Promise<TracedRun> {
  const file = (role: string) => path.join(lab.topo.dir, `strace-${which}-${role}.txt`);
  const client = async (count: number, out: string): Promise<StraceSummary> => {
    const e = echoConnections(lab, which, count);
    const r = await lab.runWrapped(e.client, straceCommand(out), e.cmd, CLIENT_TIMEOUT_MS);
    if (r.timedOut) throw new Error(`connrate under strace did not finish within ${CLIENT_TIMEOUT_MS / 1000} s`);
    let j: ConnrateResult;
    try {
      j = parseConnrate(r.stdout);
    } catch {
      throw new Error(`connrate under strace exited with ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-300)}`);
    }
    if (j.errors || j.conns !== count)
      throw new Error(`connrate under strace made ${j.conns} of ${count} connections, ${j.errors} errors (${j.first_error})`);
    return readSummary(out);
  };

  const startup = await client(1, file('client-1'));
  const e = echoConnections(lab, which, n);
  const pids = {
    server: lab.findProcess(e.server, e.serverArgv),
    ...Object.fromEntries((await lab.brokerPids()).map((p, i) => [`broker${i + 1}`, p])),
  } as Record<Exclude<ProcessRole, 'client'>, number>;
  const attached: [Exclude<ProcessRole, 'client'>, Attached][] = [];
  try {
    for (const role of ['server', 'broker1', 'broker2'] as const)
      attached.push([role, await attach(pids[role], file(role), (c) => lab.topo.adopt(c))]);
    const all = await client(n, file('client'));
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const out = { client: perConnection(all, n - 1, startup) } as TracedRun;
    for (const [role, a] of attached) out[role] = { pid: a.pid, ...perConnection(await a.detach(), n) };
    return out;
  } finally {
    for (const [, a] of attached) a.kill(); // no-op once detached
  }
}
