// The workloads of `npm run bench`. Each one starts its servers on all three paths once (setup),
// then runs one bounded sample over one path at a time (run); the harness interleaves the paths.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { type BenchPath, CLIENTS, CONNRATE, CONNRATE_STATIC, ECHOD, type ConnrateResult, PATHS, type PathName } from './measure.js';
import type { BenchLab, Place, Role } from './lab.js';

export const MEMCRATE = path.join(CLIENTS, 'memcrate');

export interface Settings {
  rounds: number;
  /** seconds per connrate / memcrate sample */
  seconds: number;
  /** seconds per iperf3 sample (whole seconds) */
  bulkSeconds: number;
  /** seconds per wrk sample (whole seconds) */
  httpSeconds: number;
  /** parallel clients for the "several clients" connection-rate test */
  parallel: number;
  /** requests per redis-benchmark test (set and get each) */
  redisShortN: number;
  redisKeepN: number;
}

export interface MetricDef {
  id: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
}

export interface SampleOut {
  metrics: Record<string, number>;
  /** connections / requests / operations completed (CPU per op divides by this) */
  ops: number;
  /** payload bytes moved (iperf3; CPU per GB divides by this) */
  bytes?: number;
  errors: number;
  firstError?: string;
  /** CPU seconds of the processes the sample started (clients; iperf3's one-shot server) */
  clientCpu_s: number;
}

export interface Workload {
  id: string;
  title: string;
  /** what one operation is, for "CPU per …" */
  op: string;
  cpu: 'per_op' | 'per_gb';
  /** both ends on host 1 (same-host test): the SlimFast check looks for same-host pairings */
  sameHost: boolean;
  /** also measured over the seccomp path (a static client on the broker's seccomp agent) */
  seccomp?: boolean;
  /** what the paths are in this workload */
  labels: Record<PathName, string> & { seccomp?: string };
  metrics: MetricDef[];
  setup(lab: BenchLab, s: Settings, note: (msg: string) => void): Promise<void>;
  /** Per-sample preparation outside the measured window (e.g. a one-shot server); run gets it back. */
  prepare?(lab: BenchLab, which: BenchPath, s: Settings): Promise<{ dispose(): Promise<void> }>;
  run(lab: BenchLab, which: BenchPath, s: Settings, ctx?: unknown): Promise<SampleOut>;
  /** With --profile: the processes whose CPU a sample reports on its own (role → pid), looked up before it. */
  processes?(lab: BenchLab, which: BenchPath): Promise<Record<string, number>>;
}

const CROSS: Record<PathName, string> = {
  host: 'host ns → host ns',
  vxlan: 'container → container (VXLAN)',
  slimfast: 'container → container (SlimFast)',
};
const CROSS_SECCOMP = { ...CROSS, seccomp: 'static client container → container (SlimFast, seccomp agent)' };
const LOCAL: Record<PathName, string> = {
  host: 'host loopback',
  vxlan: 'container → container (bridge)',
  slimfast: 'container → container (SlimFast)',
};

/** In a container the SlimFast and the plain server run side by side, so the plain one is on port+1. */
function portFor(base: number, which: BenchPath): number {
  return which === 'vxlan' ? base + 1 : base;
}

class SampleError extends Error {}

function fail(msg: string): never {
  throw new SampleError(msg);
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ').slice(0, 300);
}

// ---------------------------------------------------------------------------------------------
// Servers, started once for all three paths.

const started = new Set<string>();

async function startOnAllPaths(
  lab: BenchLab,
  key: string,
  role: Role,
  base: number,
  cmd: (which: PathName, port: number, where: Place) => string[],
): Promise<void> {
  if (started.has(key)) return;
  started.add(key);
  for (const which of PATHS) {
    const p = lab.place(role, which);
    const port = portFor(base, which);
    const child = lab.spawn(p, cmd(which, port, p));
    try {
      await lab.waitServer(p, which, port);
    } catch (err) {
      child.kill('SIGKILL');
      const r = await child;
      throw new Error(
        `${key} server on the ${which} path (${p.where}) did not come up: ${(err as Error).message}; ${tail(String(r.stderr ?? '') + String(r.stdout ?? ''))}`,
      );
    }
  }
}

