// `npm run bench`: the performance suite. Two emulated hosts; every workload runs over three paths —
// host namespace to host namespace, containers over the kernel VXLAN overlay, containers on
// SlimFast — interleaved within each round (the starting path rotates per round), several rounds.
// The connection-rate workloads conn-1 and conn-N add a fourth, seccomp: a statically linked client
// on the broker's seccomp agent (bench/clients/sfseccomp.c) instead of the preload.
// Prints progress and a table, writes bench/results/latest.json and latest.svg. See bench/README.md.
//
// The brokers run as users run them: with a cluster key (--cluster-key), so SlimFast connections are
// steered by the cluster-key program (sf_steer_auth); --insecure-host-keys measures the keyless path.
// --profile adds conn-1's per-connection budget (bench/budget.ts): syscalls, CPU and µs per process.
//
//   node dist/bench/main.js [--quick] [--rounds N] [--only ID,ID] [--profile] [--no-pin] [--insecure-host-keys] [--json-out FILE] [--svg-out FILE]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../common/paths.js';
import type { Topology } from '../lab/topology.js';
import { buildProfile, profileErrors, textBudgetTable, textSyscallTable } from './budget.js';
import { cpuBetween, processSeconds } from './cpu.js';
import { BenchLab } from './lab.js';
import { ALL_PATHS, type BenchPath, PATHS, type PathName } from './measure.js';
import { traceConnections, type TracedRun } from './profile.js';
import { type BenchResults, pathsOf, type Sample, summarize, svgChart, textBrokerCpuTable, textCpuTable, textTable } from './report.js';
import { fmt } from './stats.js';
import { requireStrace, StraceMissing } from './strace.js';
import { allWorkloads, extraWorkloads, iperf3Bound, PROFILED, SampleError, type Settings, type Workload } from './workloads.js';

/** More VXLAN packets than this during a sample that must not use the overlay is a fallback. */
const VXLAN_NOISE = 100;

const FULL: Settings = { rounds: 6, seconds: 2, bulkSeconds: 3, httpSeconds: 3, parallel: 4, redisShortN: 20_000, redisKeepN: 50_000 };
const QUICK: Settings = { rounds: 2, seconds: 0.3, bulkSeconds: 1, httpSeconds: 1, parallel: 4, redisShortN: 600, redisKeepN: 3000 };

/** Connections per traced (strace) run of --profile: enough that per-connection counts read to 0.001. */
const TRACED_CONNECTIONS = 2000;

interface Options {
  settings: Settings;
  mode: BenchResults['mode'];
  only?: string[];
  jsonOut: string;
  svgOut: string;
  pin: boolean;
  /** The brokers without a cluster key (--insecure-host-keys). */
  hostKeys: boolean;
  /** conn-1's per-connection budget (--profile) */
  profile: boolean;
}

function usage(): never {
  console.error(
    'usage: node dist/bench/main.js [--quick] [--rounds N] [--only ID,ID,…] [--profile] [--no-pin] [--insecure-host-keys] [--json-out FILE] [--svg-out FILE]',
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  let mode: BenchResults['mode'] = 'full';
  let rounds: number | undefined;
  let only: string[] | undefined;
  let jsonOut = path.join(repoRoot(), 'bench', 'results', 'latest.json');
  let svgOut: string | undefined;
  let pin = true;
  let hostKeys = false;
  let profile = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => argv[++i] ?? usage();
    if (a === '--quick') mode = 'quick';
    else if (a === '--rounds') rounds = Number(val());
    else if (a === '--only') only = val().split(',');
    else if (a === '--json-out') jsonOut = path.resolve(val());
    else if (a === '--svg-out') svgOut = path.resolve(val());
    else if (a === '--pin') pin = true;
    else if (a === '--no-pin') pin = false;
    else if (a === '--insecure-host-keys') hostKeys = true;
    else if (a === '--profile') profile = true;
    else if (a === '--help' || a === '-h') usage();
    else {
      console.error(`bench: unknown argument ${a}`);
      usage();
    }
  }
  const settings = { ...(mode === 'quick' ? QUICK : FULL) };
  if (rounds !== undefined) {
    if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) usage();
    settings.rounds = rounds;
  }
  if (profile) {
    // the budget is conn-1's: alone unless --only asks for more
    if (only && !only.includes(PROFILED)) {
      console.error(`bench: --profile breaks down ${PROFILED}; add it to --only`);
      usage();
    }
    only ??= [PROFILED];
  }
  if (only || rounds !== undefined || !pin || hostKeys) mode = mode === 'quick' ? 'quick' : 'custom';
  return { settings, mode, only, jsonOut, svgOut: svgOut ?? `${jsonOut.replace(/\.json$/, '')}.svg`, pin, hostKeys, profile };
}

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const red = (s: string) => (process.stdout.isTTY ? `\x1b[31m${s}\x1b[0m` : s);
const step = (msg: string) => process.stdout.write(`${bold('==>')} ${msg}\n`);
const mmss = (s: number) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

