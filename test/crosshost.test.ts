// End to end across two emulated hosts: container TCP on host sockets through the reserved port.
import test from 'ava';
import { CLIENT, ECHO_SERVER, type EchoRun, echoRun, PY } from './lib/apps.js';
import path from 'node:path';
import { repoRoot } from '../common/paths.js';

const REPOINT = path.join(repoRoot(), 'test', 'apps', 'repoint.py');
import { execa } from 'execa';
import { Topology } from '../lab/topology.js';

let topo: Topology;

test.before(async () => {
  // c1, c3 on host 1; c2, c4 on host 2. c4 is never registered (an address SlimFast does not know).
  topo = await Topology.create({ containers: [1, 1] });
  await topo.addContainer(topo.hosts[0], 'c3');
  await topo.register(topo.container('c3'));
  await topo.addContainer(topo.hosts[1], 'c4');
});

test.after.always(async () => {
  await topo?.destroy();
});

const echo = async (from: string, to: string, port: number, count: number, slimfast = true): Promise<EchoRun> =>
  echoRun(topo, topo.container(from), topo.container(to).ip, port, count, { slimfast });

test.serial('cross-host connections use one host TCP connection to the reserved port, not the overlay', async (t) => {
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  topo.spawn(c2, [PY, ECHO_SERVER, '7000']);
  await topo.waitPort(c2, 7000);
  await topo.waitListener(c2.ip, 7000);

  const before = { h1: await topo.overlayPackets(h1), h2: await topo.overlayPackets(h2), c1: await topo.counters(h1), c2: await topo.counters(h2) };
  const tfo0 = await topo.tcpExt(h2, 'TCPFastOpenPassive');
  const run = await echo('c1', 'c2', 7000, 50);
  t.deepEqual(run.errors, []);
  t.is(run.results.length, 50);
  for (const r of run.results) {
    t.true(r.echo_ok);
    // virtual addresses on both ends, consistent with each other
    t.is(r.peer, `${c2.ip}:7000`);
    t.is(r.server_local, `${c2.ip}:7000`);
    t.true(r.local.startsWith(`${c1.ip}:`), r.local);
    t.is(r.server_peer, r.local);
  }
  const after = { h1: await topo.overlayPackets(h1), h2: await topo.overlayPackets(h2), c1: await topo.counters(h1), c2: await topo.counters(h2) };
  t.deepEqual(after.h1, before.h1, 'VXLAN device on host 1 carried no packets');
  t.deepEqual(after.h2, before.h2, 'VXLAN device on host 2 carried no packets');
  t.is(after.c1.handed_out - before.c1.handed_out, 50);
  t.is(after.c2.handed_in - before.c2.handed_in, 50);
  // The first connect asks the broker; it sends a pool, and nearly all later ones come from it.
  const pooled = after.c1.pool_taken - before.c1.pool_taken;
  t.true(pooled >= 40 && pooled <= 49, `${pooled} of 50 connects came from the pool`);
  // Pooled sockets are TCP Fast Open ones: the header rides in the SYN, the handshake happens at use.
  const tfo = (await topo.tcpExt(h2, 'TCPFastOpenPassive')) - tfo0;
  t.true(tfo >= pooled, `${tfo} connections arrived with their header in the SYN, ${pooled} were pooled`);
  // Those went from the kernel straight to the server's listening socket, not through its broker.
  const steered = after.c2.steered - before.c2.steered;
  t.true(steered >= pooled, `${steered} of 50 connections were steered by the kernel, ${pooled} were pooled`);
  t.is(after.c2.doorbells - before.c2.doorbells, 50 - steered, 'the rest were handed over by the broker and announced by a doorbell');

  // while a connection is open, the host namespace shows the plain host TCP connection
  const hold = topo.spawn(c1, [PY, CLIENT, 'hold', c2.ip, '7000', '3']);
  let ss = '';
  await topo.waitFor(
    async () => {
      ss = (await topo.hostExec(h1, ['ss', '-Htn', 'state', 'established', `dst ${h2.ip}:4800`])).stdout;
      return ss.includes(`${h2.ip}:4800`);
    },
    5000,
    'host connection in ss',
  );
  t.regex(ss, /192\.168\.77\.1:\d+\s+192\.168\.77\.2:4800/);
  await hold;
});

