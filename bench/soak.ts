// Churn and soak: many container register/unregister cycles and many short connections against two
// real brokers, while each broker's open descriptors and resident memory are sampled. A broker
// that leaks per cycle or per connection shows it as growth between the sample taken after a
// warm-up and the one taken at the end, once everything is idle again.
//
//   node dist/bench/soak.js [--cycles 1000] [--connections 200000] [--json FILE]     (as root)
//
// Lab: two emulated hosts (lab/topology.ts). Host 1: c1 (the client), c3 (a same-host echo server)
// and --containers churn namespaces s1… that are registered and unregistered in turn through the
// control API (gRPC, as the OCI hook does). Host 2: c2, the cross-host echo server. Every cycle
// registers one churn namespace and unregisters it again; of every ten cycles one runs an echo
// server in it while registered (a listener created and removed; c1 connects to it), one runs a
// client in it (its own pools to host 2), the rest are bare. The connections are
// bench/clients/connrate loops under the preload (connect / 16-byte echo / close), 90% from c1 to
// c2 (cross-host, pooled), 10% from c1 to c3 (same host).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResultPromise } from 'execa';
import { ControlClient } from '../common/control-client.js';
import { type Container, Topology } from '../lab/topology.js';
import { CONNRATE, type ConnrateResult, ECHOD } from './measure.js';

export interface SoakOptions {
  /** Register/unregister cycles after the warm-up (default 1000). */
  cycles?: number;
  /** Short connections from c1 after the warm-up (default 200000). */
  connections?: number;
  /** Churn namespaces the cycles rotate over (default 10). */
  containers?: number;
  /** Samples between the warm-up and the end (default 10: one after every 10% of the work). */
  steps?: number;
  /** Idle time before the end sample (default 3000 ms). */
  settleMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Called as soon as the lab exists (so a signal handler can remove it). */
  onTopology?: (t: Topology) => void;
}

export interface BrokerSample {
  host: number;
  pid: number;
  fds: number;
  rss_kb: number;
  /** the V8 heap, from the broker's Health reply taken right after /proc was read */
  heap_total_kb: number;
  heap_used_kb: number;
}

export interface SoakSample {
  label: string;
  /** work done when taken (after the warm-up; the warm-up's own is not counted) */
  cycles: number;
  connections: number;
  t_s: number;
  brokers: BrokerSample[];
}

export interface BrokerGrowth {
  host: number;
  fds_warm: number;
  fds_end: number;
  fds_max: number;
  fds_growth: number;
  rss_kb_warm: number;
  rss_kb_end: number;
  rss_kb_max: number;
  /** end − after warm-up */
  rss_kb_growth: number;
  /** lowest sample of the second half (middle … end) − lowest of the first (warm … middle): the V8
   *  heap saws up and down between collections, a leak lifts the floor */
  rss_kb_floor_growth: number;
  heap_used_kb_floor_growth: number;
  rss_kb_per_1k_cycles: number;
  rss_kb_per_100k_connections: number;
}

export interface SoakResult {
  options: Required<Omit<SoakOptions, 'log' | 'onTopology'>>;
  duration_s: number;
  samples: SoakSample[];
  growth: BrokerGrowth[];
  work: {
    cycles: number;
    listener_cycles: number;
    client_cycles: number;
    /** c1's connections: cross-host to c2, same-host to c3 */
    cross_host: number;
    same_host: number;
    /** made during cycles (the warm-up's included): c1 to a churn listener (same host), a churn client to c2 (cross-host) */
    churn_same_host: number;
    churn_cross_host: number;
    /** the warm-up's connections from c1 (not in the figures above, but in the counters' deltas) */
    warm_cross_host: number;
    warm_same_host: number;
    /** connections that failed (connrate errors) or were not made within the time bound */
    client_errors: number;
    client_missing: number;
    first_error: string;
    rate_per_s: number;
  };
  /** engine counter deltas from the start of the warm-up to the end, per host */
  counters: { host: number; delta: Record<string, number> }[];
}

const CROSS_PORT = 7000;
const SAME_PORT = 7100;
const CHURN_PORT = 7500;
const COUNTERS = [
  'handed_out',
  'handed_in',
  'same_host',
  'same_host_steered',
  'pool_taken',
  'pool_stocked',
  'steered',
  'doorbells',
  'fallbacks',
  'connect_failures',
  'refused',
  'channel_full',
  'header_errors',
  'bad_msgs',
  'pool_failures',
  'pool_expired',
  'plain_accepts',
  'listen_ok',
  'containers',
  'preload_conns',
  'listeners',
  'pools',
];

