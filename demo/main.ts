// `npm run demo`: two emulated hosts with a broker each, and two real runc containers started through
// slimfast-runc — the servers on host 2, the client on host 1. slimfast-hook registers them with their
// host's broker; the client's connections then run on SlimFast. The three things SlimFast is for are
// measured over SlimFast, over the kernel VXLAN overlay (the same containers, without the preload) and
// host to host, in one interleaved run: the connection rate (a new connection per request), request /
// response on one kept connection, and bulk throughput (iperf3). A table with a verdict per measure
// closes the run. Everything is removed at the end, also on Ctrl-C.
import fs from 'node:fs';
import path from 'node:path';
import { type ResultPromise, execa } from 'execa';
import { CONNRATE, type ConnrateResult, ECHOD, PATHS, PORTS as PORT, type PathName, median, parseConnrate } from '../bench/measure.js';
import type { HealthMsg } from '../common/api-types.js';
import { installPaths } from '../common/paths.js';
import { RuncLab, makeBundle, sweepStaleRunc } from '../lab/containers.js';
import { Topology } from '../lab/topology.js';

const ROUNDS = Number(process.env.SLIMFAST_DEMO_ROUNDS ?? 3);
const SECONDS = Number(process.env.SLIMFAST_DEMO_SECONDS ?? 2);
/** iperf3 runs for whole seconds. */
const BULK_SECONDS = Math.max(1, Math.round(SECONDS));
/** Container processes outlive nothing: a killed demo's leftovers end by themselves. */
const LIFETIME_S = 900;
/** iperf3 on PATH ('' when missing): the bulk measure runs it on the hosts and copies it into the containers. */
const IPERF3 =
  (process.env.PATH ?? '/usr/bin')
    .split(':')
    .map((d) => path.join(d, 'iperf3'))
    .find((f) => fs.existsSync(f)) ?? '';
/** iperf3 servers: on host 2, and on SlimFast and plain (VXLAN) side by side in the server container. */
const BULK_PORT: Record<PathName, number> = { host: 5203, vxlan: 5202, slimfast: 5201 };
const LABEL: Record<PathName, string> = { host: 'host → host', vxlan: 'VXLAN overlay', slimfast: 'SlimFast' };

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function step(msg: string): void {
  process.stdout.write(`${bold('==>')} ${msg}\n`);
}

/** Set on Ctrl-C: the signal handler cleans up and exits; main() only stops. */
let interrupted = false;

interface RunResult {
  exitCode?: number;
  stdout: string;
  stderr: string;
}

/** Where each path's client and servers run: host 1 / host 2's namespaces, or the two runc containers. */
interface Ends {
  /** Runs argv to completion as path `which`'s client. */
  client(which: PathName, argv: string[], timeoutMs: number): Promise<RunResult>;
  /** Starts argv as a server of path `which`: the child, to await or kill. */
  server(which: PathName, argv: string[], timeoutMs: number): ResultPromise;
  /** The server's address on path `which`. */
  ip(which: PathName): string;
  /** Waits until path `which`'s server listens on port (on SlimFast: and both brokers know it). */
  waitServer(which: PathName, port: number): Promise<void>;
}

/** One sample of one measure over one path: its figure and, where the measure has one, a p50 in µs. */
interface Sample {
  value: number;
  p50_us?: number;
  errors: number;
  firstError?: string;
}

type ByPath = Record<PathName, number>;

interface Measure {
  /** for the round lines */
  id: string;
  /** the table row */
  title: string;
  unit: string;
  digits: number;
  /** when the measure reports a p50: its table row and its name in the round lines */
  p50?: { row: string; short: string };
  sample(ends: Ends, which: PathName): Promise<Sample>;
  /** One line from the medians of all three paths. */
  verdict(value: ByPath, p50: ByPath): string;
}

const x = (r: number) => `${r.toFixed(2)}x`;

/** SlimFast against VXLAN, from the ratio of their medians as printed (1.05x is still on par). */
function standing(vsVxlan: number): string {
  const pct = Math.round(vsVxlan * 100);
  if (Math.abs(pct - 100) <= 5) return 'on par with VXLAN (within 5%)';
  return pct > 100 ? 'ahead of VXLAN' : 'behind VXLAN';
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ').slice(0, 300);
}

