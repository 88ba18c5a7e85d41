// What one container may take from its broker, and which source ports its processes may name.
//
// Flood: host 1's broker runs with RLIMIT_NOFILE 4096 (--fd-limit), so its per-container limits
// are scaled down (89 broker connections per container) and two processes of c1 that open 3000
// connections each to c1's broker socket would, without them, take every descriptor the broker
// has. Meanwhile c3 (same host) keeps connecting to c2 on host 2 and to c4 on host 1: those
// connections must stay on SlimFast (handed out / same-host counters rise, both VXLAN devices stay
// flat), `slimfast status` must answer promptly, and c1's refused connections are counted. A new
// process of c1 is refused a broker connection too, and falls back to c1's own network.
//
// Ports: sfclient (native/addon/tests/sfclient.c) speaks the broker protocol itself, as an
// attacker would, and asks for source port 22 (SF_CONNECT port_a): refused with EACCES for uid
// 65534 without capabilities, allowed for root, and allowed once the container's
// net.ipv4.ip_unprivileged_port_start is lowered to 0. A preloaded root client that binds
// privileged source ports connects through the broker each time (receivers refuse them in pooled
// headers), and the server sees them.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../common/paths.js';
import { type Container, Topology } from '../lab/topology.js';
import { CLIENT, ECHO_SERVER, echoRun, PY } from './lib/apps.js';
import { checkHandedOff, handoffSnapshot } from './lib/handoff.js';
import { asNobodyWithSocket } from './lib/nobody.js';

const FLOOD = path.join(repoRoot(), 'test', 'apps', 'broker_flood.py');
const FD_LIMIT = 4096;
const CROSS = 7000; // echo server in c2 (host 2)
const SAME = 7100; // echo server in c4 (host 1)

// uid 65534 must reach sfclient: a 0755 directory of its own.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-limits-'));
fs.chmodSync(dir, 0o755);
const SFCLIENT = path.join(dir, 'sfclient');

let topo: Topology;

test.before(async () => {
  execFileSync(
    'gcc',
    [
      '-O1',
      '-Wall',
      '-I',
      path.join(repoRoot(), 'native', 'include'),
      '-o',
      SFCLIENT,
      path.join(repoRoot(), 'native', 'addon', 'tests', 'sfclient.c'),
    ],
    { stdio: 'pipe', timeout: 60_000 },
  );
  // c1 (the flood), c3 (the neighbour), c4 (a server) on host 1; c2 (a server) on host 2.
  topo = await Topology.create({ containers: [1, 1], brokerArgs: (h) => (h.index === 1 ? ['--fd-limit', String(FD_LIMIT)] : []) });
  for (const name of ['c3', 'c4']) {
    await topo.addContainer(topo.hosts[0], name);
    await topo.register(topo.container(name));
  }
  for (const [name, port] of [
    ['c2', CROSS],
    ['c4', SAME],
  ] as const) {
    const c = topo.container(name);
    topo.spawn(c, [PY, ECHO_SERVER, String(port)]);
    await topo.waitPort(c, port);
    await topo.waitListener(c.ip, port);
  }
});

