// The C launcher (bin/slimfast-runc, bin/slimfast-hook): pass-through identical to runc, exec in place
// with argv, env, cwd and fds untouched; the edit step for create/run/exec; finding runc, node and the
// install root.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';

const RUNC = installPaths().runc;
const HOOK = installPaths().hook;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sflaunch-'));
const realRunc = spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).stdout.trim();

const FAKE = `#!/bin/sh
{
  echo "pid=$$"
  echo "cwd=$(pwd)"
  for a in "$@"; do echo "arg=$a"; done
  echo "fds=$(ls /proc/$$/fd | sort -n | tr '\\n' ' ')"
  echo "marker=$SF_MARKER"
} > "$SF_FAKE_OUT"
if [ -n "$SF_FAKE_FD3" ]; then echo "runc wrote to fd 3" >&3; fi
exit \${SF_FAKE_EXIT:-0}
`;

interface Fake {
  dir: string;
  runc: string;
  out: string;
  env: NodeJS.ProcessEnv;
  record(): { pid: number; cwd: string; args: string[]; fds: number[]; marker: string } | undefined;
}

function fake(): Fake {
  const dir = tmp();
  const runc = path.join(dir, 'fake-runc');
  fs.writeFileSync(runc, FAKE, { mode: 0o755 });
  const out = path.join(dir, 'record.txt');
  const stateDir = path.join(dir, 'state');
  return {
    dir,
    runc,
    out,
    env: { ...process.env, SLIMFAST_RUNC: runc, SF_FAKE_OUT: out, SLIMFAST_STATE_DIR: stateDir, SLIMFAST_CONFIG: path.join(dir, 'no-config.json') },
    record() {
      if (!fs.existsSync(out)) return undefined;
      const lines = fs.readFileSync(out, 'utf8').split('\n');
      const get = (k: string) => lines.filter((l) => l.startsWith(`${k}=`)).map((l) => l.slice(k.length + 1));
      return {
        pid: Number(get('pid')[0]),
        cwd: get('cwd')[0],
        args: get('arg'),
        fds: get('fds')[0].trim().split(/\s+/).map(Number),
        marker: get('marker')[0],
      };
    },
  };
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; extraFds?: number } = {}) {
  return new Promise<{ code: number | null; pid: number; stdout: string; stderr: string; fd3: string }>((resolve) => {
    const stdio: ('pipe' | 'ignore')[] = ['ignore', 'pipe', 'pipe'];
    for (let i = 0; i < (opts.extraFds ?? 0); i++) stdio.push('pipe');
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio });
    let stdout = '';
    let stderr = '';
    let fd3 = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    (child.stdio[3] as NodeJS.ReadableStream | undefined)?.on('data', (d) => (fd3 += d));
    child.on('close', (code) => resolve({ code, pid: child.pid!, stdout, stderr, fd3 }));
  });
}

const withoutTime = (s: string) => s.replace(/time="[^"]*"/g, 'time="T"');

test('slimfast-runc --version, --help, features and no arguments print exactly what runc prints', async (t) => {
  t.truthy(realRunc, 'runc is installed');
  for (const args of [['--version'], ['-v'], ['--help'], ['features'], [], ['--debug', 'frobnicate']]) {
    const a = await run(realRunc, args);
    const b = await run(RUNC, args);
    t.is(b.code, a.code, args.join(' '));
    t.is(b.stdout, a.stdout, args.join(' '));
    t.is(withoutTime(b.stderr), withoutTime(a.stderr), args.join(' '));
  }
  t.regex((await run(RUNC, ['--version'])).stdout, /^runc version/);
});