/** connrate with 16-byte requests; keep: one connection for all of them (-k). */
async function connrateRun(ends: Ends, which: PathName, seconds: number, keep: boolean): Promise<ConnrateResult> {
  const argv = [CONNRATE, ends.ip(which), String(PORT[which]), '-t', String(seconds), '-n', '2000000', '-s', '16', ...(keep ? ['-k'] : [])];
  const r = await ends.client(which, argv, seconds * 1000 + 60_000);
  if (r.exitCode !== 0) throw new Error(`connrate exited with ${r.exitCode}: ${tail(r.stderr || r.stdout)}`);
  return parseConnrate(r.stdout);
}

function connrateMeasure(keep: boolean): Measure['sample'] {
  return async (ends, which) => {
    const r = await connrateRun(ends, which, SECONDS, keep);
    return { value: r.rate, p50_us: keep ? r.rtt_p50_us : r.connect_p50_us, errors: r.errors, firstError: r.first_error || undefined };
  };
}

const connections: Measure = {
  id: 'connections',
  title: 'new connection per request (conn/s)',
  unit: 'conn/s',
  digits: 0,
  p50: { row: 'connect() p50 (µs)', short: 'connect p50' },
  sample: connrateMeasure(false),
  verdict: (v) =>
    `SlimFast opens connections at ${x(v.slimfast / v.vxlan)} VXLAN's rate (${x(v.slimfast / v.host)} host) — ${standing(v.slimfast / v.vxlan)}`,
};

const kept: Measure = {
  id: 'kept',
  title: 'kept connection, 16-byte echo (req/s)',
  unit: 'req/s',
  digits: 0,
  p50: { row: 'request/response p50 (µs)', short: 'p50' },
  sample: connrateMeasure(true),
  verdict: (v, p) =>
    `SlimFast answers ${x(v.slimfast / v.vxlan)} VXLAN's requests/s on a kept connection (${x(v.slimfast / v.host)} host), ` +
    `p50 ${p.slimfast.toFixed(0)} µs against ${p.vxlan.toFixed(0)} µs — ${standing(v.slimfast / v.vxlan)}`,
};

/**
 * iperf3, one stream for BULK_SECONDS. One server per sample (iperf3 -s -1), bound to the IPv4
 * address on every path alike: a long-running iperf3 server re-creates its listener after each test.
 */
async function bulkSample(ends: Ends, which: PathName): Promise<Sample> {
  const port = String(BULK_PORT[which]);
  const lifetime = BULK_SECONDS + 30;
  const server = ends.server(
    which,
    ['/bin/timeout', '-s', 'KILL', String(lifetime), IPERF3, '-s', '-1', '-p', port, '-B', ends.ip(which)],
    lifetime * 1000,
  );
  const exited = server.then((r) => {
    throw new Error(`iperf3 server exited with ${r.exitCode}: ${tail(String(r.stderr) || String(r.stdout))}`);
  });
  let r: RunResult | undefined;
  try {
    await Promise.race([ends.waitServer(which, Number(port)), exited]);
    r = await ends.client(which, [IPERF3, '-c', ends.ip(which), '-p', port, '-t', String(BULK_SECONDS), '-J'], BULK_SECONDS * 1000 + 30_000);
  } finally {
    // After a test the server ends by itself; otherwise it is stopped (runc forwards the signal).
    if (r?.exitCode !== 0) server.kill('SIGTERM');
    await server;
  }
  let j: { error?: string; end?: { sum_received?: { bits_per_second: number } } } = {};
  try {
    j = JSON.parse(r.stdout);
  } catch {
    // reported below
  }
  const got = j.end?.sum_received;
  if (r.exitCode !== 0 || !got) throw new Error(`iperf3 exited with ${r.exitCode}: ${j.error ?? tail(r.stderr || r.stdout)}`);
  return { value: got.bits_per_second / 1e9, errors: 0 };
}

