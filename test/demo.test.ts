// `npm run demo` (the main job) end to end, shortened: real runc containers through slimfast-runc on two
// emulated hosts, the table with a verdict per measure, and nothing left behind afterwards — also when
// interrupted with Ctrl-C.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../common/paths.js';

const DEMO = path.join(repoRoot(), 'dist', 'demo', 'main.js');

interface DemoRun {
  pid: number;
  code: number | null;
  out: string;
}

/** Runs the demo; with interruptOn, sends SIGINT once its output matches. Bounded in time. */
function runDemo(interruptOn?: RegExp): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO], {
      env: { ...process.env, SLIMFAST_DEMO_ROUNDS: '1', SLIMFAST_DEMO_SECONDS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let interrupted = false;
    const onData = (d: Buffer) => {
      out += d.toString();
      if (interruptOn && !interrupted && interruptOn.test(out)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, out });
    });
  });
}

const NUM = String.raw`(\d+(?:\.\d+)?)`;
const RATIO = String.raw`(\d+\.\d\d)x`;
const STANDING = String.raw`(ahead of VXLAN|behind VXLAN|on par with VXLAN \(within 5%\))`;

/** The three figures (host, VXLAN, SlimFast) of the table row that starts with title, or undefined. */
function row(out: string, title: string, indent = '  '): number[] | undefined {
  const escaped = title.replace(/[()/]/g, (c) => `\\${c}`);
  const m = new RegExp(`^${indent}${escaped}\\s+${NUM}\\s+${NUM}\\s+${NUM}$`, 'm').exec(out);
  return m ? m.slice(1, 4).map(Number) : undefined;
}

/** The standing a verdict must state for a SlimFast / VXLAN ratio as printed. */
function expectedStanding(ratio: string): string {
  const pct = Math.round(Number(ratio) * 100);
  if (Math.abs(pct - 100) <= 5) return 'on par with VXLAN (within 5%)';
  return pct > 100 ? 'ahead of VXLAN' : 'behind VXLAN';
}

/** What a demo run with this pid could have left: namespaces, its directory, runc containers' cgroups. */
async function leftovers(pid: number): Promise<string[]> {
  const prefix = `sft${pid}x`;
  const ns = (await execa('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(prefix));
  const dirs = fs.readdirSync(os.tmpdir()).filter((e) => e.startsWith(prefix));
  const procs = (await execa('ps', ['-eo', 'args'])).stdout.split('\n').filter((l) => l.includes(prefix) && !l.includes('ps -eo'));
  return [...ns, ...dirs, ...procs];
}

test.serial('npm run demo: runc containers on two hosts, three measures over three paths with verdicts, everything removed', async (t) => {
  t.timeout(110_000);
  const r = await runDemo();
  t.is(r.code, 0, r.out);
  t.regex(r.out, /slimfast-runc run sft\d+x\w+-server on host 2/);
  t.regex(r.out, /host 1 broker: registered by slimfast-hook: sft\d+x\w+-client 10\.200\.1\.2/);
  t.regex(r.out, /host 2 broker: registered by slimfast-hook: sft\d+x\w+-server 10\.200\.2\.2/);
  // The demo runs as users should: one cluster key on both brokers.
  const keys = [
    ...r.out.matchAll(/host (\d) broker: headers signed and checked with the cluster key \(file \S+cluster\.key, fingerprint ([0-9a-f]{12})\)/g),
  ];
  t.deepEqual(
    keys.map((m) => m[1]),
    ['1', '2'],
    'both brokers have a cluster key',
  );
  t.is(keys[0]?.[2], keys[1]?.[2], 'the same one');
  t.regex(r.out, /^ {2}medians of 1 round\s+host → host\s+VXLAN overlay\s+SlimFast$/m);
  const rows: [string, string][] = [
    ['new connection per request (conn/s)', '  '],
    ['connect() p50 (µs)', '    '],
    ['kept connection, 16-byte echo (req/s)', '  '],
    ['request/response p50 (µs)', '    '],
    ['bulk throughput, iperf3 (Gbit/s)', '  '],
  ];
  const figures = new Map(rows.map(([title, indent]) => [title, row(r.out, title, indent)]));
  for (const [title, v] of figures) {
    t.truthy(v, `row "${title}" in:\n${r.out}`);
    t.true(
      v?.every((x) => x > 0),
      `${title}: ${v}`,
    );
  }

  // One verdict per measure; its ratios are those of the row's figures, its standing that of its ratio.
  const conn = new RegExp(`^ {4}verdict: SlimFast opens connections at ${RATIO} VXLAN's rate \\(${RATIO} host\\) — ${STANDING}$`, 'm').exec(r.out);
  const kept = new RegExp(
    `^ {4}verdict: SlimFast answers ${RATIO} VXLAN's requests/s on a kept connection \\(${RATIO} host\\), p50 (\\d+) µs against (\\d+) µs — ${STANDING}$`,
    'm',
  ).exec(r.out);
  const bulk = new RegExp(`^ {4}verdict: bulk: SlimFast ${RATIO} host, VXLAN ${RATIO} host \\(SlimFast ${RATIO} VXLAN\\) — ${STANDING}$`, 'm').exec(
    r.out,
  );
  t.truthy(conn && kept && bulk, r.out);
  const near = (printed: string, a: number, b: number, what: string) =>
    t.true(Math.abs(Number(printed) - a / b) < 0.02, `${what}: ${printed}x printed, ${a}/${b} in the table`);
  const [cHost, cVxlan, cSf] = figures.get('new connection per request (conn/s)')!;
  near(conn![1], cSf, cVxlan, 'connections vs VXLAN');
  near(conn![2], cSf, cHost, 'connections vs host');
  t.is(conn![3], expectedStanding(conn![1]));
  const [kHost, kVxlan, kSf] = figures.get('kept connection, 16-byte echo (req/s)')!;
  near(kept![1], kSf, kVxlan, 'kept vs VXLAN');
  near(kept![2], kSf, kHost, 'kept vs host');
  t.deepEqual([Number(kept![3]), Number(kept![4])], figures.get('request/response p50 (µs)')!.slice(1).reverse());
  t.is(kept![5], expectedStanding(kept![1]));
  const [bHost, bVxlan, bSf] = figures.get('bulk throughput, iperf3 (Gbit/s)')!;
  near(bulk![1], bSf, bHost, 'bulk SlimFast vs host');
  near(bulk![2], bVxlan, bHost, 'bulk VXLAN vs host');
  near(bulk![3], bSf, bVxlan, 'bulk SlimFast vs VXLAN');
  t.is(bulk![4], expectedStanding(bulk![3]));
  t.notRegex(r.out, /ERROR|verdict: none/);

  const m = /broker handed (\d+) host connections to the client container; the VXLAN device carried (\d+) packets during the SlimFast rounds/.exec(
    r.out,
  );
  t.truthy(m, r.out);
  t.true(Number(m![1]) > 0, 'connections were handed off');
  t.is(Number(m![2]), 0, 'SlimFast traffic did not cross the VXLAN device');
  t.deepEqual(await leftovers(r.pid), []);
});

test.serial('Ctrl-C during the demo removes containers, brokers and namespaces', async (t) => {
  t.timeout(110_000);
  const r = await runDemo(/==> measuring/);
  t.is(r.code, 130, r.out);
  t.regex(r.out, /interrupted/);
  t.deepEqual(await leftovers(r.pid), []);
});
