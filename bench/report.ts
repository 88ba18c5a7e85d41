// Results of a benchmark run: the JSON document, the terminal / Markdown table and the SVG chart.
import { ALL_PATHS, type BenchPath, PATHS, type PathName, median } from './measure.js';
import { fmt, fmtRatio, ratio, type Spread, spread } from './stats.js';
import type { MetricDef, Workload } from './workloads.js';
import type { BrokerCounters } from './lab.js';
import type { ProfileResult } from './budget.js';

export interface SampleCpu {
  /** lab processes (servers, brokers), from /proc/PID/stat */
  tasks_s: number;
  /** the clients, from cpuwrap's rusage */
  clients_s: number;
  /** softirq, whole machine, from /proc/stat */
  softirq_s: number;
  /** tasks + clients + softirq */
  total_s: number;
  steal_s: number;
  idle_s: number;
  wall_s: number;
  /** with --profile: seconds of the processes the workload names (e.g. server, broker1, broker2), part of tasks_s */
  processes?: Record<string, number>;
}

export interface Sample {
  round: number;
  /** position in the round (0-based) */
  order: number;
  path: BenchPath;
  metrics: Record<string, number>;
  ops: number;
  bytes?: number;
  cpu?: SampleCpu;
  vxlan_packets?: number;
  broker?: Partial<BrokerCounters>;
  errors: number;
  error?: string;
  seconds: number;
}

export const RATIOS = [
  ['slimfast_vs_host', 'slimfast', 'host'],
  ['slimfast_vs_vxlan', 'slimfast', 'vxlan'],
  ['vxlan_vs_host', 'vxlan', 'host'],
] as const;
export type RatioName = (typeof RATIOS)[number][0];

/** The seccomp path's ratios (workloads measured over it only): to the host and to the preload path. */
export const SECCOMP_RATIOS = [
  ['seccomp_vs_host', 'seccomp', 'host'],
  ['seccomp_vs_slimfast', 'seccomp', 'slimfast'],
] as const;
export type SeccompRatioName = (typeof SECCOMP_RATIOS)[number][0];

type PathSpread = Spread & { values: (number | null)[] };

export interface MetricResult extends MetricDef {
  paths: Record<PathName, PathSpread> & { seccomp?: PathSpread };
  ratios: Record<RatioName, Spread> & Partial<Record<SeccompRatioName, Spread>>;
}

/** The paths a workload is measured over. */
export function pathsOf(w: { seccomp?: boolean }): BenchPath[] {
  return w.seccomp ? [...ALL_PATHS] : [...PATHS];
}

export interface WorkloadResult {
  id: string;
  title: string;
  op: string;
  path_labels: Record<PathName, string> & { seccomp?: string };
  metrics: MetricResult[];
  errors: Record<PathName, number> & { seccomp?: number };
  first_errors: string[];
  /** CPU over all rounds of this workload, per path */
  cpu_total: Record<PathName, CpuTotal> & { seccomp?: CpuTotal };
  samples: Sample[];
}

export interface CpuTotal {
  cpu_s: number;
  tasks_s: number;
  clients_s: number;
  softirq_s: number;
  ops: number;
  per_op: number;
  unit: string;
}

export interface BenchResults {
  schema: 'slimfast-bench/1';
  date: string;
  commit: string | null;
  dirty: boolean | null;
  mode: 'quick' | 'full' | 'custom';
  machine: { cpus: number; cpu_model: string; kernel: string; memory_gb: number };
  settings: Record<string, number | string>;
  /** every path measured (the seccomp path for the workloads that have it) */
  paths: BenchPath[];
  duration_s: number;
  notes: string[];
  errors: string[];
  workloads: WorkloadResult[];
  /** with --profile: the per-connection budget (bench/budget.ts) */
  profile?: ProfileResult;
}

export function cpuMetric(w: Workload): MetricDef {
  return w.cpu === 'per_gb'
    ? { id: 'cpu', label: 'CPU per GB', unit: 'CPU s/GB', better: 'lower' }
    : {
        id: 'cpu',
        label: `CPU per ${w.op}`,
        unit: `CPU µs/${w.op === 'connection' ? 'conn' : w.op === 'operation' ? 'op' : 'req'}`,
        better: 'lower',
      };
}