test('slimfast-runc state of a missing container: same exit code and stderr as runc', async (t) => {
  const root = tmp();
  for (const args of [
    ['state', 'sf-no-such-container'],
    ['--root', root, 'state', 'sf-no-such-container'],
    ['--root', root, 'delete', 'sf-no-such'],
  ]) {
    const a = await run(realRunc, args);
    const b = await run(RUNC, args);
    t.not(a.code, 0);
    t.is(b.code, a.code, args.join(' '));
    t.is(withoutTime(b.stderr), withoutTime(a.stderr), args.join(' '));
    t.is(b.stdout, a.stdout);
  }
  const logA = path.join(root, 'a.json');
  const logB = path.join(root, 'b.json');
  await run(realRunc, ['--log', logA, '--log-format', 'json', 'state', 'nope']);
  await run(RUNC, ['--log', logB, '--log-format', 'json', 'state', 'nope']);
  t.is(fs.readFileSync(logB, 'utf8').replace(/"time":"[^"]*"/g, ''), fs.readFileSync(logA, 'utf8').replace(/"time":"[^"]*"/g, ''));
  fs.rmSync(root, { recursive: true });
});

test('pass-through execs runc in place: same pid, argv, env, cwd, and every inherited fd', async (t) => {
  const f = fake();
  const args = ['--root', '/run/x', '--log-format=json', 'kill', '--all', 'id with spaces', '--', '9'];
  const r = await run(RUNC, args, { env: { ...f.env, SF_MARKER: 'kept', SF_FAKE_FD3: '1' }, cwd: f.dir, extraFds: 2 });
  t.is(r.code, 0, r.stderr);
  const rec = f.record()!;
  t.is(rec.pid, r.pid, 'no extra process: the launcher became runc');
  t.deepEqual(rec.args, args);
  t.is(rec.cwd, f.dir);
  t.is(rec.marker, 'kept');
  t.true(rec.fds.includes(3) && rec.fds.includes(4), `fds ${rec.fds}`);
  t.is(r.fd3, 'runc wrote to fd 3\n');
  fs.rmSync(f.dir, { recursive: true });
});

test('runc exit codes come through unchanged', async (t) => {
  const f = fake();
  const r = await run(RUNC, ['state', 'x'], { env: { ...f.env, SF_FAKE_EXIT: '42' } });
  t.is(r.code, 42);
  fs.rmSync(f.dir, { recursive: true });
});

test('create: the bundle is edited first, then runc runs in place with the unchanged argv and fds', async (t) => {
  const f = fake();
  const bundle = path.join(f.dir, 'bundle');
  fs.mkdirSync(bundle);
  fs.writeFileSync(
    path.join(bundle, 'config.json'),
    JSON.stringify({
      ociVersion: '1.0.2',
      process: { args: ['sh'], env: [] },
      root: { path: 'rootfs' },
      linux: { namespaces: [{ type: 'network' }] },
    }),
  );
  const preload = path.join(f.dir, 'libfake.so');
  fs.writeFileSync(preload, '');
  const args = ['--root', '/run/x', 'create', '--bundle', bundle, '--preserve-fds', '1', 'c1'];
  const r = await run(RUNC, args, { env: { ...f.env, SLIMFAST_PRELOAD: preload, SF_FAKE_FD3: '1' }, extraFds: 1 });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '', 'the edit step prints nothing');
  const rec = f.record()!;
  t.is(rec.pid, r.pid);
  t.deepEqual(rec.args, args);
  t.true(rec.fds.includes(3));
  t.is(r.fd3, 'runc wrote to fd 3\n');
  const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  t.is(spec.annotations['io.slimfast.id'], 'c1');
  t.true(spec.process.env.includes('LD_PRELOAD=/.slimfast/libslimfast.so'));
  t.is(spec.hooks.createRuntime[0].path, HOOK);
  t.true(fs.statSync(spec.mounts.find((m: { destination: string }) => m.destination === '/.slimfast/run').source).isDirectory());
  fs.rmSync(f.dir, { recursive: true });
});