/** Counters that must not move during a soak: each one is a connection that did not go through SlimFast or failed in it. */
export const ERROR_COUNTERS = ['fallbacks', 'connect_failures', 'refused', 'channel_full', 'header_errors', 'bad_msgs'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Open descriptors and resident memory of a process (it must run in this PID namespace). */
export function processUsage(pid: number): { fds: number; rss_kb: number } {
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rss_kb: m ? Number(m[1]) : NaN };
}

export async function runSoak(o: SoakOptions = {}): Promise<SoakResult> {
  const opts = {
    cycles: o.cycles ?? 1000,
    connections: o.connections ?? 200_000,
    containers: o.containers ?? 10,
    steps: o.steps ?? 10,
    settleMs: o.settleMs ?? 3000,
  };
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const topo = await Topology.create({ containers: [1, 1] });
  o.onTopology?.(topo);
  const controls: ControlClient[] = [];
  try {
    const [h1] = topo.hosts;
    const c1 = topo.container('c1');
    const c2 = topo.container('c2');
    const c3 = await topo.addContainer(h1, 'c3');
    await topo.register(c3);
    const churn: Container[] = [];
    for (let k = 1; k <= opts.containers; k++) churn.push(await topo.addContainer(h1, `s${k}`));
    for (const h of topo.hosts) controls.push(new ControlClient(h.stateDir, 10_000));
    const pids = await Promise.all(controls.map(async (c) => (await c.health()).pid));

    const work: SoakResult['work'] = {
      cycles: 0,
      listener_cycles: 0,
      client_cycles: 0,
      cross_host: 0,
      same_host: 0,
      churn_same_host: 0,
      churn_cross_host: 0,
      warm_cross_host: 0,
      warm_same_host: 0,
      client_errors: 0,
      client_missing: 0,
      first_error: '',
      rate_per_s: 0,
    };
    let clientSeconds = 0;
    let clientConns = 0;

    const waitListener = async (ctl: ControlClient, ip: string, port: number, present: boolean) => {
      const end = Date.now() + 10_000;
      for (;;) {
        const has = (await ctl.listeners()).some((l) => l.ip === ip && l.port === port);
        if (has === present) return;
        if (Date.now() > end) throw new Error(`listener ${ip}:${port} did not ${present ? 'appear' : 'go away'} within 10 s`);
        await sleep(10);
      }
    };

    /** One bounded connrate run inside container c (on SlimFast); returns the connections made. */
    const connrate = async (
      c: Container,
      to: Container,
      port: number,
      n: number,
      counted: 'cross_host' | 'same_host' | 'churn_same_host' | 'churn_cross_host' | null,
    ) => {
      // At least 500 connections/s even on a loaded machine, else the run is cut and reported short.
      const bound = Math.max(10, n / 500);
      const r = await topo.exec(c, [CONNRATE, to.ip, String(port), '-n', String(n), '-t', String(bound)], { timeout: (bound + 30) * 1000 });
      let res: ConnrateResult;
      try {
        res = JSON.parse(String(r.stdout)) as ConnrateResult;
      } catch {
        throw new Error(`connrate in ${c.name} → ${to.name}:${port} failed (${r.exitCode}): ${r.stderr || r.stdout}`);
      }
      if (counted) work[counted] += res.conns;
      work.client_errors += res.errors;
      work.client_missing += Math.max(0, n - res.conns);
      if (res.first_error && !work.first_error) work.first_error = `${c.name} → ${to.name}:${port}: ${res.first_error}`;
      if (counted === 'cross_host' || counted === 'same_host') {
        clientSeconds += res.seconds;
        clientConns += res.conns;
      }
      return res.conns;
    };

    /** A batch of c1's connections: 90% cross-host, 10% same-host. */
    const connections = async (n: number) => {
      const same = Math.round(n / 10);
      if (n - same > 0) await connrate(c1, c2, CROSS_PORT, n - same, 'cross_host');
      if (same > 0) await connrate(c1, c3, SAME_PORT, same, 'same_host');
    };

    let seq = 0;
    /** One register/unregister cycle of churn namespace s = cycle mod containers. */
    const cycle = async (i: number, count: boolean) => {
      const s = churn[i % churn.length];
      const id = `soak-${s.name}-${seq++}`;
      const rec = await controls[0].register({ id, netns: s.netnsPath, ip: s.ip });
      s.env = rec.env;
      const kind = i % 10;
      if (kind === 0 || kind === 5) {
        // A listener while registered: created, used from c1, removed. Every other time the
        // container is unregistered with the server still running (its preload connection and
        // listener are torn down by the broker), else after the server exited.
        const server: ResultPromise = topo.spawn(s, [ECHOD, String(CHURN_PORT)]);
        await waitListener(controls[0], s.ip, CHURN_PORT, true);
        await connrate(c1, s, CHURN_PORT, 5, 'churn_same_host');
        if (kind === 0) {
          server.kill('SIGTERM');
          await server;
          await waitListener(controls[0], s.ip, CHURN_PORT, false);
          if (!(await controls[0].unregister(id))) throw new Error(`unregister ${id}: not registered`);
        } else {
          if (!(await controls[0].unregister(id))) throw new Error(`unregister ${id}: not registered`);
          server.kill('SIGTERM');
          await server;
        }
        if (count) work.listener_cycles++;
      } else if (kind === 3) {
        // A client while registered: its own pools to host 2, gone with the process.
        await connrate(s, c2, CROSS_PORT, 20, 'churn_cross_host');
        if (!(await controls[0].unregister(id))) throw new Error(`unregister ${id}: not registered`);
        if (count) work.client_cycles++;
      } else if (!(await controls[0].unregister(id))) {
        throw new Error(`unregister ${id}: not registered`);
      }
      s.env = undefined;
      if (count) work.cycles++;
    };

    const samples: SoakSample[] = [];
    const sample = async (label: string) => {
      const brokers: BrokerSample[] = [];
      for (const [k, pid] of pids.entries()) {
        const u = processUsage(pid);
        const h = await controls[k].health();
        const heap_total_kb = Math.round(h.heapTotalBytes / 1024);
        brokers.push({ host: k + 1, pid, ...u, heap_total_kb, heap_used_kb: Math.round(h.heapUsedBytes / 1024) });
      }
      const smp = { label, cycles: work.cycles, connections: work.cross_host + work.same_host, t_s: (Date.now() - t0) / 1000, brokers };
      samples.push(smp);
      log(
        `${label.padEnd(8)} cycles ${String(smp.cycles).padStart(6)}  connections ${String(smp.connections).padStart(7)}  ` +
          brokers.map((b) => `h${b.host} fds ${b.fds} rss ${mb(b.rss_kb)} heap ${mb(b.heap_used_kb)}/${mb(b.heap_total_kb)}`).join('  '),
      );
      return smp;
    };

    /** Waits until host 1's broker serves no client processes any more (only the two echo servers). */
    const settle = async () => {
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        const k = await controls[0].counters();
        if ((k.preload_conns ?? 0) <= 1 && (k.containers ?? 0) === 2) break;
        await sleep(50);
      }
      await sleep(opts.settleMs);
    };

    // Servers: echod on SlimFast in c2 (host 2) and c3 (host 1).
    topo.spawn(c2, [ECHOD, String(CROSS_PORT)]);
    topo.spawn(c3, [ECHOD, String(SAME_PORT)]);
    await waitListener(controls[0], c3.ip, SAME_PORT, true);
    await topo.waitListener(c2.ip, CROSS_PORT);

    const start = await Promise.all(controls.map((c) => c.counters()));
    log(`warm-up: 10 cycles and ${Math.min(2000, opts.connections)} connections`);
    for (let i = 0; i < 10; i++) await cycle(i, false);
    await connections(Math.min(2000, opts.connections));
    work.warm_cross_host = work.cross_host;
    work.warm_same_host = work.same_host;
    work.cross_host = 0;
    work.same_host = 0;
    await settle();
    await sample('warm');

    let doneCycles = 0;
    let doneConns = 0;
    for (let step = 1; step <= opts.steps; step++) {
      const cycTarget = Math.round((opts.cycles * step) / opts.steps);
      const connTarget = Math.round((opts.connections * step) / opts.steps);
      // Interleave: half the step's cycles, the connections, the other half.
      const cycN = cycTarget - doneCycles;
      const half = Math.floor(cycN / 2);
      for (let i = 0; i < half; i++) await cycle(doneCycles + i, true);
      await connections(connTarget - doneConns);
      for (let i = half; i < cycN; i++) await cycle(doneCycles + i, true);
      doneCycles = cycTarget;
      doneConns = connTarget;
      await sample(`${Math.round((100 * step) / opts.steps)}%`);
    }
    await settle();
    await sample('end');
    const end = await Promise.all(controls.map((c) => c.counters()));

    work.rate_per_s = clientSeconds > 0 ? Math.round(clientConns / clientSeconds) : 0;
    const growth = pids.map((_, k) => growthOf(samples, k, opts));
    const counters = topo.hosts.map((h, k) => ({
      host: h.index,
      delta: Object.fromEntries(COUNTERS.map((name) => [name, Number(end[k][name] ?? 0) - Number(start[k][name] ?? 0)])),
    }));
    return { options: opts, duration_s: (Date.now() - t0) / 1000, samples, growth, work, counters };
  } finally {
    for (const c of controls) c.close();
    await topo.destroy();
  }
}

