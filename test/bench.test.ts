// The benchmark harness works: `node dist/bench/main.js --quick` measures every workload over every
// path with positive results and no errors, and writes its JSON and SVG. It does not judge speed.
// conn-1 and conn-4 also run over the seccomp path (a static client on the broker's seccomp agent):
// a positive rate and ratios, and every connection answered by the agent, none over VXLAN.
// With --profile, conn-1's per-connection budget: syscalls per process, CPU per process, client
// phases, in the JSON, the printed tables and table.js's Markdown.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../common/paths.js';

const WORKLOADS = ['conn-1', 'conn-4', 'rr-kept', 'iperf3', 'nginx', 'memcached', 'redis-k0', 'redis-k1', 'samehost-1'];
const PATHS = ['host', 'vxlan', 'slimfast'];
const SECCOMP_WORKLOADS = ['conn-1', 'conn-4'];

interface Spread {
  median: number;
  n: number;
}

interface Budget {
  syscalls?: Record<string, { per_conn: number; calls: Record<string, number> }>;
  cpu_us?: Record<string, number>;
  phases_us?: Record<string, number>;
  error?: string;
}

interface Results {
  profile?: { workload: string; traced_connections: number; paths: Record<string, Budget> };
  schema: string;
  mode: string;
  errors: string[];
  paths: string[];
  workloads: {
    id: string;
    metrics: { id: string; better: string; paths: Record<string, Spread>; ratios: Record<string, Spread> }[];
    errors: Record<string, number>;
    samples: { path: string; error?: string; ops: number; cpu?: { total_s: number }; vxlan_packets?: number; broker?: Record<string, number> }[];
  }[];
}

test('npm run bench --quick measures every workload over every path', async (t) => {
  t.timeout(240_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfbench-'));
  try {
    const json = path.join(dir, 'quick.json');
    const started = Date.now();
    const r = await execa(
      process.execPath,
      [path.join(repoRoot(), 'dist', 'bench', 'main.js'), '--quick', '--profile', '--only', WORKLOADS.join(','), '--json-out', json],
      {
        reject: false,
        timeout: 200_000,
        all: true,
      },
    );
    const seconds = (Date.now() - started) / 1000;
    const out = r.all ?? '';
    t.true(fs.existsSync(json), `no JSON written; output ends:\n${out.slice(-3000)}`);
    const res = JSON.parse(fs.readFileSync(json, 'utf8')) as Results;
    t.is(res.schema, 'slimfast-bench/1');
    t.is(res.mode, 'quick');
    t.deepEqual(res.paths, [...PATHS, 'seccomp']);
    t.regex(out, /seccomp \/ host\s+seccomp \/ SlimFast/, 'the table has the seccomp columns');
    t.deepEqual(res.errors, [], `the run reported problems:\n${res.errors.join('\n')}`);
    t.is(r.exitCode, 0, out.slice(-3000));
    t.deepEqual(res.workloads.map((w) => w.id).sort(), [...WORKLOADS].sort());
    for (const w of res.workloads) {
      const primary = w.metrics[0];
      t.is(primary.better, 'higher', `${w.id}: the first metric is a rate`);
      const seccomp = SECCOMP_WORKLOADS.includes(w.id);
      for (const p of seccomp ? [...PATHS, 'seccomp'] : PATHS) {
        t.is(w.errors[p], 0, `${w.id} over ${p}: errors`);
        const samples = w.samples.filter((s) => s.path === p);
        t.true(samples.length >= 1, `${w.id} over ${p}: no sample`);
        for (const s of samples) {
          t.is(s.error, undefined, `${w.id} over ${p}: ${s.error}`);
          t.true(s.ops > 0, `${w.id} over ${p}: no operations`);
          t.true((s.cpu?.total_s ?? 0) > 0, `${w.id} over ${p}: no CPU time counted`);
        }
        for (const m of w.metrics) {
          t.true(m.paths[p].n >= 1 && m.paths[p].median > 0, `${w.id} ${m.id} over ${p}: ${m.paths[p].median}`);
        }
      }
      for (const m of w.metrics) {
        for (const k of ['slimfast_vs_host', 'slimfast_vs_vxlan', 'vxlan_vs_host']) t.true(m.ratios[k].median > 0, `${w.id} ${m.id}: ratio ${k}`);
        if (seccomp) for (const k of ['seccomp_vs_host', 'seccomp_vs_slimfast']) t.true(m.ratios[k]?.median > 0, `${w.id} ${m.id}: ratio ${k}`);
        else t.false('seccomp' in m.paths, `${w.id}: no seccomp path`);
      }
      for (const s of w.samples.filter((x) => x.path === 'seccomp')) {
        // the agent answered every connect (in flight at the end too), the preload none
        t.true(
          s.broker!.seccomp_handed >= s.ops && s.broker!.seccomp_handed <= s.ops * 1.02 + 16,
          `${w.id} seccomp: ${s.broker!.seccomp_handed} answered for ${s.ops}`,
        );
        t.true((s.vxlan_packets ?? 0) <= 100, `${w.id} seccomp: ${s.vxlan_packets} VXLAN packets`);
      }
      for (const s of w.samples.filter((x) => x.path === 'slimfast'))
        t.is(s.broker!.seccomp_handed, 0, `${w.id} slimfast: the agent answered connects`);
    }
    t.is(res.profile?.workload, 'conn-1');
    t.regex(out, /Per-connection budget[\s\S]*syscalls\s+client \(connrate\)[\s\S]*Syscalls per connection/);
    for (const p of PATHS) {
      const b = res.profile!.paths[p];
      t.is(b.error, undefined, `profile over ${p}`);
      for (const proc of ['client', 'server']) t.true(b.syscalls![proc].per_conn > 0, `profile over ${p}: ${proc}`);
      for (const proc of ['broker1', 'broker2']) t.true(b.syscalls![proc].per_conn >= 0, `profile over ${p}: ${proc}`);
      if (p !== 'slimfast') {
        // plain sockets: the client's socket and connect and the server's accept4, per connection
        t.true(
          b.syscalls!.client.calls.connect >= 1 && b.syscalls!.client.calls.socket >= 1,
          `profile over ${p}: client ${JSON.stringify(b.syscalls!.client.calls)}`,
        );
        t.true(b.syscalls!.server.calls.accept4 >= 1, `profile over ${p}: server ${JSON.stringify(b.syscalls!.server.calls)}`);
      }
      t.true(b.cpu_us!.total > 0 && b.cpu_us!.client > 0, `profile over ${p}: CPU ${JSON.stringify(b.cpu_us)}`);
      for (const ph of ['connect_p50', 'rtt_p50', 'close_p50', 'loop']) t.true(b.phases_us![ph] > 0, `profile over ${p}: ${ph}`);
    }
    // on SlimFast the sending broker works for every connection (it stocks the pools)
    t.true(res.profile!.paths.slimfast.syscalls!.broker1.per_conn > 0.5);
    const md = await execa(process.execPath, [path.join(repoRoot(), 'dist', 'bench', 'table.js'), json], { reject: false });
    t.regex(md.stdout, /\| syscalls \| client \(connrate\) \|[\s\S]*\| CPU µs \| softirq \(machine\) \|/);
    const svg = fs.readFileSync(json.replace(/\.json$/, '.svg'), 'utf8');
    t.regex(svg, /^<\?xml[\s\S]*<svg[\s\S]*<\/svg>\s*$/);
    for (const id of WORKLOADS) t.true(svg.includes(`${id} · `), `the chart shows ${id}`);
    t.log(`--quick took ${seconds.toFixed(1)} s`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