export function summarize(w: Workload, samples: Sample[], rounds: number): WorkloadResult {
  const defs = [...w.metrics, cpuMetric(w)];
  const paths = pathsOf(w);
  const byPath = (p: BenchPath) => {
    const out: (Sample | undefined)[] = [];
    for (let r = 1; r <= rounds; r++) out.push(samples.find((s) => s.path === p && s.round === r && !s.error));
    return out;
  };
  const metrics: MetricResult[] = defs.map((d) => {
    const values = Object.fromEntries(
      paths.map((p) => [p, byPath(p).map((s) => (s && Number.isFinite(s.metrics[d.id]) ? s.metrics[d.id] : undefined))]),
    ) as Record<BenchPath, (number | undefined)[]>;
    const spreads = Object.fromEntries(
      paths.map((p) => [p, { ...spread(values[p].filter((v): v is number => v !== undefined)), values: values[p].map((v) => v ?? null) }]),
    ) as MetricResult['paths'];
    const pairs = [...RATIOS, ...(w.seccomp ? SECCOMP_RATIOS : [])];
    const ratios = Object.fromEntries(pairs.map(([name, a, b]) => [name, ratio(values[a], values[b])])) as MetricResult['ratios'];
    return { ...d, paths: spreads, ratios };
  });
  const errors = Object.fromEntries(
    paths.map((p) => [p, samples.filter((s) => s.path === p).reduce((n, s) => n + s.errors + (s.error ? 1 : 0), 0)]),
  ) as Record<PathName, number>;
  const first_errors = [...new Set(samples.filter((s) => s.error).map((s) => `${s.path}, round ${s.round}: ${s.error}`))].slice(0, 10);
  const cpu_total = Object.fromEntries(
    paths.map((p) => {
      const ok = samples.filter((s) => s.path === p && !s.error && s.cpu);
      const sum = (f: (s: Sample) => number) => ok.reduce((a, s) => a + f(s), 0);
      const cpu_s = sum((s) => s.cpu!.total_s);
      const ops = sum((s) => s.ops);
      const per_op = w.cpu === 'per_gb' ? cpu_s / ops : (cpu_s * 1e6) / ops;
      return [
        p,
        {
          cpu_s,
          tasks_s: sum((s) => s.cpu!.tasks_s),
          clients_s: sum((s) => s.cpu!.clients_s),
          softirq_s: sum((s) => s.cpu!.softirq_s),
          ops,
          per_op,
          unit: cpuMetric(w).unit,
        },
      ];
    }),
  ) as WorkloadResult['cpu_total'];
  return { id: w.id, title: w.title, op: w.op, path_labels: w.labels, metrics, errors, first_errors, cpu_total, samples };
}

// ---------------------------------------------------------------------------------------------
// Tables

