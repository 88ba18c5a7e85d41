#!/usr/bin/env node
// Rough engine CPU cost per connection (loopback only): node native/addon/tests/bench.mjs [N] [PARALLEL]
// Two engines as in selftest.mjs; a drain process accepts on the listener; a client loops CONNECTs.
// Prints the engine threads' CPU time (from /proc schedstat) divided by the number of connections.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..', '..');
const { Engine } = createRequire(import.meta.url)(process.env.SLIMFAST_ADDON ?? path.join(root, 'build', 'Release', 'slimfast_addon.node'));
const N = Number(process.argv[2] ?? 20000);
const PAR = Number(process.argv[3] ?? 1); // concurrent clients per run
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-bench-'));
const sfclient = path.join(tmp, 'sfclient');
execFileSync('gcc', ['-O2', '-I', path.join(root, 'native', 'include'), '-o', sfclient, path.join(here, 'sfclient.c')]);

function client(sock) {
  const p = spawn(sfclient, [sock], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiters = [];
  readline.createInterface({ input: p.stdout }).on('line', (l) => waiters.shift()?.(JSON.parse(l)));
  const next = () => new Promise((r) => waiters.push(r));
  const ready = next();
  return {
    p,
    ready,
    cmd: (line) => {
      p.stdin.write(`${line}\n`);
      return next();
    },
    quit: () => p.stdin.end('quit\n'),
  };
}

const E1 = new Engine();
const E2 = new Engine();
const ov = '10.96.0.0/12';
E1.start({ hostIp: '127.0.0.1', port: 0, overlayCidr: ov, localSubnet: '10.99.0.0/24' }, () => {});
E2.start({ hostIp: '127.0.0.2', port: 0, overlayCidr: ov, localSubnet: '10.98.0.0/24' }, () => {});
E1.setPeers([{ ip: '127.0.0.2', subnet: '10.98.0.0/24', port: E2.counters().port }]);
E2.setPeers([{ ip: '127.0.0.1', subnet: '10.99.0.0/24', port: E1.counters().port }]);
E1.addContainer('a', '10.99.0.2', path.join(tmp, 'a.sock'));
E1.addContainer('b', '10.99.0.3', path.join(tmp, 'b.sock'));
E2.addContainer('c', '10.98.0.2', path.join(tmp, 'c.sock'));
const A = client(path.join(tmp, 'a.sock'));
const B = client(path.join(tmp, 'b.sock'));
const C = client(path.join(tmp, 'c.sock'));
await Promise.all([A.ready, B.ready, C.ready]);
const l = await B.cmd('listen 0.0.0.0 80');
await B.cmd(`drain ${l.h}`);
E2.setRemoteListeners('127.0.0.1', ['10.99.0.3:80']);

async function run(name, sock, checkKey, echo) {
  const cls = Array.from({ length: PAR }, () => client(path.join(tmp, sock)));
  await Promise.all(cls.map((c) => c.ready));
  const c1 = E1.counters();
  const c2 = E2.counters();
  const t0 = process.hrtime.bigint();
  const rs = await Promise.all(cls.map((c) => c.cmd(`loop ${N} 10.99.0.3 80 ${echo}`)));
  const wall = Number(process.hrtime.bigint() - t0) / 1000 / (N * PAR);
  const d1 = E1.counters();
  const d2 = E2.counters();
  const total = N * PAR;
  const per = (a, b) => ((b.engine_cpu_us - a.engine_cpu_us) / total).toFixed(2);
  console.log(
    `${name.padEnd(26)} x${PAR} ok=${rs.reduce((a, r) => a + r.ok, 0)} fb=${rs.reduce((a, r) => a + r.fallback, 0)} ` +
      `wall=${wall.toFixed(1)}us/conn  E1 cpu=${per(c1, d1)}us/conn (${checkKey}=${d1[checkKey] - c1[checkKey]})  E2 cpu=${per(c2, d2)}us/conn`,
  );
  for (const c of cls) c.quit();
}
await run('same-host (E1 only)', 'a.sock', 'same_host', 0);
await run('cross-host C@E2 -> B@E1', 'c.sock', 'handed_in', 0);
await run('cross-host + 16B echo', 'c.sock', 'handed_in', 1);
console.log('E1', E1.counters());
console.log('E2', E2.counters());
A.quit();
B.quit();
C.quit();
await new Promise((r) => setTimeout(r, 200));
E1.stop();
E2.stop();
fs.rmSync(tmp, { recursive: true, force: true });
