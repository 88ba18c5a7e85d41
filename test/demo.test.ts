// `npm run demo` (the main job) end to end, shortened: real runc containers through slimfast-runc on two
// emulated hosts, the table, and nothing left behind afterwards — also when interrupted with Ctrl-C.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../broker/paths.js';

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

/** What a demo run with this pid could have left: namespaces, its directory, runc containers' cgroups. */
async function leftovers(pid: number): Promise<string[]> {
  const prefix = `sft${pid}x`;
  const ns = (await execa('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(prefix));
  const dirs = fs.readdirSync(os.tmpdir()).filter((e) => e.startsWith(prefix));
  const procs = (await execa('ps', ['-eo', 'args'])).stdout.split('\n').filter((l) => l.includes(prefix) && !l.includes('ps -eo'));
  return [...ns, ...dirs, ...procs];
}

test.serial('npm run demo: runc containers on two hosts, the side-by-side table, everything removed', async (t) => {
  t.timeout(110_000);
  const r = await runDemo();
  t.is(r.code, 0, r.out);
  t.regex(r.out, /slimfast-runc run sft\d+x\w+-server on host 2/);
  t.regex(r.out, /host 1 broker: registered by slimfast-hook: sft\d+x\w+-client 10\.200\.1\.2/);
  t.regex(r.out, /host 2 broker: registered by slimfast-hook: sft\d+x\w+-server 10\.200\.2\.2/);
  // The demo runs as users should: one cluster key on both brokers.
  const keys = [...r.out.matchAll(/host (\d) broker: headers signed and checked with the cluster key \(file \S+cluster\.key, fingerprint ([0-9a-f]{12})\)/g)];
  t.deepEqual(keys.map((m) => m[1]), ['1', '2'], 'both brokers have a cluster key');
  t.is(keys[0]?.[2], keys[1]?.[2], 'the same one');
  for (const row of ['SlimFast', 'VXLAN overlay', 'host → host']) t.regex(r.out, new RegExp(`^  ${row}\\s+[1-9]\\d* +\\d+\\.\\d\\dx`, 'm'));
  const m = /broker handed (\d+) host connections to the client container; the VXLAN device carried (\d+) packets during the SlimFast rounds/.exec(r.out);
  t.truthy(m, r.out);
  t.true(Number(m![1]) > 0, 'connections were handed off');
  t.is(Number(m![2]), 0, 'SlimFast traffic did not cross the VXLAN device');
  t.deepEqual(await leftovers(r.pid), []);
});

test.serial('Ctrl-C during the demo removes containers, brokers and namespaces', async (t) => {
  t.timeout(110_000);
  const r = await runDemo(/measuring connect/);
  t.is(r.code, 130, r.out);
  t.regex(r.out, /interrupted/);
  t.deepEqual(await leftovers(r.pid), []);
});