function growthOf(samples: SoakSample[], k: number, opts: { cycles: number; connections: number; steps: number }): BrokerGrowth {
  const all = samples.map((s) => s.brokers[k]);
  const warm = all[0];
  const last = all[all.length - 1];
  const mid = Math.ceil(opts.steps / 2);
  const floor = (key: 'rss_kb' | 'heap_used_kb') =>
    Math.min(...all.slice(mid).map((b) => b[key])) - Math.min(...all.slice(0, mid + 1).map((b) => b[key]));
  const rss = last.rss_kb - warm.rss_kb;
  return {
    host: k + 1,
    fds_warm: warm.fds,
    fds_end: last.fds,
    fds_max: Math.max(...all.map((b) => b.fds)),
    fds_growth: last.fds - warm.fds,
    rss_kb_warm: warm.rss_kb,
    rss_kb_end: last.rss_kb,
    rss_kb_max: Math.max(...all.map((b) => b.rss_kb)),
    rss_kb_growth: rss,
    rss_kb_floor_growth: floor('rss_kb'),
    heap_used_kb_floor_growth: floor('heap_used_kb'),
    rss_kb_per_1k_cycles: opts.cycles > 0 ? (rss * 1000) / opts.cycles : 0,
    rss_kb_per_100k_connections: opts.connections > 0 ? (rss * 100_000) / opts.connections : 0,
  };
}