function gitInfo(): { commit: string | null; dirty: boolean | null } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot(), encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repoRoot(), encoding: 'utf8' }).trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}

function machine(): BenchResults['machine'] {
  return {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    kernel: os.release(),
    memory_gb: Math.round(os.totalmem() / 2 ** 30),
  };
}

class Interrupted extends Error {}

/**
 * One bounded sample of one workload over one path, with CPU accounting and the fallback checks.
 * With profile, the CPU of the processes the workload names is also kept apart.
 */
async function sample(lab: BenchLab, w: Workload, which: BenchPath, s: Settings, round: number, order: number, profile: boolean): Promise<Sample> {
  const t0 = performance.now();
  const out: Sample = { round, order, path: which, metrics: {}, ops: 0, errors: 0, seconds: 0 };
  let ctx: { dispose(): Promise<void> } | undefined;
  try {
    ctx = await w.prepare?.(lab, which, s);
    const pids = profile ? await w.processes?.(lab, which) : undefined;
    const vx0 = await lab.vxlanPackets();
    const b0 = await lab.brokerCounters();
    const c0 = lab.cpu();
    const r = await w.run(lab, which, s, ctx);
    const c1 = lab.cpu();
    const b1 = await lab.brokerCounters();
    const vx = (await lab.vxlanPackets()) - vx0;
    const u = cpuBetween(c0, c1);
    const total = u.tasks_s + r.clientCpu_s + u.softirq_s;
    out.cpu = {
      tasks_s: u.tasks_s,
      clients_s: r.clientCpu_s,
      softirq_s: u.softirq_s,
      total_s: total,
      steal_s: u.steal_s,
      idle_s: u.idle_s,
      wall_s: u.wall_s,
    };
    if (pids) out.cpu.processes = Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, processSeconds(c0, c1, pid)]));
    out.metrics = { ...r.metrics, cpu: w.cpu === 'per_gb' ? total / (r.bytes! / 1e9) : (total * 1e6) / r.ops };
    out.ops = r.ops;
    out.bytes = r.bytes;
    out.errors = r.errors;
    out.vxlan_packets = vx;
    out.broker = Object.fromEntries(Object.entries(b1).map(([k, v]) => [k, v - b0[k as keyof typeof b0]]));
    const problems: string[] = [];
    if (r.errors) problems.push(`${r.errors} client errors${r.firstError ? ` (first: ${r.firstError})` : ''}`);
    if (!(r.ops > 0)) problems.push('no operation completed');
    if (which === 'slimfast') {
      if (w.sameHost && !(out.broker.same_host! > 0)) problems.push('the broker paired no same-host connection: not on SlimFast');
      if (!w.sameHost && !(out.broker.handed_out! > 0)) problems.push('the brokers handed off no connection: not on SlimFast');
      if (out.broker.plain_accepts! > 0) problems.push(`${out.broker.plain_accepts} connections reached a server the ordinary way (fallback)`);
      if (out.broker.seccomp_handed! > 0) problems.push(`the seccomp agent answered ${out.broker.seccomp_handed} connects on the preload path`);
    }
    if (which === 'seccomp') {
      // every connection (completed or in flight when the sample ended) went through the agent
      const handed = out.broker.seccomp_handed!;
      if (!(handed >= r.ops && handed <= r.ops * 1.02 + 16))
        problems.push(`the seccomp agent answered ${handed} connects for ${r.ops} connections: not on the seccomp path`);
      if (!(out.broker.handed_out! >= r.ops)) problems.push(`the brokers handed off ${out.broker.handed_out} connections for ${r.ops}`);
      if (out.broker.plain_accepts! > 0) problems.push(`${out.broker.plain_accepts} connections reached a server the ordinary way (fallback)`);
    }
    if (which !== 'vxlan' && vx > VXLAN_NOISE) problems.push(`${vx} packets crossed the VXLAN device: traffic fell back to the overlay`);
    if (which === 'vxlan' && !w.sameHost && vx === 0) problems.push('the VXLAN path sent no packet over the VXLAN device');
    if (problems.length) out.error = problems.join('; ');
  } catch (err) {
    out.error = err instanceof SampleError ? err.message : `${(err as Error).message}`;
  } finally {
    await ctx?.dispose().catch(() => {});
  }
  out.seconds = (performance.now() - t0) / 1000;
  return out;
}

