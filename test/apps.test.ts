// Real, unmodified applications across two emulated hosts on SlimFast. Each test checks the
// application's own result and that the connections were handed off by the brokers while the VXLAN
// devices stayed silent.
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { PY } from './lib/apps.js';
import { type Container, Topology } from '../lab/topology.js';

let topo: Topology;

test.before(async () => {
  // c1, c3 on host 1; c2 on host 2
  topo = await Topology.create({ containers: [1, 1] });
  await topo.addContainer(topo.hosts[0], 'c3');
  await topo.register(topo.container('c3'));
});

test.after.always(async () => {
  await topo?.destroy();
});

interface Snapshot {
  vx: { tx: number; rx: number }[];
  counters: Record<string, number>[];
}

async function snapshot(): Promise<Snapshot> {
  return {
    vx: await Promise.all(topo.hosts.map((h) => topo.overlayPackets(h))),
    counters: await Promise.all(topo.hosts.map((h) => topo.counters(h))),
  };
}

/** Asserts the VXLAN devices carried nothing and returns handoffs per host since `before`. */
async function onSlimfast(t: ExecutionContext, before: Snapshot): Promise<number[]> {
  const after = await snapshot();
  t.deepEqual(after.vx, before.vx, 'no packet crossed the VXLAN overlay');
  return after.counters.map((c, i) => c.handed_out - before.counters[i].handed_out);
}

async function serve(c: Container, argv: string[], port: number): Promise<void> {
  topo.spawn(c, argv);
  await topo.waitPort(c, port);
  await topo.waitListener(c.ip, port);
}