test.serial('same-host connections go through the kernel to the listener, not through the broker', async (t) => {
  const [h1] = topo.hosts;
  const c3 = topo.container('c3');
  topo.spawn(c3, [PY, ECHO_SERVER, '7100']);
  await topo.waitPort(c3, 7100);
  await topo.waitListener(c3.ip, 7100);
  const before = await topo.counters(h1);
  const run = await echo('c1', 'c3', 7100, 20);
  t.deepEqual(run.errors, []);
  for (const r of run.results) {
    t.true(r.echo_ok);
    t.is(r.peer, `${c3.ip}:7100`);
    t.is(r.server_peer, r.local);
  }
  const after = await topo.counters(h1);
  t.is(after.same_host - before.same_host, 20);
  t.is(after.handed_out - before.handed_out, 0);
  t.is(after.handed_in - before.handed_in, 0);
  // The listener is steered: each connection came to this host's reserved port with its header in
  // the SYN, and the kernel put it in the listener's accept queue (no loopback pair, no doorbell).
  t.is(after.same_host_steered - before.same_host_steered, 20);
  t.is(after.steered - before.steered, 20);
  t.is(after.doorbells - before.doorbells, 0);
});

test.serial('a client not on SlimFast reaches a SlimFast server over the container interface', async (t) => {
  const c2 = topo.container('c2');
  // port 7000 is served on SlimFast by the first test; make sure it is there even when run alone
  if (!(await topo.status(topo.hosts[1])).listeners.some((l: { port: number }) => l.port === 7000)) {
    topo.spawn(c2, [PY, ECHO_SERVER, '7000']);
    await topo.waitListener(c2.ip, 7000);
  }
  const before = await topo.counters(topo.hosts[1]);
  const run = await echo('c1', 'c2', 7000, 10, false);
  t.deepEqual(run.errors, []);
  for (const r of run.results) {
    t.true(r.echo_ok);
    t.is(r.server_peer, r.local, 'the server sees the real client address');
  }
  const after = await topo.counters(topo.hosts[1]);
  t.is(after.plain_accepts - before.plain_accepts, 10);
});

test.serial('a SlimFast client reaches servers that are not on SlimFast', async (t) => {
  const c2 = topo.container('c2');
  const c4 = topo.container('c4');
  // a plain process in a registered container, and one in an unregistered container
  topo.spawn(c2, [PY, ECHO_SERVER, '7200'], { slimfast: false });
  topo.spawn(c4, [PY, ECHO_SERVER, '7300'], { slimfast: false });
  await topo.waitPort(c2, 7200);
  await topo.waitPort(c4, 7300);
  const before = await topo.counters(topo.hosts[0]);
  for (const [to, port] of [
    ['c2', 7200],
    ['c4', 7300],
  ] as const) {
    const run = await echo('c1', to, port, 5);
    t.deepEqual(run.errors, [], `to ${to}`);
    for (const r of run.results) {
      t.true(r.echo_ok);
      t.is(r.server_peer, r.local);
    }
  }
  const after = await topo.counters(topo.hosts[0]);
  t.is(after.handed_out - before.handed_out, 0, 'none went over SlimFast');
  // The client asked its broker once per destination; the answer ("not a SlimFast listener") held
  // for its other connects, since no listener appeared meanwhile (the view page did not move).
  t.is(after.fallbacks - before.fallbacks, 2, 'the broker was asked once per destination');
});