test('a failed edit step stops before runc: exit 1, the reason on stderr or in the JSON log', async (t) => {
  const f = fake();
  const bundle = path.join(f.dir, 'bundle');
  fs.mkdirSync(bundle);
  fs.writeFileSync(path.join(bundle, 'config.json'), '{"ociVersion": ');
  const r = await run(RUNC, ['run', '-b', bundle, 'c2'], { env: f.env });
  t.is(r.code, 1);
  t.regex(r.stderr, /^slimfast-runc: the OCI configuration .*config\.json is not valid JSON/);
  t.is(f.record(), undefined, 'runc did not run');
  const log = path.join(f.dir, 'log.json');
  const r2 = await run(RUNC, ['--log', log, '--log-format', 'json', 'run', '-b', bundle, 'c2'], { env: f.env });
  t.is(r2.code, 1);
  t.is(r2.stderr, '');
  const line = JSON.parse(fs.readFileSync(log, 'utf8').trim()) as { level: string; msg: string; time: string };
  t.is(line.level, 'error');
  t.regex(line.msg, /^slimfast-runc: the OCI configuration .* is not valid JSON/);
  t.false(Number.isNaN(Date.parse(line.time)));
  fs.rmSync(f.dir, { recursive: true });
});

test('finding runc: the config file\'s "runc", PATH without slimfast-runc itself, and a clear error', async (t) => {
  const f = fake();
  const env = { ...f.env };
  delete env.SLIMFAST_RUNC;
  const config = path.join(f.dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ stateDir: '/x', note: 'runc', nested: { runc: '/wrong' }, runc: f.runc }));
  let r = await run(RUNC, ['state', 'a'], { env: { ...env, SLIMFAST_CONFIG: config } });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(f.record()!.args, ['state', 'a']);

  // A directory whose "runc" is slimfast-runc itself comes first on PATH: it is skipped.
  const selfDir = path.join(f.dir, 'self');
  const fakeDir = path.join(f.dir, 'bin');
  fs.mkdirSync(selfDir);
  fs.mkdirSync(fakeDir);
  fs.symlinkSync(RUNC, path.join(selfDir, 'runc'));
  fs.copyFileSync(f.runc, path.join(fakeDir, 'runc'));
  fs.chmodSync(path.join(fakeDir, 'runc'), 0o755);
  r = await run(RUNC, ['state', 'b'], { env: { ...env, PATH: `${selfDir}:${fakeDir}` } });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(f.record()!.args, ['state', 'b']);

  r = await run(RUNC, ['state', 'c'], { env: { ...env, PATH: selfDir } });
  t.is(r.code, 1);
  t.regex(r.stderr, /^slimfast-runc: cannot find the real runc: set SLIMFAST_RUNC, set "runc" in .*no-config\.json, or put runc on PATH/);
  const log = path.join(f.dir, 'log.json');
  r = await run(RUNC, ['--log', log, '--log-format', 'json', 'state', 'c'], { env: { ...env, PATH: selfDir } });
  t.is(r.code, 1);
  t.regex(JSON.parse(fs.readFileSync(log, 'utf8')).msg, /cannot find the real runc/);
  fs.rmSync(f.dir, { recursive: true });
});

test('the install root is found through symlinks to the launcher', async (t) => {
  const f = fake();
  const link = path.join(f.dir, 'elsewhere-runc');
  fs.symlinkSync(RUNC, link);
  const bundle = path.join(f.dir, 'bundle');
  fs.mkdirSync(bundle);
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ process: { env: [] }, linux: { namespaces: [] } }));
  const r = await run(link, ['create', '--bundle', bundle, 'c3'], { env: f.env });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(f.record()!.args, ['create', '--bundle', bundle, 'c3']);
  const hookLink = path.join(f.dir, 'hook');
  fs.symlinkSync(HOOK, hookLink);
  const h = await run(hookLink, ['--help']);
  t.is(h.code, 0);
  t.regex(h.stdout, /^usage: slimfast-hook create\|poststop\|precreate/);
  fs.rmSync(f.dir, { recursive: true });
});
