// socket() hands out pooled host sockets once a process's connects go through a pool: what the
// application sees of them (test/apps/pooled.c, one case per behaviour: blocking and non-blocking
// connects, O_NONBLOCK set three ways, bind first, a connect elsewhere, dup, fork, held before
// connect, shutdown and addresses before connect), and what a connection costs the client process
// in syscalls (strace -c over a run of bench/clients/connrate).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot } from '../common/paths.js';
import { Topology } from '../lab/topology.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const PORT = 7000;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-pooled-'));
const POOLED = path.join(dir, 'pooled');

let topo: Topology;

test.before(async () => {
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', POOLED, path.join(repoRoot(), 'test', 'apps', 'pooled.c')], {
    stdio: 'pipe',
    timeout: 60_000,
  });
  topo = await Topology.create({ containers: [1, 1] });
  const c2 = topo.container('c2');
  topo.spawn(c2, [ECHOD, String(PORT)]);
  await topo.waitPort(c2, PORT);
  await topo.waitListener(c2.ip, PORT);
});

test.after.always(async () => {
  await topo?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Case {
  case: string;
  ok: boolean;
  pooled: boolean;
  detail: string;
}

test.serial('sockets handed out at socket() behave as the kernel’s own', async (t) => {
  const [h1] = topo.hosts;
  const k0 = await topo.counters(h1);
  const r = await topo.exec(topo.container('c1'), [POOLED, topo.container('c2').ip, String(PORT)], { timeout: 60_000, reject: false });
  t.is(r.exitCode, 0, String(r.stderr));
  const cases = String(r.stdout)
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Case);
  for (const c of cases) t.log(JSON.stringify(c));
  const by = new Map(cases.map((c) => [c.case, c]));
  t.true(by.get('warmup')?.ok, 'socket() began handing out pooled sockets');
  const names = ['blocking', 'sock_nonblock', 'fcntl_nonblock', 'fionbio', 'reblock', 'fastopen', 'bind', 'miss', 'dup', 'fork', 'held', 'after'];
  for (const n of names) {
    const c = by.get(n);
    t.truthy(c, `case ${n} ran`);
    t.true(c?.ok, `${n}: ${c?.detail}`);
  }
  // Each case's socket() was a pooled host socket (else the case tested nothing new).
  for (const n of ['blocking', 'sock_nonblock', 'fcntl_nonblock', 'fionbio', 'reblock', 'fastopen', 'bind', 'miss', 'dup', 'fork', 'held', 'after'])
    t.true(by.get(n)?.pooled, `${n}: socket() handed out a pooled socket`);
  // The broker counts every one that became a connection (reports come in batches; the process
  // flushes them at exit).
  await topo.waitFor(async () => (await topo.counters(h1)).pool_taken - k0.pool_taken >= 8, 5000, 'pooled connections counted');
});

test.serial('a connection costs the client no more than two syscalls beyond the host’s', async (t) => {
  // Host path: socket, setsockopt(TCP_NODELAY), connect, send, recv, close = 6 per connection.
  const n = 600;
  const out = path.join(dir, 'strace.txt');
  const r = await topo.exec(
    topo.container('c1'),
    ['strace', '-f', '-c', '-o', out, CONNRATE, topo.container('c2').ip, String(PORT), '-n', String(n), '-t', '20'],
    { timeout: 60_000, reject: false },
  );
  t.is(r.exitCode, 0, String(r.stderr));
  const res = JSON.parse(String(r.stdout).trim().split('\n').pop() ?? '{}') as { conns: number; errors: number };
  t.is(res.conns, n);
  t.is(res.errors, 0);
  const text = fs.readFileSync(out, 'utf8');
  t.log(text);
  const total = /\n\S*-+.*\n\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*total/.exec(text);
  t.truthy(total, 'strace -c printed a total');
  const calls = Number(total?.[1]);
  // What the process does once (loading, the first connects, threads) is spread over n.
  t.true(calls / n <= 8, `${(calls / n).toFixed(2)} syscalls per connection`);
});

test.serial('remembered answers last until the broker’s view moves: a listener that appears is used, one that closes is refused', async (t) => {
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  const port = 7400;
  // First a plain server (not SlimFast's): the client's broker says so once, and the client
  // connects directly after that, without asking.
  const plain = topo.spawn(c2, [ECHOD, String(port)], { slimfast: false });
  await topo.waitPort(c2, port);
  const k0 = await topo.counters(h1);
  // 300 connects 50 ms apart (15 s): room for the three phases on a loaded machine
  const watch = topo.exec(c1, [POOLED, c2.ip, String(port), '--watch', '300', '50'], { timeout: 60_000, reject: false });
  await sleep(1000);
  const k1 = await topo.counters(h1);
  t.true(k1.fallbacks - k0.fallbacks <= 2, `the broker was asked ${k1.fallbacks - k0.fallbacks} times in a second of connects`);
  // A SlimFast listener takes the port: the same process's next connects go over SlimFast.
  const plainKilled = Date.now();
  plain.kill('SIGKILL');
  await plain.catch(() => undefined);
  const sf = topo.spawn(c2, [ECHOD, String(port)]);
  await topo.waitListener(c2.ip, port);
  const sfReady = Date.now();
  await sleep(1500);
  // It closes: the confirmations the process holds are void once host 1's broker hears of it.
  const peerListeners = async () => ((await topo.status(h1)).peers.find((p: { ip: string }) => p.ip === h2.ip)?.listeners ?? 0) as number;
  const before = await peerListeners();
  sf.kill('SIGKILL');
  await sf.catch(() => undefined);
  await topo.waitFor(async () => (await peerListeners()) < before, 10_000, 'host 1 hears that the listener closed');
  const gone = Date.now();
  const r = await watch;
  t.is(r.exitCode, 0, String(r.stderr));
  type Row = { i: number; t: number; connected: boolean; ok: boolean; local: string };
  const rows = String(r.stdout)
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Row);
  t.is(rows.length, 300);
  const first = rows.filter((x) => x.t < plainKilled - 100);
  t.true(first.length >= 5, `${first.length} connects to the plain server`);
  for (const x of first) t.true(x.ok && x.local === c1.ip, `the first connects went directly, to the plain server: ${JSON.stringify(x)}`);
  const onSf = rows.filter((x) => x.t > sfReady + 300 && x.t < sfReady + 1400);
  t.true(onSf.length >= 5, `${onSf.length} connects while the SlimFast listener was up`);
  for (const x of onSf) t.true(x.ok && x.local === h1.ip, `a connect after the SlimFast listener came went over SlimFast: ${JSON.stringify(x)}`);
  const after = rows.filter((x) => x.t > gone + 1000);
  t.true(after.length >= 5, `${after.length} connects after the listener closed`);
  for (const x of after) t.false(x.connected, `a connect after the listener closed was refused: ${JSON.stringify(x)}`);
});