test.serial('a pooled destination whose listener closed is refused again, not connected', async (t) => {
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  const server = topo.spawn(c2, [PY, ECHO_SERVER, '7050']);
  await topo.waitPort(c2, 7050);
  await topo.waitListener(c2.ip, 7050);
  const k0 = await topo.counters(h1);
  const client = execa('ip', topo.argv(c1, [PY, CLIENT, 'then-refused', c2.ip, '7050', '20']), { reject: false, timeout: 60_000 });
  topo.adopt(client);
  const lines: string[] = [];
  client.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  await topo.waitFor(async () => lines.length >= 1, 30_000, "the client's echo connections");
  t.deepEqual(JSON.parse(lines[0]), { echoed: 20 });
  t.true((await topo.counters(h1)).pool_taken - k0.pool_taken >= 10, 'the client was taking pooled connections');
  server.kill('SIGKILL');
  // Its listener leaves host 2's table and host 1's view; the client's confirmation expires (1 s).
  await topo.waitFor(async () => !(await topo.status(h2)).listeners?.some((l: { port: number }) => l.port === 7050), 10_000, 'the listener to go');
  await new Promise((r) => setTimeout(r, 1200));
  client.stdin!.write('go\n');
  const r = await client;
  const out = JSON.parse(String(r.stdout).trim().split('\n').pop()!) as { connected: boolean; errno?: number };
  t.false(out.connected, 'a pooled socket was not used for a destination that went away');
  t.is(out.errno, 111, 'ECONNREFUSED');
});