const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
const smb = (kb: number) => `${kb >= 0 ? '+' : '−'}${(Math.abs(kb) / 1024).toFixed(1)} MB`;

/** The result as Markdown: samples, growth per broker, the work done and the counters that prove it went through SlimFast. */
export function formatSoak(r: SoakResult): string {
  const out: string[] = [];
  const hosts = r.growth.map((g) => g.host);
  out.push(`| sample | cycles | connections | ${hosts.map((h) => `broker ${h} fds | RSS | V8 heap used / total`).join(' | ')} |`);
  out.push(`|---|---:|---:|${hosts.map(() => '---:|---:|---:').join('|')}|`);
  for (const s of r.samples) {
    out.push(
      `| ${s.label} | ${s.cycles} | ${s.connections} | ${s.brokers.map((b) => `${b.fds} | ${mb(b.rss_kb)} | ${mb(b.heap_used_kb)} / ${mb(b.heap_total_kb)}`).join(' | ')} |`,
    );
  }
  out.push('');
  out.push(
    '| broker | fds warm → end (max) | RSS warm → end (max) | RSS growth | per 1,000 cycles | per 100,000 connections | RSS floor, 2nd half − 1st | heap-used floor, 2nd − 1st |',
  );
  out.push('|---|---|---|---:|---:|---:|---:|---:|');
  for (const g of r.growth) {
    out.push(
      `| host ${g.host} | ${g.fds_warm} → ${g.fds_end} (${g.fds_max}) | ${mb(g.rss_kb_warm)} → ${mb(g.rss_kb_end)} (${mb(g.rss_kb_max)}) | ` +
        `${smb(g.rss_kb_growth)} | ${smb(g.rss_kb_per_1k_cycles)} | ${smb(g.rss_kb_per_100k_connections)} | ${smb(g.rss_kb_floor_growth)} | ` +
        `${smb(g.heap_used_kb_floor_growth)} |`,
    );
  }
  out.push('');
  const w = r.work;
  out.push(
    `Work after the warm-up: ${w.cycles} cycles (${w.listener_cycles} with a listener, ${w.client_cycles} with a client), ` +
      `${w.cross_host + w.same_host} connections from c1 (${w.cross_host} cross-host, ${w.same_host} same-host) at ${w.rate_per_s} connections/s, ` +
      `${w.churn_same_host + w.churn_cross_host} more during cycles; ${w.client_errors} client errors, ${w.client_missing} not made. ` +
      `${r.duration_s.toFixed(0)} s in all.`,
  );
  out.push('');
  const names = [
    'handed_out',
    'pool_taken',
    'same_host',
    'same_host_steered',
    'handed_in',
    'steered',
    ...ERROR_COUNTERS,
    'pool_failures',
    'pool_expired',
    'listen_ok',
  ];
  out.push(`| counter (warm-up included) | ${r.counters.map((c) => `host ${c.host}`).join(' | ')} |`);
  out.push(`|---|${r.counters.map(() => '---:').join('|')}|`);
  for (const n of names) out.push(`| ${n} | ${r.counters.map((c) => c.delta[n] ?? 0).join(' | ')} |`);
  return out.join('\n');
}