const ECHO_PORT = 7000;
const LOCAL_ECHO_PORT = 7100;
const IPERF_PORT = 5201;
const PROXY_PORT = 8000;
const UPSTREAM_PORT = 8080;
const MEMCACHED_PORT = 11211;
const REDIS_PORT = 6379;

const echoServers = (lab: BenchLab) => startOnAllPaths(lab, 'echo', 'server', ECHO_PORT, (_w, port) => [ECHOD, String(port)]);
const localEchoServers = (lab: BenchLab) => startOnAllPaths(lab, 'local-echo', 'local', LOCAL_ECHO_PORT, (_w, port) => [ECHOD, String(port)]);

// ---------------------------------------------------------------------------------------------
// Connection-rate family (bench/clients/connrate.c, memcrate.c)

async function rateClient(lab: BenchLab, which: BenchPath, bin: string, role: Role, base: number, args: string[], s: Settings) {
  const client = lab.place('client', which);
  const server = lab.place(role, which);
  const cmd = [bin, server.ip, String(portFor(base, which)), '-t', String(s.seconds), ...args];
  const r = await lab.run(client, which === 'seccomp' ? lab.seccompCmd('client', cmd) : cmd, s.seconds * 1000 + 30_000);
  if (r.timedOut) fail(`${path.basename(bin)} timed out`);
  let j: ConnrateResult & { ops?: number };
  try {
    j = JSON.parse(r.stdout) as ConnrateResult;
  } catch {
    fail(`${path.basename(bin)} exited with ${r.exitCode}: ${tail(r.stderr || r.stdout)}`);
  }
  return { j, cpu: r.cpu_s };
}

function connrateWorkload(
  id: string,
  title: string,
  opts: { threads?: number; keep?: boolean; local?: boolean; latency?: boolean; seccomp?: boolean; profiled?: boolean; fastOpen?: boolean },
): Workload {
  const keep = opts.keep ?? false;
  const metrics: MetricDef[] = keep
    ? [
        { id: 'rate', label: 'requests/s', unit: 'req/s', better: 'higher' },
        { id: 'rtt_p50', label: 'request/response p50', unit: 'µs', better: 'lower' },
        { id: 'rtt_p99', label: 'request/response p99', unit: 'µs', better: 'lower' },
      ]
    : [{ id: 'rate', label: 'connections/s', unit: 'conn/s', better: 'higher' }];
  if (!keep && opts.latency) {
    metrics.push({ id: 'connect_p50', label: 'connect() p50', unit: 'µs', better: 'lower' });
    metrics.push({ id: 'connect_p99', label: 'connect() p99', unit: 'µs', better: 'lower' });
  }
  return {
    id,
    title,
    op: keep ? 'request' : 'connection',
    cpu: 'per_op',
    sameHost: opts.local ?? false,
    seccomp: opts.seccomp ?? false,
    labels: opts.local ? LOCAL : opts.seccomp ? CROSS_SECCOMP : CROSS,
    metrics,
    async setup(lab) {
      if (opts.fastOpen) await serverFastOpen(lab);
      await (opts.local ? localEchoServers(lab) : echoServers(lab));
    },
    async run(lab, which, s) {
      const args = ['-n', '2000000', '-s', '16', '-c', String(opts.threads ?? 1), ...(keep ? ['-k'] : []), ...(opts.fastOpen ? ['-F'] : [])];
      const bin = which === 'seccomp' ? CONNRATE_STATIC : CONNRATE;
      const { j, cpu } = await rateClient(lab, which, bin, opts.local ? 'local' : 'server', opts.local ? LOCAL_ECHO_PORT : ECHO_PORT, args, s);
      return {
        metrics: {
          rate: j.rate,
          rtt_p50: j.rtt_p50_us,
          rtt_p99: j.rtt_p99_us,
          connect_p50: j.connect_p50_us,
          connect_p99: j.connect_p99_us,
          close_p50: j.close_p50_us ?? NaN,
        },
        ops: j.conns,
        errors: j.errors,
        firstError: j.first_error || undefined,
        clientCpu_s: cpu,
      };
    },
    processes: opts.profiled
      ? async (lab, which) => {
          const e = echoConnections(lab, which === 'seccomp' ? 'slimfast' : which, 0);
          const [broker1, broker2] = await lab.brokerPids();
          return { server: lab.findProcess(e.server, e.serverArgv), broker1, broker2 };
        }
      : undefined,
  };
}