const bulk: Measure = {
  id: 'bulk',
  title: 'bulk throughput, iperf3 (Gbit/s)',
  unit: 'Gbit/s',
  digits: 2,
  sample: bulkSample,
  verdict: (v) =>
    `bulk: SlimFast ${x(v.slimfast / v.host)} host, VXLAN ${x(v.vxlan / v.host)} host (SlimFast ${x(v.slimfast / v.vxlan)} VXLAN) — ${standing(v.slimfast / v.vxlan)}`,
};

const MEASURES: Measure[] = [connections, kept, bulk];

/** Round `round`'s path order (1-based): the first path rotates, so no path always runs right after another. */
function pathOrder(round: number): PathName[] {
  return PATHS.map((_, i) => PATHS[(i + round - 1) % PATHS.length]);
}

/** All samples of one measure over one path. */
interface Cell {
  values: number[];
  p50: number[];
  errors: number;
  firstError?: string;
}

type Results = Map<Measure, Record<PathName, Cell>>;

/** Runs around each sample (e.g. to read counters before and after). */
type Wrap = (which: PathName, run: () => Promise<Sample>) => Promise<Sample>;

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('demo: run as root (it creates network namespaces and runc containers); see README.md');
    return 1;
  }
  if (!IPERF3) {
    console.error('demo: iperf3 is not on PATH (the bulk throughput measure runs it): apt-get install iperf3, or bash ci/setup.sh');
    return 1;
  }
  let topo: Topology | undefined;
  // One cleanup, whoever asks first (main's finally or the signal handler); both wait for it.
  let cleaning: Promise<void> | undefined;
  const cleanup = () => {
    cleaning ??= (async () => {
      if (!topo) return;
      step('cleaning up: containers, brokers, namespaces');
      await topo.destroy();
    })();
    return cleaning;
  };
  // Kept installed (not `once`): execa's exit handler re-raises a signal that has no listener left,
  // which would kill the process before cleanup ends. A second Ctrl-C is ignored while cleaning up.
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    process.stdout.write('\ninterrupted\n');
    cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await sweepStaleRunc();
    step('creating two emulated hosts: network namespaces joined by a veth pair, a VXLAN overlay between their container bridges');
    topo = await Topology.create({ containers: [1, 1], register: false });
    const lab = new RuncLab(topo);
    const [h1] = topo.hosts;
    for (const h of topo.hosts) step(`host ${h.index} (${h.ns}): underlay ${h.ip}, container subnet ${h.subnet}, broker on ${h.ip}:${topo.port}`);
    for (const h of topo.hosts) {
      const health = (await topo.status(h)).health as HealthMsg;
      step(
        `host ${h.index} broker: headers ${health.headerAuth === 'cluster key' ? `signed and checked with the cluster key (${health.clusterKeySource}, fingerprint ${health.clusterKeyFingerprint})` : health.headerAuth}`,
      );
    }
    await startContainers(topo, lab);

    const ends = pathEnds(topo, lab);
    await waitServing(ends);

    const k0 = await topo.counters(h1);
    step(
      `measuring ${ROUNDS} interleaved rounds (the first path rotates each round) of: connect / 16-byte echo / close, one client; ` +
        `16-byte echo on one kept connection; iperf3 bulk, one stream — ${SECONDS} s per path`,
    );
    const overlay = overlayDuringSlimfast(topo);
    const results = await measureAll(ends, overlay.wrap);
    const k1 = await topo.counters(h1);
    printTable(results);
    step(
      `during the rounds host 1's broker handed ${k1.handed_out - k0.handed_out} host connections to the client container; ` +
        `the VXLAN device carried ${overlay.packets} packets during the SlimFast rounds`,
    );
    const failed = failures(results);
    for (const f of failed) console.error(`demo: ${f}`);
    return failed.length ? 1 : 0;
  } catch (err) {
    if (!interrupted) console.error(`demo failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

/**
 * The server container on host 2 (echo servers on SlimFast and plain), the client container on host 1,
 * both through slimfast-runc, and the host path's echo server in host 2's namespace.
 */
async function startContainers(topo: Topology, lab: RuncLab): Promise<void> {
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');

  step('building a busybox root filesystem with the benchmark clients and iperf3');
  // iperf3 keeps its buffer in a file under TMPDIR; the root filesystem is read-only.
  const rootfs = { binaries: [ECHOD, CONNRATE, IPERF3], libraryDeps: [installPaths().preload], env: ['TMPDIR=/dev/shm'] };
  const limit = ['/bin/timeout', '-s', 'KILL', String(LIFETIME_S)];
  const server = `${limit.join(' ')} /bin/env -u LD_PRELOAD ${ECHOD} ${PORT.vxlan} & exec ${limit.join(' ')} ${ECHOD} ${PORT.slimfast}`;
  const srvBundle = makeBundle(path.join(topo.dir, 'bundle-server'), { ...rootfs, args: ['/bin/sh', '-c', server], netns: c2.netnsPath });
  const cliBundle = makeBundle(path.join(topo.dir, 'bundle-client'), {
    ...rootfs,
    args: [...limit, '/bin/sleep', String(LIFETIME_S)],
    netns: c1.netnsPath,
  });

  const srv = await lab.run(h2, 'server', srvBundle);
  step(`slimfast-runc run ${srv.id} on host 2: echo server at ${c2.ip}:${PORT.slimfast} on SlimFast, a plain one at :${PORT.vxlan}`);
  await topo.waitListener(c2.ip, PORT.slimfast, 15_000);
  const cli = await lab.run(h1, 'client', cliBundle);
  step(`slimfast-runc run ${cli.id} on host 1: the client (${c1.ip})`);
  for (const h of [h1, h2]) {
    const list = (await topo.registered(h)).map((c) => `${c.id} ${c.ip}`).join(', ') || 'none';
    step(`host ${h.index} broker: registered by slimfast-hook: ${list}`);
  }
  const hostServer = execa('ip', ['netns', 'exec', h2.ns, ...limit, ECHOD, String(PORT.host), h2.ip], { reject: false, cleanup: true });
  topo.adopt(hostServer);
}

/** The paths' ends: host 1 and 2's namespaces, or the client and server runc containers. */
function pathEnds(topo: Topology, lab: RuncLab): Ends {
  const [h1, h2] = topo.hosts;
  const c2 = topo.container('c2');
  // The VXLAN baseline runs in the same containers without the preload.
  const plain = (which: PathName, argv: string[]) => (which === 'vxlan' ? ['/bin/env', '-u', 'LD_PRELOAD', ...argv] : argv);
  return {
    client: (which, argv, timeout) =>
      which === 'host'
        ? execa('ip', ['netns', 'exec', h1.ns, ...argv], { reject: false, stdin: 'ignore', timeout })
        : lab.exec('client', plain(which, argv), { timeout }),
    server: (which, argv, timeout) => {
      if (which !== 'host') return lab.start('server', plain(which, argv), { timeout });
      const child = execa('ip', ['netns', 'exec', h2.ns, ...argv], { reject: false, stdin: 'ignore', cleanup: true, timeout });
      topo.adopt(child);
      return child;
    },
    ip: (which) => (which === 'host' ? h2.ip : c2.ip),
    waitServer: async (which, port) => {
      const ns = which === 'host' ? h2.ns : c2.ns;
      const listening = async () => (await execa('ip', ['netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`])).stdout.trim() !== '';
      await topo.waitFor(listening, 10_000, `a server on port ${port} (${which})`);
      if (which === 'slimfast') await topo.waitListener(c2.ip, port);
    },
  };
}

