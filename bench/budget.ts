// `--profile`: the per-connection budget of conn-1 per path — syscalls per process (traced runs,
// bench/profile.ts), CPU µs per process and softirq (the ordinary samples, without strace), and the
// client's µs per phase (connrate's own timing) — as the JSON's `profile` and as tables.
import { median, PATHS, type PathName } from './measure.js';
import { PROCESSES, type ProcessRole, type TracedRun } from './profile.js';
import { fmt } from './stats.js';
import { aligned, md, type Sample } from './report.js';

/** The CPU parts: the client (cpuwrap), the processes a sample names (server, brokers), the rest of the lab, softirq. */
export const CPU_PARTS = ['client', 'server', 'broker1', 'broker2', 'other', 'softirq', 'total'] as const;
export type CpuPart = (typeof CPU_PARTS)[number];

export const PHASES = ['connect_p50', 'rtt_p50', 'close_p50', 'loop'] as const;
export type Phase = (typeof PHASES)[number];

export interface PathBudget {
  /** per process, from the traced run; absent when it failed (see error) */
  syscalls?: TracedRun;
  /** CPU µs per connection: all rounds' CPU over all rounds' connections, so the parts add up to total */
  cpu_us?: Record<CpuPart, number>;
  cpu_connections: number;
  /** the client's µs: medians of the rounds' p50s; loop = 1 / rate (one whole connection) */
  phases_us?: Record<Phase, number>;
  error?: string;
}

export interface ProfileResult {
  workload: string;
  /** connections per traced run */
  traced_connections: number;
  paths: Partial<Record<PathName, PathBudget>>;
}

/** Builds the budget from the workload's samples (with their per-process CPU) and the traced runs. */
export function buildProfile(workload: string, samples: Sample[], traced: Map<PathName, TracedRun | Error>, n: number): ProfileResult {
  const paths: ProfileResult['paths'] = {};
  for (const p of PATHS) {
    const ok = samples.filter((s) => s.path === p && !s.error && s.cpu?.processes);
    const b: PathBudget = { cpu_connections: ok.reduce((a, s) => a + s.ops, 0) };
    if (ok.length) {
      const sum = (f: (s: Sample) => number) => (ok.reduce((a, s) => a + f(s), 0) * 1e6) / b.cpu_connections;
      const proc = (role: string) => (s: Sample) => s.cpu!.processes![role] ?? 0;
      const named = (s: Sample) => Object.values(s.cpu!.processes!).reduce((a, x) => a + x, 0);
      b.cpu_us = {
        client: sum((s) => s.cpu!.clients_s),
        server: sum(proc('server')),
        broker1: sum(proc('broker1')),
        broker2: sum(proc('broker2')),
        other: sum((s) => s.cpu!.tasks_s - named(s)),
        softirq: sum((s) => s.cpu!.softirq_s),
        total: sum((s) => s.cpu!.total_s),
      };
      const med = (f: (s: Sample) => number) => median(ok.map(f).filter((x) => Number.isFinite(x)));
      b.phases_us = {
        connect_p50: med((s) => s.metrics.connect_p50),
        rtt_p50: med((s) => s.metrics.rtt_p50),
        close_p50: med((s) => s.metrics.close_p50),
        loop: med((s) => 1e6 / s.metrics.rate),
      };
    }
    const t = traced.get(p);
    if (t instanceof Error) b.error = t.message;
    else if (t) b.syscalls = t;
    paths[p] = b;
  }
  return { workload, traced_connections: n, paths };
}

// ---------------------------------------------------------------------------------------------
// Tables: one line per budget item, the three paths side by side and SlimFast's difference to each.

export const BUDGET_HEAD = ['per connection', 'item', 'host', 'VXLAN', 'SlimFast', 'SlimFast − host', 'SlimFast − VXLAN'];
export const SYSCALL_HEAD = ['process', 'syscall', 'host', 'VXLAN', 'SlimFast', 'SlimFast − host', 'SlimFast − VXLAN'];

const PROCESS_LABEL: Record<ProcessRole, string> = {
  client: 'client (connrate)',
  server: 'server (echod)',
  broker1: 'host 1 broker',
  broker2: 'host 2 broker',
};
const CPU_LABEL: Record<CpuPart, string> = { ...PROCESS_LABEL, other: 'other lab processes', softirq: 'softirq (machine)', total: 'total' };
const PHASE_LABEL: Record<Phase, string> = {
  connect_p50: 'connect p50 (socket, setsockopt, connect)',
  rtt_p50: 'request/response p50 (send, recv)',
  close_p50: 'close() p50',
  loop: 'whole connection (1 / rate)',
};