const cell = (s: Spread) => (s.n === 0 ? '–' : s.n === 1 ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`);
const ocell = (s: Spread | undefined) => (s ? cell(s) : '–');
const orcell = (s: Spread | undefined) => (s ? rcell(s) : '–');
const rcell = (s: Spread) =>
  s.n === 0 || !Number.isFinite(s.median) ? '–' : s.n === 1 ? fmtRatio(s.median) : `${fmtRatio(s.median)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;

/** Whether any workload of the run was measured over the seccomp path (its columns are shown then). */
const hasSeccomp = (res: BenchResults) => res.workloads.some((w) => w.metrics.some((m) => m.paths.seccomp));

export function tableRows(res: BenchResults): string[][] {
  const rows: string[][] = [];
  const sc = hasSeccomp(res);
  for (const w of res.workloads) {
    for (const m of w.metrics) {
      rows.push([
        w.id,
        `${m.label} [${m.unit}]${m.better === 'lower' ? ' ↓' : ''}`,
        cell(m.paths.host),
        cell(m.paths.vxlan),
        cell(m.paths.slimfast),
        rcell(m.ratios.slimfast_vs_host),
        rcell(m.ratios.slimfast_vs_vxlan),
        rcell(m.ratios.vxlan_vs_host),
        ...(sc ? [ocell(m.paths.seccomp), orcell(m.ratios.seccomp_vs_host), orcell(m.ratios.seccomp_vs_slimfast)] : []),
      ]);
    }
  }
  return rows;
}

export const TABLE_HEAD = ['workload', 'metric', 'host', 'VXLAN', 'SlimFast', 'SlimFast / host', 'SlimFast / VXLAN', 'VXLAN / host'];
/** The seccomp path's columns, after TABLE_HEAD's when the run has that path. */
export const SECCOMP_HEAD = ['seccomp', 'seccomp / host', 'seccomp / SlimFast'];

const tableHead = (res: BenchResults) => [...TABLE_HEAD, ...(hasSeccomp(res) ? SECCOMP_HEAD : [])];

export function textTable(res: BenchResults): string {
  return aligned(tableHead(res), tableRows(res), true);
}

export function markdownTable(res: BenchResults): string {
  return md(tableHead(res), tableRows(res));
}

/** CPU over the whole run: all rounds' CPU seconds over all rounds' operations (or GB), per path. */
export const CPU_HEAD = ['workload', 'unit', 'host', 'VXLAN', 'SlimFast', 'SlimFast / host', 'SlimFast / VXLAN', 'VXLAN / host'];

export function cpuRows(res: BenchResults): string[][] {
  const sc = hasSeccomp(res);
  return res.workloads.map((w) => {
    const c = w.cpu_total;
    // a path whose samples all failed has no CPU per operation (0): no ratio either
    const r = (a: number, b: number) => (a > 0 && b > 0 ? fmtRatio(a / b) : '–');
    return [
      w.id,
      c.host.unit,
      fmt(c.host.per_op),
      fmt(c.vxlan.per_op),
      fmt(c.slimfast.per_op),
      r(c.slimfast.per_op, c.host.per_op),
      r(c.slimfast.per_op, c.vxlan.per_op),
      r(c.vxlan.per_op, c.host.per_op),
      ...(sc
        ? c.seccomp
          ? [fmt(c.seccomp.per_op), r(c.seccomp.per_op, c.host.per_op), r(c.seccomp.per_op, c.slimfast.per_op)]
          : ['–', '–', '–']
        : []),
    ];
  });
}

const cpuHead = (res: BenchResults) => [...CPU_HEAD, ...(hasSeccomp(res) ? SECCOMP_HEAD : [])];

export function aligned(head: string[], body: string[][], dedupeFirst: boolean): string {
  const rows = [head, ...body];
  const len = (c: string) => [...c].length;
  const widths = head.map((_, i) => Math.max(...rows.map((r) => len(r[i]))));
  const line = (r: string[]) => `  ${r.map((c, i) => (i >= 2 ? ' '.repeat(widths[i] - len(c)) + c : c + ' '.repeat(widths[i] - len(c)))).join('  ')}`;
  const out = [line(head), `  ${widths.map((w) => '─'.repeat(w)).join('  ')}`];
  let last = '';
  for (const r of body) {
    out.push(line(dedupeFirst && r[0] === last ? ['', ...r.slice(1)] : r));
    last = r[0];
  }
  return out.join('\n');
}

/**
 * The brokers' own share: CPU time of each host's engine thread (from the addon) over the connections
 * it handed out or in during the SlimFast samples — medians of the rounds, per host.
 */
export function brokerCpuRows(res: BenchResults): string[][] {
  const rows: string[][] = [];
  for (const w of res.workloads) {
    const per = (h: 'h1' | 'h2') =>
      median(
        w.samples
          .filter((s) => s.path === 'slimfast' && !s.error && s.broker)
          .map((s) => {
            const b = s.broker!;
            const n = (b[`handed_out_${h}`] ?? 0) + (b[`handed_in_${h}`] ?? 0);
            return n > 0 ? (b[`engine_cpu_us_${h}`] ?? 0) / n : NaN;
          })
          .filter((x) => Number.isFinite(x)),
      );
    const [a, b] = [per('h1'), per('h2')];
    if (Number.isFinite(a) || Number.isFinite(b)) rows.push([w.id, Number.isFinite(a) ? fmt(a) : '–', Number.isFinite(b) ? fmt(b) : '–']);
  }
  return rows;
}

export const BROKER_CPU_HEAD = ['workload', 'host 1 broker CPU µs / handoff', 'host 2 broker CPU µs / handoff'];

export function textBrokerCpuTable(res: BenchResults): string {
  return aligned(BROKER_CPU_HEAD, brokerCpuRows(res), false);
}

export function markdownBrokerCpuTable(res: BenchResults): string {
  return md(BROKER_CPU_HEAD, brokerCpuRows(res));
}

export function textCpuTable(res: BenchResults): string {
  return aligned(cpuHead(res), cpuRows(res), false);
}

export function md(head: string[], body: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i >= 2 ? '---:' : '---')).join('|')}|`,
    ...body.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export function markdownCpuTable(res: BenchResults): string {
  return md(cpuHead(res), cpuRows(res));
}

// ---------------------------------------------------------------------------------------------
// SVG chart of the ratios, written by hand: one row per metric, bars on a log2 axis starting at 1.0,
// whiskers for the min–max of the per-round ratios. Two panels: higher is better, lower is better.

const xmlEsc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function svgChart(res: BenchResults): string {
  const series: { key: RatioName; label: string; color: string }[] = [
    { key: 'slimfast_vs_host', label: 'SlimFast / host', color: '#1f77b4' },
    { key: 'slimfast_vs_vxlan', label: 'SlimFast / VXLAN', color: '#ff7f0e' },
    { key: 'vxlan_vs_host', label: 'VXLAN / host', color: '#9a9a9a' },
  ];
  const panels: { title: string; better: 'higher' | 'lower' }[] = [
    { title: 'Rates and throughput — higher is better (right of 1.0 = faster)', better: 'higher' },
    { title: 'Latency and CPU cost — lower is better (left of 1.0 = cheaper / quicker)', better: 'lower' },
  ];
  const rows = (better: 'higher' | 'lower') =>
    res.workloads.flatMap((w) => w.metrics.filter((m) => m.better === better).map((m) => ({ name: `${w.id} · ${m.label}`, m })));
  const all = [...rows('higher'), ...rows('lower')].flatMap((r) =>
    series.flatMap((s) => [r.m.ratios[s.key].min, r.m.ratios[s.key].max, r.m.ratios[s.key].median]),
  );
  const finite = all.filter((x) => Number.isFinite(x) && x > 0);
  const lo = Math.min(-2, Math.floor(Math.log2(Math.min(...finite, 1))));
  const hi = Math.max(2, Math.ceil(Math.log2(Math.max(...finite, 1))));

  const W = 1100;
  const labelW = 330;
  const plotL = labelW + 10;
  const plotR = W - 30;
  const barH = 7;
  const rowH = series.length * (barH + 2) + 8;
  const x = (v: number) => plotL + ((Math.log2(Math.min(Math.max(v, 2 ** lo), 2 ** hi)) - lo) / (hi - lo)) * (plotR - plotL);
  const parts: string[] = [];
  let y = 20;
  parts.push(
    `<text x="${W / 2}" y="${y}" text-anchor="middle" font-size="16" font-weight="bold">SlimFast benchmark — ratios between paths (medians; whiskers: min–max of per-round ratios)</text>`,
  );
  y += 18;
  const meta = `${res.date.slice(0, 16).replace('T', ' ')} UTC · ${res.mode} run, ${res.settings.rounds} interleaved rounds · commit ${res.commit ?? '?'}${res.dirty ? ' (dirty)' : ''} · ${res.machine.cpus} vCPUs, ${res.machine.kernel}`;
  parts.push(`<text x="${W / 2}" y="${y}" text-anchor="middle" font-size="11" fill="#555">${xmlEsc(meta)}</text>`);
  y += 14;
  // legend
  let lx = W / 2 - 200;
  for (const s of series) {
    parts.push(
      `<rect x="${lx}" y="${y}" width="12" height="10" fill="${s.color}"/><text x="${lx + 16}" y="${y + 9}" font-size="11">${s.label}</text>`,
    );
    lx += 140;
  }
  y += 24;
  for (const panel of panels) {
    const rs = rows(panel.better);
    if (rs.length === 0) continue;
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${xmlEsc(panel.title)}</text>`);
    y += 10;
    const top = y;
    const bottom = y + rs.length * rowH;
    // grid and axis labels
    for (let e = lo; e <= hi; e++) {
      const gx = x(2 ** e);
      parts.push(
        `<line x1="${gx}" y1="${top}" x2="${gx}" y2="${bottom}" stroke="${e === 0 ? '#000' : '#ddd'}" stroke-width="${e === 0 ? 1.2 : 1}"/>`,
      );
      const label = e >= 0 ? `${2 ** e}x` : `1/${2 ** -e}x`;
      parts.push(`<text x="${gx}" y="${bottom + 12}" text-anchor="middle" font-size="10" fill="#555">${label}</text>`);
    }
    rs.forEach((r, i) => {
      const ry = top + i * rowH + 4;
      if (i % 2 === 1) parts.push(`<rect x="0" y="${ry - 4}" width="${W}" height="${rowH}" fill="#000" fill-opacity="0.035"/>`);
      parts.push(`<text x="${labelW}" y="${ry + rowH / 2}" text-anchor="end" font-size="11">${xmlEsc(r.name)}</text>`);
      series.forEach((s, k) => {
        const v = r.m.ratios[s.key];
        const by = ry + k * (barH + 2);
        if (!Number.isFinite(v.median) || v.median <= 0) return;
        const x0 = x(1);
        const x1 = x(v.median);
        parts.push(
          `<rect x="${Math.min(x0, x1).toFixed(1)}" y="${by}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${barH}" fill="${s.color}"><title>${xmlEsc(`${r.name}: ${s.label} ${v.median.toFixed(2)}x (${v.min.toFixed(2)}–${v.max.toFixed(2)})`)}</title></rect>`,
        );
        if (v.n > 1 && Number.isFinite(v.min)) {
          const wy = by + barH / 2;
          parts.push(`<line x1="${x(v.min).toFixed(1)}" y1="${wy}" x2="${x(v.max).toFixed(1)}" y2="${wy}" stroke="#333" stroke-width="1"/>`);
          parts.push(
            `<line x1="${x(v.min).toFixed(1)}" y1="${wy - 3}" x2="${x(v.min).toFixed(1)}" y2="${wy + 3}" stroke="#333"/><line x1="${x(v.max).toFixed(1)}" y1="${wy - 3}" x2="${x(v.max).toFixed(1)}" y2="${wy + 3}" stroke="#333"/>`,
          );
        }
        const tx = x1 >= x0 ? Math.max(x1, v.n > 1 ? x(v.max) : x1) + 4 : Math.min(x1, v.n > 1 ? x(v.min) : x1) - 4;
        parts.push(
          `<text x="${tx.toFixed(1)}" y="${by + barH}" font-size="9" fill="#333" text-anchor="${x1 >= x0 ? 'start' : 'end'}">${v.median.toFixed(2)}</text>`,
        );
      });
    });
    y = bottom + 36;
  }
  const foot = [
    'host = host namespace → host namespace over the veth underlay (the physical limit here); VXLAN = plain containers over the kernel VXLAN overlay;',
    `SlimFast = the same containers with the preload. samehost-1: host = loopback on host 1, VXLAN = two containers over host 1's bridge.${res.settings.pinned !== 'no' ? ' Each emulated host pinned to its own vCPU.' : ''}`,
    'CPU = utime+stime of every process in the lab namespaces (servers, brokers, clients) + machine-wide softirq time, per operation (see bench/README.md).',
  ];
  for (const line of foot) {
    parts.push(`<text x="10" y="${y - 10}" font-size="10.5" fill="#444">${xmlEsc(line)}</text>`);
    y += 14;
  }
  y += 4;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
${parts.join('\n')}
</svg>
`;
}