function parseArgs(argv: string[]): { opts: SoakOptions; json?: string } {
  const opts: SoakOptions = {};
  let json: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a whole number`);
      return v;
    };
    if (a === '--cycles') opts.cycles = num();
    else if (a === '--connections') opts.connections = num();
    else if (a === '--containers') opts.containers = Math.max(1, num());
    else if (a === '--steps') opts.steps = Math.max(2, num());
    else if (a === '--settle-ms') opts.settleMs = num();
    else if (a === '--json') json = argv[++i];
    else
      throw new Error(
        `unknown argument ${a}; usage: soak [--cycles N] [--connections N] [--containers N] [--steps N] [--settle-ms MS] [--json FILE]`,
      );
  }
  return { opts, json };
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`soak: ${(err as Error).message}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('soak: run as root (it creates network namespaces); see bench/README.md');
    return 1;
  }
  let topo: Topology | undefined;
  const onSignal = () => {
    const t = topo;
    topo = undefined;
    (t ? t.destroy() : Promise.resolve()).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const r = await runSoak({ ...parsed.opts, log: (l) => console.log(l), onTopology: (t) => (topo = t) });
  topo = undefined;
  console.log('');
  console.log(formatSoak(r));
  if (parsed.json) {
    fs.mkdirSync(path.dirname(path.resolve(parsed.json)), { recursive: true });
    fs.writeFileSync(parsed.json, `${JSON.stringify(r, null, 2)}\n`);
  }
  const v = verdict(r);
  for (const p of v) console.log(`FAIL: ${p}`);
  return v.length ? 1 : 0;
}

export interface FlatLimits {
  /** descriptors the idle broker may hold beyond the after-warm-up sample */
  fdSlack: number;
  /** RSS growth, warm-up to end, in kB */
  rssGrowthKb: number;
  /** growth of the lowest RSS sample from the first half of the run to the second, in kB */
  rssFloorKb: number;
}

export const DEFAULT_LIMITS: FlatLimits = { fdSlack: 8, rssGrowthKb: 16 * 1024, rssFloorKb: 8 * 1024 };

/** What is wrong with a soak's result: not flat, or a connection that failed or did not go through SlimFast. Empty when all is well. */
export function verdict(r: SoakResult, limits: FlatLimits = DEFAULT_LIMITS): string[] {
  const bad: string[] = [];
  for (const g of r.growth) {
    if (g.fds_growth > limits.fdSlack) bad.push(`broker ${g.host}: ${g.fds_warm} → ${g.fds_end} descriptors (more than +${limits.fdSlack})`);
    if (g.rss_kb_growth > limits.rssGrowthKb) bad.push(`broker ${g.host}: RSS grew by ${mb(g.rss_kb_growth)} (more than ${mb(limits.rssGrowthKb)})`);
    if (g.rss_kb_floor_growth > limits.rssFloorKb)
      bad.push(
        `broker ${g.host}: the lowest RSS sample rose by ${mb(g.rss_kb_floor_growth)} from the first half to the second (more than ${mb(limits.rssFloorKb)})`,
      );
  }
  const w = r.work;
  if (w.client_errors || w.client_missing) bad.push(`${w.client_errors} connections failed and ${w.client_missing} were not made (${w.first_error})`);
  if (w.cycles !== r.options.cycles) bad.push(`${w.cycles} of ${r.options.cycles} cycles done`);
  const h1 = r.counters[0].delta;
  const cross = w.cross_host + w.churn_cross_host + w.warm_cross_host;
  const same = w.same_host + w.churn_same_host + w.warm_same_host;
  // Warm-up cycles made connections too (not counted in work): at least what was counted.
  if (h1.handed_out < cross) bad.push(`host 1 handed out ${h1.handed_out} cross-host connections, ${cross} were made`);
  if (h1.same_host < same) bad.push(`host 1 paired ${h1.same_host} same-host connections, ${same} were made`);
  for (const c of r.counters) {
    for (const n of ERROR_COUNTERS) if (c.delta[n]) bad.push(`host ${c.host}: ${n} +${c.delta[n]}`);
    if (c.delta.plain_accepts) bad.push(`host ${c.host}: plain_accepts +${c.delta.plain_accepts} (connections that bypassed SlimFast)`);
  }
  return bad;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(`soak: ${(err as Error).stack ?? err}`);
      process.exit(1);
    },
  );
}