/** A syscall gets its own line when some path makes at least this many per connection. */
const MIN_LINE = 0.05;
const MAX_LINES = 12;

type Format = (x: number) => string;
/** Calls per connection: two decimals, below 0.1 two significant digits (the idle calls of a broker). */
const calls: Format = (x) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(2));
const num = (x: number | undefined, f: Format) => (x === undefined || !Number.isFinite(x) ? '–' : x === 0 ? '0' : f(x));
const diff = (a: number | undefined, b: number | undefined, f: Format) => {
  if (a === undefined || b === undefined || !Number.isFinite(a - b)) return '–';
  const d = a - b;
  return Math.abs(d) < 1e-4 ? '0' : `${d > 0 ? '+' : '−'}${f(Math.abs(d))}`;
};
const line = (group: string, item: string, v: (p: PathName) => number | undefined, f: Format = fmt) => {
  const [h, x, s] = PATHS.map(v);
  return [group, item, num(h, f), num(x, f), num(s, f), diff(s, h, f), diff(s, x, f)];
};

export function budgetRows(prof: ProfileResult): string[][] {
  const at = (p: PathName) => prof.paths[p];
  const rows: string[][] = [];
  for (const r of PROCESSES) rows.push(line('syscalls', PROCESS_LABEL[r], (p) => at(p)?.syscalls?.[r].per_conn, calls));
  rows.push(
    line(
      'syscalls',
      'all four',
      (p) => {
        const s = at(p)?.syscalls;
        return s ? PROCESSES.reduce((a, r) => a + s[r].per_conn, 0) : undefined;
      },
      calls,
    ),
  );
  for (const c of CPU_PARTS) rows.push(line('CPU µs', CPU_LABEL[c], (p) => at(p)?.cpu_us?.[c]));
  for (const ph of PHASES) rows.push(line('client µs', PHASE_LABEL[ph], (p) => at(p)?.phases_us?.[ph]));
  return rows;
}

/** Per process, its syscalls that reach MIN_LINE per connection on some path (at most MAX_LINES), then the rest. */
export function syscallRows(prof: ProfileResult): string[][] {
  const rows: string[][] = [];
  for (const r of PROCESSES) {
    const of = (p: PathName) => prof.paths[p]?.syscalls?.[r].calls;
    const names = new Map<string, number>();
    for (const p of PATHS) for (const [name, x] of Object.entries(of(p) ?? {})) names.set(name, Math.max(names.get(name) ?? 0, x));
    const shown = [...names]
      .filter(([, x]) => x >= MIN_LINE)
      .sort((a, b) => b[1] - a[1])
      .slice(0, MAX_LINES)
      .map(([name]) => name);
    for (const name of shown) rows.push(line(PROCESS_LABEL[r], name, (p) => (of(p) ? (of(p)![name] ?? 0) : undefined), calls));
    const rest = (p: PathName) => {
      const c = of(p);
      return c
        ? Object.entries(c)
            .filter(([name]) => !shown.includes(name))
            .reduce((a, [, x]) => a + x, 0)
        : undefined;
    };
    if (PATHS.some((p) => (rest(p) ?? 0) > 0)) rows.push(line(PROCESS_LABEL[r], '(the others)', rest, calls));
  }
  return rows;
}

export function profileErrors(prof: ProfileResult): string[] {
  return PATHS.flatMap((p) => (prof.paths[p]?.error ? [`profile over ${p}: ${prof.paths[p]!.error}`] : []));
}

export function textBudgetTable(prof: ProfileResult): string {
  return aligned(BUDGET_HEAD, budgetRows(prof), true);
}

export function markdownBudgetTable(prof: ProfileResult): string {
  return md(BUDGET_HEAD, budgetRows(prof));
}

export function textSyscallTable(prof: ProfileResult): string {
  return aligned(SYSCALL_HEAD, syscallRows(prof), true);
}

export function markdownSyscallTable(prof: ProfileResult): string {
  return md(SYSCALL_HEAD, syscallRows(prof));
}