/** One short connrate over SlimFast until it succeeds (bounded): the containers are up and serving. */
async function waitServing(ends: Ends): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await connrateRun(ends, 'slimfast', 0.2, false);
      if (r.conns > 0 && r.errors === 0) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error('the client container cannot reach the server container on SlimFast');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Host 1's VXLAN packets during the SlimFast samples, which cross host to host and so add none. */
function overlayDuringSlimfast(topo: Topology): { packets: number; wrap: Wrap } {
  const [h1] = topo.hosts;
  const counter = {
    packets: 0,
    wrap: async (which: PathName, run: () => Promise<Sample>): Promise<Sample> => {
      if (which !== 'slimfast') return run();
      const before = await topo.overlayPackets(h1);
      try {
        return await run();
      } finally {
        const after = await topo.overlayPackets(h1);
        counter.packets += after.tx - before.tx + (after.rx - before.rx);
      }
    },
  };
  return counter;
}

/**
 * Every measure over every path, ROUNDS times, interleaved. A failed sample is reported and counted
 * (the demo then exits with 1) and the others go on.
 */
async function measureAll(ends: Ends, wrap: Wrap): Promise<Results> {
  const empty = (): Cell => ({ values: [], p50: [], errors: 0 });
  const results: Results = new Map(MEASURES.map((m) => [m, { host: empty(), vxlan: empty(), slimfast: empty() }]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const m of MEASURES) {
      for (const which of pathOrder(round)) {
        if (interrupted) throw new Error('interrupted');
        const s = await wrap(which, () => m.sample(ends, which)).catch((err: Error): Sample => ({ value: NaN, errors: 1, firstError: err.message }));
        if (interrupted) throw new Error('interrupted');
        const cell = results.get(m)![which];
        if (Number.isFinite(s.value)) cell.values.push(s.value);
        if (s.p50_us !== undefined) cell.p50.push(s.p50_us);
        cell.errors += s.errors;
        cell.firstError ??= s.firstError;
        process.stdout.write(`${roundLine(round, m, which, s)}\n`);
      }
    }
  }
  return results;
}

