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
import { repoRoot } from '../broker/paths.js';
import { Topology } from '../lab/topology.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const PORT = 7000;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-pooled-'));
const POOLED = path.join(dir, 'pooled');

let topo: Topology;

test.before(async () => {
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', POOLED, path.join(repoRoot(), 'test', 'apps', 'pooled.c')], { stdio: 'pipe', timeout: 60_000 });
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

interface Case { case: string; ok: boolean; pooled: boolean; detail: string }

test.serial('sockets handed out at socket() behave as the kernel’s own', async (t) => {
  const [h1] = topo.hosts;
  const k0 = await topo.counters(h1);
  const r = await topo.exec(topo.container('c1'), [POOLED, topo.container('c2').ip, String(PORT)], { timeout: 60_000, reject: false });
  t.is(r.exitCode, 0, String(r.stderr));
  const cases = String(r.stdout).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Case);
  for (const c of cases) t.log(JSON.stringify(c));
  const by = new Map(cases.map((c) => [c.case, c]));
  t.true(by.get('warmup')?.ok, 'socket() began handing out pooled sockets');
  const names = ['blocking', 'sock_nonblock', 'fcntl_nonblock', 'fionbio', 'reblock', 'bind', 'miss', 'dup', 'fork', 'held', 'after'];
  for (const n of names) {
    const c = by.get(n);
    t.truthy(c, `case ${n} ran`);
    t.true(c?.ok, `${n}: ${c?.detail}`);
  }
  // Each case's socket() was a pooled host socket (else the case tested nothing new).
  for (const n of ['blocking', 'sock_nonblock', 'fcntl_nonblock', 'fionbio', 'reblock', 'bind', 'miss', 'dup', 'fork', 'held', 'after'])
    t.true(by.get(n)?.pooled, `${n}: socket() handed out a pooled socket`);
  // The broker counts every one that became a connection (reports come in batches; the process
  // flushes them at exit).
  await topo.waitFor(async () => (await topo.counters(h1)).pool_taken - k0.pool_taken >= 8, 5000, 'pooled connections counted');
});

test.serial('a connection costs the client no more than two syscalls beyond the host’s', async (t) => {
  // Host path: socket, setsockopt(TCP_NODELAY), connect, send, recv, close = 6 per connection.
  const n = 600;
  const out = path.join(dir, 'strace.txt');
  const r = await topo.exec(topo.container('c1'), ['strace', '-f', '-c', '-o', out, CONNRATE, topo.container('c2').ip, String(PORT), '-n', String(n), '-t', '20'], { timeout: 60_000, reject: false });
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
