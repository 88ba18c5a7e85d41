// Operations: the broker's Prometheus metrics (--metrics HOST:PORT) scraped from inside emulated
// hosts while real cross-host connections run, its refusal of bad or taken addresses, and the
// structured log lines.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { formatPretty, Logger } from '../broker/log.js';
import { parseMetricsAddress } from '../broker/metrics.js';
import { CLI, type Host, Topology } from '../lab/topology.js';
import { CLIENT, ECHO_SERVER, echoRun, PY } from './lib/apps.js';

const METRICS_PORT = 9480;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format, sample lines only. */
function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

class Scrape {
  constructor(
    readonly text: string,
    readonly samples = parseExposition(text),
  ) {}
  /** The one sample of name whose labels include want; throws if there is none. */
  get(name: string, want: Record<string, string> = {}): number {
    const s = this.samples.find((x) => x.name === name && Object.entries(want).every(([k, v]) => x.labels[k] === v));
    if (!s) throw new Error(`no sample ${name}${JSON.stringify(want)} in:\n${this.text}`);
    return s.value;
  }
  has(name: string): boolean {
    return this.samples.some((x) => x.name === name);
  }
  /** Histogram buckets of one side, by upper bound, in the order served. */
  buckets(name: string, side: string): { le: string; value: number }[] {
    return this.samples.filter((x) => x.name === `${name}_bucket` && x.labels.side === side).map((x) => ({ le: x.labels.le, value: x.value }));
  }
}

/** GET /metrics from inside the host's namespace (where the broker listens). */
async function scrape(topo: Topology, h: Host): Promise<Scrape> {
  const url = `http://${h.ip}:${METRICS_PORT}/metrics`;
  const r = await topo.hostExec(h, ['curl', '-sSf', '--max-time', '10', url]);
  if (r.exitCode !== 0) throw new Error(`curl ${url} in ${h.ns} failed (${r.exitCode}): ${r.stderr}`);
  return new Scrape(r.stdout);
}