function roundLine(round: number, m: Measure, which: PathName, s: Sample): string {
  const head = `    round ${round}  ${m.id.padEnd(11)} ${which.padEnd(8)}`;
  if (!Number.isFinite(s.value)) return `${head} ERROR ${s.firstError}`;
  const p50 = m.p50 && s.p50_us !== undefined ? `  ${m.p50.short} ${s.p50_us.toFixed(0).padStart(4)} µs` : '';
  return `${head} ${s.value.toFixed(m.digits).padStart(8)} ${m.unit.padEnd(6)}${p50}${s.errors ? `  errors ${s.errors} (${s.firstError})` : ''}`;
}

/** The median over the rounds per path; NaN where a path has no figure. */
function medians(cells: Record<PathName, Cell>, what: 'values' | 'p50'): ByPath {
  return Object.fromEntries(PATHS.map((p) => [p, median(cells[p][what])])) as ByPath;
}

/** What went wrong, one line per measure and path; empty when every sample succeeded. */
function failures(results: Results): string[] {
  const out: string[] = [];
  for (const [m, cells] of results) {
    for (const p of PATHS) {
      const c = cells[p];
      if (c.errors > 0) out.push(`${m.id} over ${p}: ${c.errors} error${c.errors === 1 ? '' : 's'} (first: ${c.firstError})`);
      else if (!c.values.length || c.values.some((v) => v <= 0)) out.push(`${m.id} over ${p}: no figure`);
    }
  }
  return out;
}

function printTable(results: Results): void {
  const cols = (v: ByPath, digits: number) => PATHS.map((p) => (Number.isFinite(v[p]) ? v[p].toFixed(digits) : '–').padStart(15)).join('');
  const head = `medians of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}`;
  console.log(`\n  ${head.padEnd(40)}${PATHS.map((p) => LABEL[p].padStart(15)).join('')}`);
  for (const [m, cells] of results) {
    const value = medians(cells, 'values');
    const p50 = medians(cells, 'p50');
    console.log(`  ${m.title.padEnd(40)}${cols(value, m.digits)}`);
    if (m.p50) console.log(`    ${m.p50.row.padEnd(38)}${cols(p50, 0)}`);
    const missing = PATHS.filter((p) => cells[p].errors > 0 || !(value[p] > 0));
    console.log(`    verdict: ${missing.length ? `none, ${missing.join(' and ')} failed (see the rounds above)` : m.verdict(value, p50)}`);
  }
  console.log('  (one client, ratios taken in this run; `npm run bench` measures more)\n');
}

main().then((code) => {
  if (!interrupted) process.exit(code);
});