/** Lets the echo servers' namespaces take data in Fast Open SYNs (clients may send them by default). */
async function serverFastOpen(lab: BenchLab): Promise<void> {
  for (const which of PATHS) {
    const ns = lab.place('server', which).ns;
    const r = await execa('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.tcp_fastopen=3'], { reject: false });
    if (r.exitCode !== 0) throw new Error(`cannot enable Fast Open in ${ns}: ${r.stderr}`);
  }
}

/** The workload `--profile` breaks down (bench/budget.ts). */
export const PROFILED = 'conn-1';

/**
 * conn-1 as the profile's traced runs make it: a fixed count of connections (the time bound only a
 * safeguard), and the command line of the echo server it talks to, to find that process.
 */
export function echoConnections(lab: BenchLab, which: PathName, n: number): { client: Place; cmd: string[]; server: Place; serverArgv: string[] } {
  const client = lab.place('client', which);
  const server = lab.place('server', which);
  const port = String(portFor(ECHO_PORT, which));
  return { client, server, serverArgv: [ECHOD, port], cmd: [CONNRATE, server.ip, port, '-n', String(n), '-t', '60', '-s', '16', '-c', '1'] };
}

// ---------------------------------------------------------------------------------------------
// memcached, a new connection per operation (bench/clients/memcrate.c)

const memcached: Workload = {
  id: 'memcached',
  title: 'memcached, connect / set or get / close',
  op: 'operation',
  cpu: 'per_op',
  sameHost: false,
  labels: CROSS,
  metrics: [{ id: 'rate', label: 'operations/s', unit: 'ops/s', better: 'higher' }],
  async setup(lab) {
    await startOnAllPaths(lab, 'memcached', 'server', MEMCACHED_PORT, (_w, port) => [
      'memcached',
      '-u',
      'root',
      '-p',
      String(port),
      '-l',
      '0.0.0.0',
      '-U',
      '0',
      '-t',
      '2',
      '-c',
      '4096',
    ]);
  },
  async run(lab, which, s) {
    const { j, cpu } = await rateClient(lab, which, MEMCRATE, 'server', MEMCACHED_PORT, ['-n', '2000000', '-s', '32', '-c', String(s.parallel)], s);
    return { metrics: { rate: j.rate }, ops: j.ops ?? j.conns, errors: j.errors, firstError: j.first_error || undefined, clientCpu_s: cpu };
  },
};

// ---------------------------------------------------------------------------------------------
// redis-benchmark, -k 0 (a connection per request) and -k 1