test.serial("an application cannot re-point the reserved port's group from its steered listener", async (t) => {
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  topo.spawn(c2, [PY, ECHO_SERVER, '7060']);
  await topo.waitPort(c2, 7060);
  await topo.waitListener(c2.ip, 7060);
  // A second application on host 2 holds a steered listener too, and tries the three options on it.
  const k0 = await topo.counters(h2);
  const r = await topo.exec(topo.container('c4'), [PY, REPOINT, '7061', '1'], {
    env: JSON.parse(
      (await topo.cli(['container', 'add', '--state-dir', h2.stateDir, '--id', 'c4', '--netns', topo.container('c4').netnsPath])).stdout,
    ).env,
  });
  try {
    t.is(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, string | null>;
    t.deepEqual(
      out,
      { listener_cbpf: 'EPERM', listener_detach: 'EPERM', own_cbpf: null, own_detach: null },
      'refused on the steered listener (raw syscalls), allowed on a socket of its own',
    );
    const k1 = await topo.counters(h2);
    t.true(k1.steered_listeners > k0.steered_listeners, 'its listener was a steered one');
    t.is(k1.steer_guard_denied - k0.steer_guard_denied, 2, 'both refusals counted');
    // Connections to c2 still go to c2, steered by the kernel.
    const run = await echo('c1', 'c2', 7060, 20);
    t.deepEqual(run.errors, []);
    t.true(run.results.every((x) => x.server_local === `${c2.ip}:7060` && x.local.startsWith(`${c1.ip}:`)));
    const k2 = await topo.counters(h2);
    t.true(k2.steered - k1.steered >= 15, `${k2.steered - k1.steered} of 20 steered`);
    t.is((await topo.counters(h1)).steer_guard_denied, 0);
  } finally {
    await topo.cli(['container', 'rm', '--state-dir', h2.stateDir, '--id', 'c4'], { reject: false });
  }
});

test.serial('connecting to a port where nothing listens is refused promptly', async (t) => {
  for (const to of ['c2', 'c3', 'c4']) {
    const r = await topo.exec(topo.container('c1'), [PY, CLIENT, 'refused', topo.container(to).ip, '7999']);
    const out = JSON.parse(r.stdout) as { connected: boolean; errno: number; seconds: number };
    t.false(out.connected, to);
    t.is(out.errno, 111, `${to}: ECONNREFUSED`);
    t.true(out.seconds < 2, `${to}: refused in ${out.seconds} s`);
  }
});

test.serial('several forked processes accepting on one listener never mix up peers', async (t) => {
  const c2 = topo.container('c2');
  topo.spawn(c2, [PY, ECHO_SERVER, '7400', '--fork', '3']);
  await topo.waitPort(c2, 7400);
  await topo.waitListener(c2.ip, 7400);
  const runs = await Promise.all([echo('c1', 'c2', 7400, 30), echo('c3', 'c2', 7400, 30)]);
  const pids = new Set<number>();
  for (const run of runs) {
    t.deepEqual(run.errors, []);
    for (const r of run.results) {
      t.true(r.echo_ok);
      t.is(r.server_peer, r.local, 'each connection is paired with its own peer');
      pids.add(r.server_pid);
    }
  }
  t.true(pids.size >= 2, `accepted by ${pids.size} worker process(es)`);
});

test.serial('several threads accepting on one listener never mix up peers', async (t) => {
  const c2 = topo.container('c2');
  topo.spawn(c2, [PY, ECHO_SERVER, '7500', '--threads', '4']);
  await topo.waitPort(c2, 7500);
  await topo.waitListener(c2.ip, 7500);
  const runs = await Promise.all([echo('c1', 'c2', 7500, 30), echo('c3', 'c2', 7500, 30)]);
  const threads = new Set<string>();
  for (const run of runs) {
    t.deepEqual(run.errors, []);
    for (const r of run.results) {
      t.true(r.echo_ok);
      t.is(r.server_peer, r.local, 'each connection is paired with its own peer');
      threads.add(r.server_thread);
    }
  }
  t.true(threads.size >= 2, `accepted by ${threads.size} thread(s): ${[...threads].join(', ')}`);
});

test.serial("same-named containers on two hosts never get each other's connections, and an unregistered one leaves no listener behind", async (t) => {
  const [h1, h2] = topo.hosts;
  const [c1, c2, c3, c4] = ['c1', 'c2', 'c3', 'c4'].map((n) => topo.container(n));
  // Container ids are per host: c4 registers on host 2 under the name c1 has on host 1.
  const added = await topo.cli(['container', 'add', '--state-dir', h2.stateDir, '--id', 'c1', '--netns', c4.netnsPath]);
  const env = (JSON.parse(added.stdout) as { env: Record<string, string> }).env;
  try {
    topo.spawn(c1, [PY, ECHO_SERVER, '7400']);
    topo.spawn(c4, [PY, ECHO_SERVER, '7400'], { env });
    for (const c of [c1, c4]) {
      await topo.waitPort(c, 7400);
      await topo.waitListener(c.ip, 7400);
    }
    const k0 = [await topo.counters(h1), await topo.counters(h2)];
    for (const [from, to] of [
      [c3, c4],
      [c2, c1],
    ]) {
      const run = await echo(from.name, to.name, 7400, 10);
      t.deepEqual(run.errors, []);
      t.true(
        run.results.every((r) => r.echo_ok && r.server_local === `${to.ip}:7400`),
        `${from.name} -> ${to.name} reached ${to.name}`,
      );
    }
    const k1 = [await topo.counters(h1), await topo.counters(h2)];
    t.is(k1[0].handed_out - k0[0].handed_out, 10);
    t.is(k1[1].handed_out - k0[1].handed_out, 10);

    const remote = async () => (await topo.status(h1)).peers.find((p: { ip: string }) => p.ip === h2.ip).listeners as number;
    const before = await remote();
    await topo.cli(['container', 'rm', '--state-dir', h2.stateDir, '--id', 'c1']);
    await topo.waitFor(
      async () => !(await topo.status(h2)).listeners.some((l: { ip: string }) => l.ip === c4.ip),
      5000,
      'host 2 to drop the listener',
    );
    await topo.waitFor(async () => (await remote()) === before - 1, 5000, 'host 1 to drop it from its view of host 2');
    t.true(
      (await topo.status(h1)).listeners.some((l: { ip: string; port: number }) => l.ip === c1.ip && l.port === 7400),
      "host 1's c1 keeps its own",
    );
    // c4's server process still runs, but SlimFast no longer hands it anything.
    const k2 = await topo.counters(h1);
    const run = await echo('c3', 'c4', 7400, 3);
    t.is(run.results.length + run.errors.length, 3, 'each connect finished');
    t.is((await topo.counters(h1)).handed_out - k2.handed_out, 0, 'no connection was handed to the unregistered container');
  } finally {
    await topo.cli(['container', 'rm', '--state-dir', h2.stateDir, '--id', 'c1'], { reject: false });
  }
});