function primary(w: Workload, smp: Sample): string {
  const m = w.metrics[0];
  const cpuUnit = w.cpu === 'per_gb' ? 'CPU s/GB' : `CPU µs/${w.op === 'connection' ? 'conn' : w.op === 'operation' ? 'op' : 'req'}`;
  return `${fmt(smp.metrics[m.id]).padStart(7)} ${m.unit.padEnd(7)}  ${fmt(smp.metrics.cpu).padStart(6)} ${cpuUnit}`;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    console.error('bench: run as root (it creates network namespaces); see bench/README.md');
    return 1;
  }
  if (opts.profile) {
    try {
      await requireStrace();
    } catch (err) {
      if (!(err instanceof StraceMissing)) throw err;
      console.error(`bench: ${err.message}`);
      return 2;
    }
  }
  const s = opts.settings;
  let workloads = allWorkloads(s);
  if (opts.only) {
    workloads = [...workloads, ...extraWorkloads()];
    const unknown = opts.only.filter((id) => !workloads.some((w) => w.id === id));
    if (unknown.length) {
      console.error(`bench: unknown workload ${unknown.join(', ')}; known: ${workloads.map((w) => w.id).join(', ')}`);
      return 2;
    }
    workloads = workloads.filter((w) => opts.only!.includes(w.id));
  }

  const started = performance.now();
  const notes: string[] = [];
  const errors: string[] = [];
  let topo: Topology | undefined;
  let lab: BenchLab | undefined;
  let interrupted = false;
  let cleaning: Promise<void> | undefined;
  let creating = true;
  const cleanup = async () => {
    const t = topo;
    topo = undefined;
    if (t) {
      step('cleaning up namespaces, brokers and processes');
      await (lab ? lab.destroy() : t.destroy()).catch((err) => console.error(`cleanup: ${(err as Error).message}`));
    }
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stdout.write(`\n${sig === 'SIGINT' ? 'interrupted' : `got ${sig}`}\n`);
    if (creating) return; // the lab is being built: main() removes it as soon as it exists
    cleaning = cleanup();
    cleaning.finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  const samples = new Map<string, Sample[]>(workloads.map((w) => [w.id, []]));
  const traced = new Map<PathName, TracedRun | Error>();
  try {
    const nSeccomp = workloads.filter((w) => w.seccomp).length;
    step(
      `SlimFast benchmark (${opts.mode}): ${workloads.length} workloads × 3 paths${nSeccomp ? ` (${nSeccomp} with a fourth, seccomp)` : ''} × ${s.rounds} rounds, interleaved`,
    );
    step(
      `creating two emulated hosts (network namespaces, veth underlay, VXLAN overlay between the bridges, a broker on each, ${opts.hostKeys ? 'without a cluster key: --insecure-host-keys' : 'with a cluster key'})`,
    );
    try {
      lab = await BenchLab.create(
        (t) => {
          topo = t;
        },
        opts.hostKeys ? 'none' : 'file',
      );
    } finally {
      creating = false;
    }
    if (interrupted) throw new Interrupted();
    for (const h of lab.topo.hosts) step(`host ${h.index}: ${h.ns}, underlay ${h.ip}, containers ${h.subnet}`);
    for (const c of lab.topo.containers) step(`container ${c.name}: ${c.ip} on host ${c.host.index}`);
    if (opts.pin) {
      await lab.pinHosts();
      step('pinned: every process of host 1 runs on vCPU 0, every process of host 2 on vCPU 1');
    }
    step('starting servers on all three paths');
    for (const w of workloads) {
      await w.setup(lab, s, (msg) => {
        notes.push(msg);
        step(msg);
      });
      if (interrupted) throw new Interrupted();
    }

    const total = workloads.reduce((n, w) => n + pathsOf(w).length, 0) * s.rounds;
    let done = 0;
    step(`measuring (${total} samples)`);
    for (let round = 1; round <= s.rounds; round++) {
      // rotate the starting path each round so that no path always runs right after another
      for (const w of workloads) {
        const paths = pathsOf(w);
        const order = paths.map((_, i) => paths[(i + round - 1) % paths.length]);
        for (const [k, which] of order.entries()) {
          if (interrupted) throw new Interrupted();
          const smp = await sample(lab, w, which, s, round, k, opts.profile);
          samples.get(w.id)!.push(smp);
          done++;
          const elapsed = (performance.now() - started) / 1000;
          const left = done ? (((performance.now() - started) / done) * (total - done)) / 1000 : 0;
          const head = `  [${String(round).padStart(2)}/${s.rounds}] ${w.id.padEnd(11)} ${which.padEnd(8)}`;
          const tailTxt = `${mmss(elapsed)} elapsed, ~${mmss(left)} left`;
          if (smp.error) process.stdout.write(`${head} ${red(`ERROR ${smp.error}`)}  ${tailTxt}\n`);
          else process.stdout.write(`${head} ${primary(w, smp)}   ${tailTxt}\n`);
        }
      }
    }
    if (opts.profile) {
      step(
        `profile: ${TRACED_CONNECTIONS} ${PROFILED} connections per path, the client under strace -f -c, strace attached to the server and both brokers`,
      );
      for (const which of PATHS) {
        if (interrupted) throw new Interrupted();
        const t = performance.now();
        const r = await traceConnections(lab, which, TRACED_CONNECTIONS).catch((err: Error) => err);
        traced.set(which, r);
        const took = `${((performance.now() - t) / 1000).toFixed(1)} s`;
        if (r instanceof Error) process.stdout.write(`  ${which.padEnd(8)} ${red(`ERROR ${r.message}`)}  ${took}\n`);
        else
          process.stdout.write(
            `  ${which.padEnd(8)} syscalls per connection: client ${fmt(r.client.per_conn)}, server ${fmt(r.server.per_conn)}, brokers ${fmt(r.broker1.per_conn)} + ${fmt(r.broker2.per_conn)}  ${took}\n`,
          );
      }
    }
  } catch (err) {
    if (interrupted) {
      await (cleaning ?? cleanup());
      return 130;
    }
    errors.push(`harness: ${(err as Error).message}`);
    console.error(red(`bench failed: ${(err as Error).message}`));
  } finally {
    if (!interrupted) await cleanup();
  }
  if (interrupted) {
    await (cleaning ?? cleanup());
    return 130;
  }

  const results: BenchResults = {
    schema: 'slimfast-bench/1',
    date: new Date().toISOString(),
    ...gitInfo(),
    mode: opts.mode,
    machine: machine(),
    settings: {
      ...s,
      pinned: opts.pin ? 'host 1 → vCPU 0, host 2 → vCPU 1' : 'no',
      iperf3_server: iperf3Bound() ? 'iperf3 -s -B <IPv4>' : 'iperf3 -s (dual-stack)',
      header_auth: opts.hostKeys ? 'insecure host keys (--insecure-host-keys)' : 'cluster key (--cluster-key)',
    },
    paths: ALL_PATHS.filter((p) => workloads.some((w) => pathsOf(w).includes(p))),
    duration_s: 0,
    notes,
    errors,
    workloads: workloads.map((w) => summarize(w, samples.get(w.id)!, s.rounds)),
    ...(opts.profile ? { profile: buildProfile(PROFILED, samples.get(PROFILED) ?? [], traced, TRACED_CONNECTIONS) } : {}),
  };
  if (results.profile) errors.push(...profileErrors(results.profile));
  for (const w of results.workloads) {
    for (const p of results.paths)
      if (w.errors[p])
        errors.push(
          `${w.id} over ${p}: ${w.errors[p]} errors${w.first_errors.length ? ` — ${w.first_errors.find((e) => e.startsWith(p)) ?? w.first_errors[0]}` : ''}`,
        );
  }
  results.duration_s = Math.round((performance.now() - started) / 100) / 10;

  console.log(
    `\n${bold('Results')} — medians of ${s.rounds} rounds (min–max); ratios: ratio of medians (min–max of the per-round ratios); ↓ lower is better`,
  );
  console.log(textTable(results));
  console.log(`\n${bold('CPU over the whole run')} — all rounds' CPU time (both hosts, clients, brokers, softirq) over all rounds' operations`);
  console.log(textCpuTable(results));
  console.log(
    `\n${bold('Broker CPU per handed-off connection')} — each host's engine thread, SlimFast samples (a handoff = a connection handed out or in)`,
  );
  console.log(textBrokerCpuTable(results));
  if (results.profile) {
    console.log(
      `\n${bold('Per-connection budget')} — ${PROFILED}; syscalls: strace -f -c over ${TRACED_CONNECTIONS} connections (client start-up taken out); CPU: the samples above, without strace; client µs: connrate's timing`,
    );
    console.log(textBudgetTable(results.profile));
    console.log(`\n${bold('Syscalls per connection')} — per process, the calls made at least 0.05 times per connection on some path`);
    console.log(textSyscallTable(results.profile));
  }
  console.log('\n  Paths: host = host namespace → host namespace over the veth underlay (the physical limit here);');
  console.log('  VXLAN = plain containers over the kernel VXLAN overlay; SlimFast = the same containers with the preload.');
  console.log("  samehost-1: host = loopback in host 1, VXLAN = the two containers over host 1's bridge.");
  if (results.paths.includes('seccomp'))
    console.log("  seccomp = the SlimFast container's client statically linked, on the broker's seccomp agent instead of the preload (conn-*).");
  console.log(
    opts.hostKeys
      ? '  Brokers without a cluster key (--insecure-host-keys): steered by sf_steer, headers signed with announced host keys.'
      : '  Brokers with a cluster key (--cluster-key), as users run them: steered by sf_steer_auth (tag, source address, age and replay checked).',
  );
  if (opts.pin)
    console.log('  Each emulated host runs on its own vCPU (host 1: vCPU 0, host 2: vCPU 1); --no-pin lets the scheduler place everything.');
  console.log("  CPU = utime+stime of every process in the lab's namespaces (servers, brokers, clients) + machine-wide softirq, per operation.");
  for (const n of notes) console.log(`  note: ${n}`);
  fs.mkdirSync(path.dirname(opts.jsonOut), { recursive: true });
  fs.writeFileSync(opts.jsonOut, `${JSON.stringify(results, null, 1)}\n`);
  fs.mkdirSync(path.dirname(opts.svgOut), { recursive: true });
  fs.writeFileSync(opts.svgOut, svgChart(results));
  step(
    `wrote ${path.relative(process.cwd(), opts.jsonOut) || opts.jsonOut} and ${path.relative(process.cwd(), opts.svgOut) || opts.svgOut} (${results.duration_s} s in all)`,
  );
  if (errors.length) {
    console.error(red(`\n${errors.length} problem(s):`));
    for (const e of errors) console.error(red(`  - ${e}`));
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