test.after.always(async () => {
  await topo?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface FloodResult {
  attempts: number;
  held: number;
  refused: number;
  statuses: Record<string, number>;
  closed: number;
  unanswered: number;
  busy: number;
  errors: number;
  seconds: number;
}

test.serial('a container flooding its broker socket is refused past its limit; its neighbours stay on SlimFast and status answers', async (t) => {
  t.timeout(120_000);
  const [h1] = topo.hosts;
  const [c1, c2, c3, c4] = ['c1', 'c2', 'c3', 'c4'].map((n) => topo.container(n));
  const health = (await topo.status(h1)).health;
  t.is(health.fdLimit, FD_LIMIT, 'the broker runs with --fd-limit');
  const limit = health.containerConnsMax as number;
  t.true(limit >= 8 && limit < 200, `scaled down under RLIMIT_NOFILE ${FD_LIMIT}: ${limit} broker connections per container`);
  t.log(
    `host 1: RLIMIT_NOFILE ${health.fdLimit}, ${health.fdReserve} kept for the control plane; per container ${limit} broker connections, ` +
      `${health.containerPoolsMax} pools, ${health.containerListenersMax} listener channels, ${health.containerPendingMax} connects in progress`,
  );

  const k0 = await topo.counters(h1);
  const HOLD_S = 20;
  const flood = () => topo.exec(c1, [PY, FLOOD, c1.env!.SLIMFAST_SOCKET, '3000', String(HOLD_S)], { slimfast: false, timeout: 60_000 });
  const floods = Promise.all([flood(), flood()]);
  await topo.waitFor(async () => (await topo.counters(h1)).limit_conns - k0.limit_conns >= 1000, 10_000, 'the flood to meet the limit');

  // The neighbour's connections, cross-host and same-host, while `slimfast status` is timed.
  const before = await handoffSnapshot(topo);
  const statusMs: number[] = [];
  const sampling = (async () => {
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      await topo.status(h1);
      statusMs.push(Date.now() - t0);
      await sleep(200);
    }
  })();
  const cross = await echoRun(topo, c3, c2.ip, CROSS, 30);
  const same = await echoRun(topo, c3, c4.ip, SAME, 30);
  await sampling;
  for (const [run, what] of [
    [cross, 'cross-host'],
    [same, 'same-host'],
  ] as const) {
    t.deepEqual(run.errors, [], `${what}: every connection of c3 worked during the flood`);
    t.is(run.results.length, 30);
    t.true(
      run.results.every((r) => r.echo_ok && r.server_peer === r.local),
      `${what}: virtual addresses on both ends`,
    );
  }
  const mid = await handoffSnapshot(topo);
  t.is(mid.k1.same_host - before.k1.same_host, 30, 'every same-host connection of c3 went through SlimFast');
  await checkHandedOff(t, topo, before, 30);
  t.true(Math.max(...statusMs) < 5000, `slimfast status answered in ${statusMs.join(', ')} ms`);
  t.log(
    `during the flood: c3's 30 cross-host connections handed out (${cross.seconds.toFixed(2)} s), 30 same-host (${same.seconds.toFixed(2)} s); ` +
      `slimfast status in ${statusMs.join(', ')} ms`,
  );

  // A new process of c1 is refused a broker connection (EMFILE): it falls back to c1's own
  // network at once and its connections work.
  const o0 = await topo.overlayPackets(h1);
  const t0 = Date.now();
  const own = await echoRun(topo, c1, c2.ip, CROSS, 5);
  const ownMs = Date.now() - t0;
  t.deepEqual(own.errors, [], "c1's own new process still connects");
  t.true(own.results.every((r) => r.echo_ok));
  t.true(ownMs < 5000, `in ${ownMs} ms`);
  t.true((await topo.overlayPackets(h1)).tx > o0.tx, 'over its own network (the overlay)');

  const results = (await floods).map((r) => {
    t.is(r.exitCode, 0, String(r.stderr));
    return JSON.parse(String(r.stdout)) as FloodResult;
  });
  t.log(`flood: ${JSON.stringify(results)}`);
  const sum = (f: (r: FloodResult) => number) => results.reduce((a, r) => a + f(r), 0);
  t.is(
    sum((r) => r.held),
    limit,
    `c1 held exactly its ${limit} broker connections`,
  );
  t.is(
    sum((r) => r.statuses.EMFILE ?? 0),
    sum((r) => r.refused),
    'every other one was told EMFILE',
  );
  t.true(
    sum((r) => r.refused) + sum((r) => r.closed) + limit >=
      sum((r) => r.attempts) - sum((r) => r.busy) - sum((r) => r.errors) - sum((r) => r.unanswered),
  );
  t.true(sum((r) => r.refused) >= 5000, `${sum((r) => r.refused)} refused`);
  const k1 = await topo.counters(h1);
  t.true(k1.limit_conns - k0.limit_conns >= sum((r) => r.refused), `limit_conns +${k1.limit_conns - k0.limit_conns}`);
  t.is(k1.limit_fds - k0.limit_fds, 0, 'the broker never came near its descriptor budget');
  await topo.waitFor(async () => (await topo.counters(h1)).preload_conns <= k0.preload_conns, 10_000, "the flood's connections to close");
});

/** Runs sfclient in container c against c's broker socket (as uid 65534 with `nobody`, through a bind mount it can reach); one JSON line per command (after its "ready"). */
async function sfclient(c: Container, commands: string[], nobody: boolean): Promise<Record<string, unknown>[]> {
  const sock = c.env!.SLIMFAST_SOCKET;
  const cmd = nobody ? asNobodyWithSocket(sock, path.join(dir, `run-${c.name}`), (at) => [SFCLIENT, at]) : [SFCLIENT, sock];
  const r = await execa('ip', ['netns', 'exec', c.ns, ...cmd], { input: [...commands, 'quit', ''].join('\n'), reject: false, timeout: 30_000 });
  if (r.exitCode !== 0) throw new Error(`sfclient in ${c.name} exited ${r.exitCode}: ${r.stderr}`);
  const lines = String(r.stdout)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  if (!lines[0]?.ready) throw new Error(`sfclient in ${c.name} could not reach its broker: ${r.stdout}`);
  return lines.slice(1);
}

test.serial(
  'a source port below ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE: uid 65534 gets EACCES, root and a lowered sysctl pass',
  async (t) => {
    const [h1, h2] = topo.hosts;
    const [c2, c3] = ['c2', 'c3'].map((n) => topo.container(n));
    const ask = [`connect ${c2.ip} ${CROSS} 22`];
    const k0 = await topo.counters(h1);

    const [, denied] = await sfclient(c3, ['hello', ...ask], true);
    t.is(denied.status, 13, `uid 65534: EACCES (${JSON.stringify(denied)})`);
    t.is(denied.h, -1, 'no socket');
    t.is((await topo.counters(h1)).sport_denied - k0.sport_denied, 1, 'counted in sport_denied');

    // root: handed out, and the server sees port 22 (its hello line names its peer)
    const [, ok, hello] = await sfclient(c3, ['hello', ...ask, 'recv last 3000'], false);
    t.is(ok.status, 0, JSON.stringify(ok));
    t.is(ok.port_a, 22);
    t.regex(String(hello.data), new RegExp(`^hello ${c2.ip}:${CROSS} ${c3.ip}:22 `), 'the server sees source port 22');

    // The container lowers the sysctl (as Docker does): the broker reads it again before refusing
    // (at most once a second: a moment after the refusal above).
    await execa('ip', ['netns', 'exec', c3.ns, 'sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=0']);
    await sleep(1100);
    try {
      const [, now, hello2] = await sfclient(c3, ['hello', ...ask, 'recv last 3000'], true);
      t.is(now.status, 0, `uid 65534 with ip_unprivileged_port_start 0: ${JSON.stringify(now)}`);
      t.regex(String(hello2.data), new RegExp(` ${c3.ip}:22 `));
    } finally {
      await execa('ip', ['netns', 'exec', c3.ns, 'sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=1024']);
    }
    t.is((await topo.counters(h1)).sport_denied - k0.sport_denied, 1, 'no more refusals');

    // A preloaded root client binding privileged source ports: every connect goes through the broker
    // (a pooled header may not carry one), the server sees each port, nothing takes the overlay.
    const before = await handoffSnapshot(topo);
    const r = await topo.exec(c3, [PY, CLIENT, 'bound', c2.ip, String(CROSS), '900', '4']);
    t.is(r.exitCode, 0, String(r.stderr));
    const out = JSON.parse(String(r.stdout)) as { sport: number; server_peer?: string; echo_ok?: boolean; error?: string }[];
    t.deepEqual(
      out.map((x) => x.server_peer),
      [900, 901, 902, 903].map((p) => `${c3.ip}:${p}`),
      JSON.stringify(out),
    );
    t.true(out.every((x) => x.echo_ok));
    await checkHandedOff(t, topo, before, 4);
    const k2 = await topo.counters(h2);
    t.is(k2.header_low_sport - before.k2.header_low_sport, 0, 'no pooled header with a privileged port was sent');
  },
);