test.serial('redis-benchmark against redis-server, a new connection per request', async (t) => {
  const c2 = topo.container('c2');
  await serve(c2, ['redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], 6379);
  const before = await snapshot();
  const r = await topo.exec(
    topo.container('c1'),
    ['redis-benchmark', '-h', c2.ip, '-p', '6379', '-n', '2000', '-c', '4', '-k', '0', '-t', 'set,get', '--csv'],
    { timeout: 60_000 },
  );
  t.is(r.exitCode, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => /^"(SET|GET)"/.test(l));
  t.is(rows.length, 2, r.stdout);
  for (const row of rows) t.true(Number(row.split(',')[1].replace(/"/g, '')) > 0, row);
  const handed = await onSlimfast(t, before);
  t.true(handed[0] >= 4000, `host 1 handed off ${handed[0]} connections`);
  t.log(rows.join(' | '));
});

test.serial('nginx reverse proxy with HTTP/1.0 upstream, driven by wrk', async (t) => {
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  const c3 = topo.container('c3');
  const dir = path.join(topo.dir, 'nginx');
  fs.mkdirSync(path.join(dir, 'www'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'www', 'index.html'), 'hello from the upstream\n');
  const conf = (name: string, body: string) => {
    const file = path.join(dir, `${name}.conf`);
    fs.writeFileSync(
      file,
      `daemon off; master_process on; worker_processes 2; user root; pid ${dir}/${name}.pid;
error_log ${dir}/${name}.err warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path ${dir}/${name}-body; proxy_temp_path ${dir}/${name}-proxy;
  fastcgi_temp_path ${dir}/${name}-fcgi; uwsgi_temp_path ${dir}/${name}-uwsgi; scgi_temp_path ${dir}/${name}-scgi;
  ${body} }\n`,
    );
    return file;
  };
  const upstream = conf('upstream', `server { listen 8080; root ${dir}/www; }`);
  const proxy = conf(
    'proxy',
    `upstream up { server ${c3.ip}:8080; }
  server { listen 80; location / { proxy_pass http://up; proxy_http_version 1.0; } }`,
  );
  await serve(c3, ['nginx', '-c', upstream], 8080);
  await serve(c2, ['nginx', '-c', proxy], 80);
  const before = await snapshot();
  const r = await topo.exec(c1, ['wrk', '-t1', '-c8', '-d3s', `http://${c2.ip}/`], { timeout: 30_000 });
  t.is(r.exitCode, 0, r.stderr);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
  t.true(requests > 100, r.stdout);
  t.notRegex(r.stdout, /Non-2xx|Socket errors/, r.stdout);
  const handed = await onSlimfast(t, before);
  t.true(handed[0] >= 8, `wrk's connections to the proxy went over SlimFast (${handed[0]})`);
  t.true(handed[1] >= requests, `every proxied request opened an upstream connection on SlimFast (${handed[1]} for ${requests})`);
  t.log(r.stdout.split('\n').find((l) => l.includes('Requests/sec')));
});

test.serial('memcached with libmemcached clients', async (t) => {
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  await serve(c2, ['memcached', '-u', 'root', '-p', '11211', '-l', '0.0.0.0', '-U', '0'], 11211);
  const before = await snapshot();
  const servers = `--servers=${c2.ip}:11211`;
  const file = path.join(topo.dir, 'memc-value.txt');
  fs.writeFileSync(file, 'value stored across hosts on SlimFast\n');
  const cp = await topo.exec(c1, ['memccp', servers, file]);
  t.is(cp.exitCode, 0, cp.stderr);
  const cat = await topo.exec(c1, ['memccat', servers, 'memc-value.txt']);
  t.is(cat.exitCode, 0, cat.stderr);
  t.is(cat.stdout.trim(), 'value stored across hosts on SlimFast');
  const slap = await topo.exec(c1, ['memcslap', servers, '--concurrency=4', '--execute-number=500', '--flush'], { timeout: 60_000 });
  t.is(slap.exitCode, 0, slap.stderr);
  t.regex(slap.stdout, /Time to set\s+2000 keys/);
  const handed = await onSlimfast(t, before);
  t.true(handed[0] >= 3, `host 1 handed off ${handed[0]} connections`);
});

test.serial('iperf3 bulk transfer, three tests against one server', async (t) => {
  // iperf3 closes its listening socket after every test and listens again at once: each new
  // listener must be SlimFast's too (and the port free to bind again when close() returns).
  const c2 = topo.container('c2');
  await serve(c2, ['iperf3', '-s', '-p', '5201'], 5201);
  for (let run = 1; run <= 3; run++) {
    const before = await snapshot();
    const r = await topo.exec(topo.container('c1'), ['iperf3', '-c', c2.ip, '-p', '5201', '-t', run === 1 ? '2' : '1', '-J'], { timeout: 30_000 });
    t.is(r.exitCode, 0, `test ${run}: ${r.stderr || r.stdout}`);
    const report = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
    t.true(report.end.sum_received.bytes > 1_000_000, `test ${run}: received ${report.end.sum_received.bytes} bytes`);
    const handed = await onSlimfast(t, before);
    t.true(handed[0] >= 2, `test ${run}: control and data connections on SlimFast (${handed[0]} handed off)`);
    t.log(`iperf3 test ${run}: ${(report.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s`);
  }
});

test.serial('curl against a Python HTTP server', async (t) => {
  const c2 = topo.container('c2');
  const dir = path.join(topo.dir, 'www');
  fs.mkdirSync(dir, { recursive: true });
  const body = `${'x'.repeat(100_000)}\nend\n`;
  fs.writeFileSync(path.join(dir, 'file.txt'), body);
  await serve(c2, [PY, '-m', 'http.server', '8000', '--bind', '0.0.0.0', '--directory', dir], 8000);
  const before = await snapshot();
  const r = await topo.exec(topo.container('c1'), ['curl', '-sS', '--max-time', '10', `http://${c2.ip}:8000/file.txt`]);
  t.is(r.exitCode, 0, r.stderr);
  t.is(r.stdout, body.trimEnd());
  const handed = await onSlimfast(t, before);
  t.is(handed[0], 1);
});