test.serial('metrics: handoffs, latency histograms, containers, listeners and peers over real cross-host connections', async (t) => {
  // No pools: every connect asks the broker, so each one is in the client-side histogram. The
  // policy denies c1 (10.200.1.2) port 7001 on host 2.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfmetrics-'));
  const policy = path.join(dir, 'policy.json');
  fs.writeFileSync(policy, JSON.stringify({ default: 'allow', rules: [{ action: 'deny', from: '10.200.1.2', to: '10.200.2.0/24', ports: '7001' }] }));
  const topo = await Topology.create({
    containers: [1, 1],
    brokerArgs: (h) => ['--metrics', `${h.ip}:${METRICS_PORT}`, '--pool-depth', '0', '--policy', policy],
  });
  try {
    const [h1, h2] = topo.hosts;
    const c1 = topo.container('c1');
    const c2 = topo.container('c2');
    topo.spawn(c2, [PY, ECHO_SERVER, '7000']);
    await topo.waitPort(c2, 7000);
    await topo.waitListener(c2.ip, 7000);

    const before = { h1: await scrape(topo, h1), h2: await scrape(topo, h2) };
    t.is(before.h1.get('slimfast_peers'), 1);
    t.is(before.h1.get('slimfast_peers_synced'), 1);
    t.false(before.h1.has('slimfast_etcd_up'), 'no etcd state without --etcd');
    t.is(before.h1.get('slimfast_seccomp_keeper_attached'), 1, 'the seccomp agent is attached to its keeper');
    t.is(before.h1.get('slimfast_seccomp_notifications_total', { result: 'handed' }), 0);
    t.regex((await topo.cli(['status', '--state-dir', h1.stateDir])).stdout, /^membership static: 1 peer\(s\), 1 in sync$/m);
    // The per-container limits in force, and no refusal at any of them.
    const health = (await topo.status(h1)).health;
    t.is(before.h1.get('slimfast_container_limit', { limit: 'conns' }), health.containerConnsMax);
    t.true(health.containerConnsMax > 0);
    t.is(before.h1.get('slimfast_fd_limit'), health.fdLimit);
    for (const limit of ['conns', 'pools', 'listeners', 'pending', 'fds']) t.is(before.h1.get('slimfast_limit_refusals_total', { limit }), 0, limit);
    t.is(before.h1.get('slimfast_port_denied_total', { call: 'connect' }), 0);
    t.regex(
      (await topo.cli(['status', '--state-dir', h1.stateDir])).stdout,
      /^limits per container: \d+ broker connections, \d+ pools, \d+ listener channels, \d+ connects in progress; \d+ descriptors kept for the control plane$/m,
    );

    const N = 25;
    const run = await echoRun(topo, c1, c2.ip, 7000, N);
    t.deepEqual(run.errors, []);
    t.is(run.results.filter((x) => x.echo_ok && x.peer === `${c2.ip}:7000`).length, N);

    const after = { h1: await scrape(topo, h1), h2: await scrape(topo, h2) };
    const delta = (host: 'h1' | 'h2', name: string, labels: Record<string, string> = {}) =>
      after[host].get(name, labels) - before[host].get(name, labels);
    t.true(delta('h1', 'slimfast_handoffs_total', { side: 'client' }) >= N, 'client side handed off every connection');
    t.true(delta('h2', 'slimfast_handoffs_total', { side: 'server' }) >= N, 'server side handed off every connection');
    t.is(delta('h1', 'slimfast_fallbacks_total'), 0, 'none fell back');
    t.is(delta('h1', 'slimfast_pool_hits_total'), 0, 'no pools with --pool-depth 0');
    t.true(delta('h1', 'slimfast_handoff_seconds_count', { side: 'client' }) >= N, 'every client-side handoff is in the histogram');
    t.true(delta('h1', 'slimfast_handoff_seconds_sum', { side: 'client' }) > 0);
    // The server side's broker sees only what the kernel did not steer straight to the listener.
    const served = delta('h2', 'slimfast_handoff_seconds_count', { side: 'server' }) + delta('h2', 'slimfast_steered_total');
    t.true(served >= N, `${served} of ${N} connections were steered or handed in by the broker (and timed)`);
    const clientCount = delta('h1', 'slimfast_handoff_seconds_count', { side: 'client' });
    const mean = (delta('h1', 'slimfast_handoff_seconds_sum', { side: 'client' }) / clientCount) * 1e6;
    t.log(
      `client-side handoffs: ${clientCount}, mean ${mean.toFixed(0)} us; server side: ${delta('h2', 'slimfast_handoff_seconds_count', { side: 'server' })} by the broker, ${delta('h2', 'slimfast_steered_total')} steered by the kernel`,
    );

    for (const [host, s] of Object.entries(after)) {
      for (const side of ['client', 'server']) {
        const b = s.buckets('slimfast_handoff_seconds', side);
        t.is(b.at(-1)?.le, '+Inf', `${host} ${side}: last bucket +Inf`);
        t.is(b.at(-1)?.value, s.get('slimfast_handoff_seconds_count', { side }), `${host} ${side}: +Inf bucket equals count`);
        for (let i = 1; i < b.length; i++) t.true(b[i].value >= b[i - 1].value, `${host} ${side}: buckets are cumulative`);
        for (let i = 1; i < b.length - 1; i++) t.true(Number(b[i].le) > Number(b[i - 1].le));
      }
    }

    // Without TCP Fast Open on host 1 the header follows the handshake, so host 2's kernel cannot
    // steer the connections: its broker hands each one in, and times it.
    const off = await topo.hostExec(h1, ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=0']);
    t.is(off.exitCode, 0, off.stderr);
    const M = 10;
    const s0 = await scrape(topo, h2);
    t.deepEqual((await echoRun(topo, c1, c2.ip, 7000, M)).errors, []);
    const s1 = await scrape(topo, h2);
    const inCount = s1.get('slimfast_handoff_seconds_count', { side: 'server' }) - s0.get('slimfast_handoff_seconds_count', { side: 'server' });
    t.true(inCount >= M, `${inCount} of ${M} connections handed in by host 2's broker are in its histogram`);
    t.true(s1.get('slimfast_handoffs_total', { side: 'server' }) - s0.get('slimfast_handoffs_total', { side: 'server' }) >= M);
    t.true(s1.get('slimfast_handoff_seconds_sum', { side: 'server' }) > s0.get('slimfast_handoff_seconds_sum', { side: 'server' }));
    t.log(
      `server-side handoffs by the broker: ${inCount}, mean ${(((s1.get('slimfast_handoff_seconds_sum', { side: 'server' }) - s0.get('slimfast_handoff_seconds_sum', { side: 'server' })) / inCount) * 1e6).toFixed(0)} us`,
    );

    // Gauges agree with what the control API says.
    for (const h of [h1, h2]) {
      const st = await topo.status(h);
      const s = await scrape(topo, h);
      t.is(s.get('slimfast_containers'), (await topo.registered(h)).length, `${h.ns}: containers`);
      t.is(s.get('slimfast_containers'), st.containers.length);
      t.is(s.get('slimfast_listeners'), st.listeners.length, `${h.ns}: listeners`);
      t.is(s.get('slimfast_handoffs_total', { side: 'client' }), st.counters.handed_out);
    }
    t.is((await scrape(topo, h2)).get('slimfast_listeners'), 1, 'the echo server listens on host 2');

    // Denied connects count as refused by the policy, and the log line names the container.
    const d0 = await scrape(topo, h1);
    const denied = await topo.exec(c1, [PY, CLIENT, 'connects', c2.ip, '7001', '3'], { timeout: 30_000 });
    t.is(denied.exitCode, 0, denied.stderr);
    t.true(
      (JSON.parse(denied.stdout) as { errno: number }[]).every((x) => x.errno === 13),
      denied.stdout,
    );
    const d1 = await scrape(topo, h1);
    t.is(d1.get('slimfast_refused_total', { reason: 'policy' }) - d0.get('slimfast_refused_total', { reason: 'policy' }), 3);
    t.is(d1.get('slimfast_handoffs_total', { side: 'client' }), d0.get('slimfast_handoffs_total', { side: 'client' }), 'nothing handed off');
    const records = () =>
      fs
        .readFileSync(h1.daemonLog, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    await topo.waitFor(async () => records().some((r) => /^policy: denied /.test(String(r.msg))), 5000, 'the denial in the log');
    const denial = records().find((r) => /^policy: denied /.test(String(r.msg)));
    t.is(denial?.container, 'c1', JSON.stringify(denial));
    t.is(denial?.level, 'info');
    const reg = records().find((r) => String(r.msg).startsWith('registered container c1 '));
    t.is(reg?.container, 'c1', JSON.stringify(reg));

    // A second container registered on host 1 shows up at the next scrape.
    await topo.addContainer(h1, 'c3');
    await topo.register(topo.container('c3'));
    t.is((await scrape(topo, h1)).get('slimfast_containers'), 2);

    // Other paths answer 404, and the content type is Prometheus text.
    const miss = await topo.hostExec(h1, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${h1.ip}:${METRICS_PORT}/`]);
    t.is(miss.stdout, '404');
    const head = await topo.hostExec(h1, ['curl', '-sI', `http://${h1.ip}:${METRICS_PORT}/metrics`]);
    t.regex(head.stdout, /content-type: text\/plain; version=0\.0\.4/i);
  } finally {
    await topo.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('metrics: etcd state and peers in cluster mode', async (t) => {
  const topo = await Topology.create({
    hosts: 2,
    containers: [1, 1],
    etcd: { leaseTtl: 3 },
    brokerArgs: (h) => ['--metrics', `${h.ip}:${METRICS_PORT}`],
  });
  try {
    const [h1] = topo.hosts;
    const s = await scrape(topo, h1);
    t.is(s.get('slimfast_etcd_up'), 1);
    t.is(s.get('slimfast_peers'), 1);
    await topo.waitSynced();
    t.regex((await topo.cli(['status', '--state-dir', h1.stateDir])).stdout, /^membership etcd: connected; 1 peer\(s\), 1 in sync$/m);
    await topo.stopEtcd();
    await topo.waitFor(async () => (await scrape(topo, h1)).get('slimfast_etcd_up') === 0, 30_000, 'slimfast_etcd_up to drop to 0');
    t.is((await topo.status(h1)).health.etcdState, 'unreachable');
    t.regex((await topo.cli(['status', '--state-dir', h1.stateDir])).stdout, /^membership etcd: unreachable \(.+\); 1 peer\(s\)/m);
    t.is((await scrape(topo, h1)).get('slimfast_peers'), 1, 'the last known view is kept');
  } finally {
    await topo.destroy();
  }
});

const cli = (args: string[]) => execa(process.execPath, [CLI, ...args], { reject: false, timeout: 20_000 });

test('--metrics with a bad address is refused before anything is claimed', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfmetrics-'));
  try {
    for (const bad of [
      '9480',
      'localhost:9480',
      '127.0.0.1',
      '127.0.0.1:',
      '127.0.0.1:0',
      '127.0.0.1:70000',
      '300.1.1.1:9480',
      '::1:9480',
      '[127.0.0.1]:9480',
    ]) {
      const r = await cli(['daemon', '--host-ip', '127.0.0.1', '--state-dir', path.join(dir, 's'), '--metrics', bad]);
      t.is(r.exitCode, 2, bad);
      t.regex(r.stderr, /--metrics ".*": .*expected HOST:PORT/, bad);
      t.false(fs.existsSync(path.join(dir, 's')), `${bad}: the state dir is untouched`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--metrics on a port in use says which, and claims nothing', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfmetrics-'));
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const port = (holder.address() as net.AddressInfo).port;
  try {
    const r = await cli(['daemon', '--host-ip', '127.0.0.1', '--state-dir', path.join(dir, 's'), '--metrics', `127.0.0.1:${port}`]);
    t.is(r.exitCode, 1);
    t.regex(r.stderr, new RegExp(`--metrics 127\\.0\\.0\\.1:${port}: cannot serve metrics: port ${port} is in use on 127\\.0\\.0\\.1`));
    t.false(fs.existsSync(path.join(dir, 's')), 'the state dir is untouched');
  } finally {
    holder.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('parseMetricsAddress takes IPv4 and bracketed IPv6 addresses', (t) => {
  t.deepEqual(parseMetricsAddress('127.0.0.1:9480'), { host: '127.0.0.1', port: 9480 });
  t.deepEqual(parseMetricsAddress('0.0.0.0:1'), { host: '0.0.0.0', port: 1 });
  t.deepEqual(parseMetricsAddress('[::1]:65535'), { host: '::1', port: 65535 });
  t.throws(() => parseMetricsAddress('[::1]:65536'), { message: /port "65536" is not 1-65535/ });
  t.throws(() => parseMetricsAddress('example.org:9480'), { message: /"example\.org" is not an IP address/ });
});

function capture(level: string, json: boolean) {
  const lines: string[] = [];
  return { lines, log: new Logger(level, { json, dest: { write: (s: string) => lines.push(s) } }) };
}

test('logs: JSON lines carry level, time, message and the container id', (t) => {
  const { lines, log } = capture('info', true);
  log.debug('not shown at info');
  log.info('registered container web (10.200.1.2)', { container: 'web' });
  log.warn('plain line');
  log.error('odd fields', { level: 'x', n: 3, gone: undefined });
  t.is(lines.length, 3);
  const recs = lines.map((l) => {
    t.true(l.endsWith('\n'));
    return JSON.parse(l) as Record<string, unknown>;
  });
  t.is(recs[0].level, 'info');
  t.is(recs[0].msg, 'registered container web (10.200.1.2)');
  t.is(recs[0].container, 'web');
  t.regex(String(recs[0].time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.true(Math.abs(Date.parse(String(recs[0].time)) - Date.now()) < 60_000);
  t.deepEqual(Object.keys(recs[1]).sort(), ['level', 'msg', 'time']);
  t.is(recs[1].level, 'warn');
  // A field may not overwrite the record's own keys; undefined ones are left out.
  t.is(recs[2].level, 'error');
  t.is(recs[2].level_, 'x');
  t.is(recs[2].n, 3);
  t.false('gone' in recs[2]);
});

test('logs: plain text on a terminal, fields as key=value', (t) => {
  const { lines, log } = capture('debug', false);
  log.debug('listener add 10.200.1.2:80 (web)', { container: 'web' });
  log.info('with a spaced field', { container: 'my app', peer: '192.168.77.2' });
  t.is(lines.length, 2);
  t.regex(lines[0], /^\d{4}-\d\d-\d\dT\S+Z debug listener add 10\.200\.1\.2:80 \(web\) {2}container=web\n$/);
  t.regex(lines[1], /^\S+ info {2}with a spaced field {2}container="my app" peer=192\.168\.77\.2\n$/);
  t.is(formatPretty({ time: 'T', level: 'warn', msg: 'm' }), 'T warn  m\n');
  t.throws(() => new Logger('verbose'), { message: /unknown log level "verbose"; use one of debug, info, warn, error/ });
});