function redis(keep: boolean): Workload {
  return {
    id: keep ? 'redis-k1' : 'redis-k0',
    title: keep ? 'redis-benchmark -k 1 (kept connections), SET+GET' : 'redis-benchmark -k 0 (connection per request), SET+GET',
    op: 'request',
    cpu: 'per_op',
    sameHost: false,
    labels: CROSS,
    metrics: [{ id: 'rate', label: 'requests/s', unit: 'req/s', better: 'higher' }],
    async setup(lab) {
      await startOnAllPaths(lab, 'redis', 'server', REDIS_PORT, (_w, port) => [
        'redis-server',
        '--port',
        String(port),
        '--bind',
        '0.0.0.0',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
        '--loglevel',
        'warning',
      ]);
    },
    async run(lab, which, s) {
      const n = keep ? s.redisKeepN : s.redisShortN;
      const server = lab.place('server', which);
      const r = await lab.run(
        lab.place('client', which),
        [
          'redis-benchmark',
          '-h',
          server.ip,
          '-p',
          String(portFor(REDIS_PORT, which)),
          '-c',
          String(s.parallel),
          '-n',
          String(n),
          '-k',
          keep ? '1' : '0',
          '-t',
          'set,get',
          '--csv',
        ],
        120_000,
      );
      if (r.timedOut) fail('redis-benchmark timed out');
      const rps: Record<string, number> = {};
      for (const line of r.stdout.split('\n')) {
        const m = /^"(SET|GET)","([\d.]+)"/.exec(line);
        if (m) rps[m[1]] = Number(m[2]);
      }
      const errLines = r.stderr.split('\n').filter((l) => /error|refused|reset/i.test(l));
      if (r.exitCode !== 0 || !(rps.SET > 0) || !(rps.GET > 0)) fail(`redis-benchmark exited with ${r.exitCode}: ${tail(r.stderr || r.stdout)}`);
      // both tests ran n requests: the combined rate is all requests over the summed time
      const rate = (2 * n) / (n / rps.SET + n / rps.GET);
      return { metrics: { rate }, ops: 2 * n, errors: errLines.length, firstError: errLines[0], clientCpu_s: r.cpu_s };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// iperf3 bulk throughput. One server per sample (iperf3 -s -1), started before the measurement and
// counted with the clients: a long-running iperf3 server closes and re-creates its listening socket
// after every test, which is a different thing from a bulk transfer (see the probe in setup).

let iperfBind = false;

function iperfError(stdout: string, stderr: string): string {
  try {
    const e = (JSON.parse(stdout) as { error?: string }).error;
    if (e) return e;
  } catch {
    // not JSON
  }
  return tail(stderr || stdout);
}

async function iperfTest(lab: BenchLab, which: BenchPath, port: number, seconds: number) {
  const server = lab.place('server', which);
  return lab.run(lab.place('client', which), ['iperf3', '-c', server.ip, '-p', String(port), '-t', String(seconds), '-J'], seconds * 1000 + 30_000);
}

const iperf3: Workload = {
  id: 'iperf3',
  title: 'iperf3 bulk throughput, one stream',
  op: 'GB',
  cpu: 'per_gb',
  sameHost: false,
  labels: CROSS,
  metrics: [{ id: 'gbps', label: 'throughput', unit: 'Gbit/s', better: 'higher' }],
  async setup(lab, _s, note) {
    if (started.has('iperf3')) return;
    started.add('iperf3');
    // iperf3's default listener is one dual-stack AF_INET6 socket. SlimFast must take it over like
    // any other listener; if it does not (the broker never learns the listener, or a test connection
    // goes over the overlay), every path is bound to its IPv4 address with -B instead, alike.
    // A second test against the same server checks that the listener it re-creates after a test is
    // on SlimFast too (only reported: the samples start one server each).
    const sf = lab.place('server', 'slimfast');
    const probe = lab.spawn(sf, ['iperf3', '-s', '-p', String(IPERF_PORT)]);
    const check = async (what: string): Promise<string> => {
      const vx0 = await lab.vxlanPackets();
      const c0 = await lab.brokerCounters();
      const r = await iperfTest(lab, 'slimfast', IPERF_PORT, 1);
      const vx = (await lab.vxlanPackets()) - vx0;
      const handed = (await lab.brokerCounters()).handed_out - c0.handed_out;
      if (r.exitCode !== 0) return `${what} failed (${r.exitCode}): ${iperfError(r.stdout, r.stderr)}`;
      if (vx > 100 || handed === 0) return `${what} went over the VXLAN overlay (${vx} packets, ${handed} handoffs)`;
      return '';
    };
    let reason = '';
    let relisten = '';
    try {
      await lab.waitServer(sf, 'slimfast', IPERF_PORT, 5000);
      reason = await check('a test transfer');
      if (!reason) {
        await new Promise((r) => setTimeout(r, 500));
        relisten = await check('a second test against the same server');
      }
    } catch (err) {
      reason = `the broker never learned the listener (${(err as Error).message})`;
    }
    probe.kill('SIGTERM');
    await probe;
    iperfBind = reason !== '';
    if (iperfBind)
      note(`iperf3: its default dual-stack listener falls back on SlimFast — ${reason}; all three paths use "iperf3 -s -B <IPv4 address>" instead`);
    else note('iperf3: default dual-stack listener (no -B) on all three paths; SlimFast takes it over');
    if (relisten)
      note(
        `iperf3: a long-running SlimFast iperf3 server breaks after its first test — ${relisten} (it closes and re-creates its listener after each test); samples use one server per test (-s -1) on all paths`,
      );
  },
  async prepare(lab, which, s) {
    const p = lab.place('server', which);
    const port = portFor(IPERF_PORT, which);
    const srv = lab.start(p, ['iperf3', '-s', '-1', '-p', String(port), ...(iperfBind ? ['-B', p.ip] : [])], s.bulkSeconds * 1000 + 60_000);
    const ctx = {
      srv,
      dispose: async () => {
        srv.child.kill('SIGKILL');
        await srv.result;
      },
    };
    try {
      await lab.waitServer(p, which, port);
    } catch (err) {
      await ctx.dispose();
      throw err;
    }
    return ctx;
  },
  async run(lab, which, s, ctx) {
    const { srv } = ctx as { srv: ReturnType<BenchLab['start']> };
    const r = await iperfTest(lab, which, portFor(IPERF_PORT, which), s.bulkSeconds);
    if (r.exitCode !== 0) srv.child.kill('SIGKILL');
    const sr = await srv.result;
    if (r.timedOut) fail('iperf3 timed out');
    let j: { error?: string; end?: { sum_received?: { bits_per_second: number; bytes: number } } };
    try {
      j = JSON.parse(r.stdout);
    } catch {
      fail(`iperf3 exited with ${r.exitCode}: ${iperfError(r.stdout, r.stderr)}`);
    }
    if (j.error || !j.end?.sum_received) fail(`iperf3: ${j.error ?? 'no result'}`);
    const got = j.end.sum_received;
    return { metrics: { gbps: got.bits_per_second / 1e9 }, ops: got.bytes / 1e9, bytes: got.bytes, errors: 0, clientCpu_s: r.cpu_s + sr.cpu_s };
  },
};

export function iperf3Bound(): boolean {
  return iperfBind;
}

// ---------------------------------------------------------------------------------------------
// nginx reverse proxy (host 2) with an HTTP/1.0 upstream (host 1), driven by wrk (host 1)

function nginxConf(dir: string, name: string, body: string): string {
  const file = path.join(dir, `${name}.conf`);
  fs.writeFileSync(
    file,
    `daemon off; master_process on; worker_processes 1; user root; pid ${dir}/${name}.pid;
error_log ${dir}/${name}.err warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}/${name}-body; proxy_temp_path ${dir}/${name}-proxy;
  fastcgi_temp_path ${dir}/${name}-fcgi; uwsgi_temp_path ${dir}/${name}-uwsgi; scgi_temp_path ${dir}/${name}-scgi;
  ${body} }\n`,
  );
  return file;
}

const nginx: Workload = {
  id: 'nginx',
  title: 'nginx reverse proxy, HTTP/1.0 upstream (a connection per request), wrk -c 8',
  op: 'request',
  cpu: 'per_op',
  sameHost: false,
  labels: {
    host: 'host ns: wrk h1 → proxy h2 → upstream h1',
    vxlan: 'containers over VXLAN: c1 → c2 → c3',
    slimfast: 'containers on SlimFast: c1 → c2 → c3',
  },
  metrics: [
    { id: 'rate', label: 'requests/s', unit: 'req/s', better: 'higher' },
    { id: 'lat_p50', label: 'latency p50', unit: 'µs', better: 'lower' },
  ],
  async setup(lab) {
    const dir = path.join(lab.topo.dir, 'nginx');
    fs.mkdirSync(path.join(dir, 'www'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'www', 'index.html'), 'hello from the upstream, over SlimFast or not\n'.repeat(4));
    await startOnAllPaths(lab, 'nginx-upstream', 'upstream', UPSTREAM_PORT, (which, port) => [
      'nginx',
      '-c',
      nginxConf(dir, `upstream-${which}`, `server { listen ${port}; root ${dir}/www; }`),
    ]);
    await startOnAllPaths(lab, 'nginx-proxy', 'server', PROXY_PORT, (which, port) => {
      const up = `${lab.place('upstream', which).ip}:${portFor(UPSTREAM_PORT, which)}`;
      return [
        'nginx',
        '-c',
        nginxConf(
          dir,
          `proxy-${which}`,
          `upstream up { server ${up}; }
  server { listen ${port}; location / { proxy_pass http://up; proxy_http_version 1.0; } }`,
        ),
      ];
    });
  },
  async run(lab, which, s) {
    const server = lab.place('server', which);
    const r = await lab.run(
      lab.place('client', which),
      ['wrk', '-t1', '-c8', `-d${s.httpSeconds}s`, '--latency', `http://${server.ip}:${portFor(PROXY_PORT, which)}/`],
      s.httpSeconds * 1000 + 30_000,
    );
    if (r.timedOut) fail('wrk timed out');
    const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? NaN);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
    if (r.exitCode !== 0 || !(requests > 0) || !(rps > 0)) fail(`wrk exited with ${r.exitCode}: ${tail(r.stderr || r.stdout)}`);
    const p50 = /^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(r.stdout);
    const lat = p50 ? Number(p50[1]) * (p50[2] === 'us' ? 1 : p50[2] === 'ms' ? 1e3 : 1e6) : NaN;
    const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
    const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
    const errors = non2xx + sockErrors;
    return {
      metrics: { rate: rps, lat_p50: lat },
      ops: requests,
      errors,
      firstError: errors ? (non2xx ? `${non2xx} non-2xx responses` : sock![0]) : undefined,
      clientCpu_s: r.cpu_s,
    };
  },
};

// ---------------------------------------------------------------------------------------------

export function allWorkloads(s: Settings): Workload[] {
  return [
    connrateWorkload(PROFILED, 'connect / 16-byte request / response / close, 1 client', { latency: true, seccomp: true, profiled: true }),
    connrateWorkload(`conn-${s.parallel}`, `connect / 16-byte request / response / close, ${s.parallel} clients`, {
      threads: s.parallel,
      seccomp: true,
    }),
    connrateWorkload('rr-kept', '16-byte request / response on a kept-open connection, 1 client', { keep: true }),
    iperf3,
    nginx,
    memcached,
    redis(false),
    redis(true),
    connrateWorkload('samehost-1', 'same host: connect / request / response / close between two containers on host 1, 1 client', {
      local: true,
      latency: true,
    }),
  ];
}

/**
 * Run only when named in --only. conn-1-fo asks whether saving the handshake's round trip would pay
 * here: each path's client puts its request in a Fast Open SYN (the SlimFast path already sends its
 * header that way, so its client's flag changes nothing). Compare it with conn-1 of the same run.
 */
export function extraWorkloads(): Workload[] {
  return [connrateWorkload('conn-1-fo', 'conn-1 with the request in a Fast Open SYN (connrate -F)', { latency: true, fastOpen: true })];
}

export { SampleError };
