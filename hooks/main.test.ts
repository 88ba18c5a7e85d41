// bin/slimfast-hook as runc and Podman run it: exit codes, messages, the timeout, and stdout/stderr
// closing as soon as it exits (runc waits for both).
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';
import { baseSpec } from '../runtime-wrapper/testing.js';

const HOOK = installPaths().hook;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  /** ms from start to exit, and from exit to both pipes closed. */
  ms: number;
  closeLagMs: number;
}

function hook(args: string[], opts: { input?: string; keepStdinOpen?: boolean; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<Result> {
  return new Promise((resolve) => {
    const start = Date.now();
    const child = spawn(HOOK, args, { env: opts.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let exitAt = 0;
    let code: number | null = null;
    let open = 2;
    const done = () => {
      if (--open === 0 && exitAt) resolve({ code, stdout, stderr, ms: exitAt - start, closeLagMs: Date.now() - exitAt });
    };
    child.stdout.on('data', (d) => (stdout += d)).on('close', done);
    child.stderr.on('data', (d) => (stderr += d)).on('close', done);
    child.on('exit', (c) => {
      exitAt = Date.now();
      code = c;
      open++;
      done();
    });
    if (opts.input !== undefined) child.stdin.write(opts.input);
    if (!opts.keepStdinOpen) child.stdin.end();
  });
}

function setup(config: object = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfhookmain-'));
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify(config));
  const state = path.join(dir, 'state');
  return { dir, state, env: { ...process.env, SLIMFAST_STATE_DIR: state, SLIMFAST_CONFIG: cfg } };
}

// A process in a network namespace of its own stands in for the container's init.
let nsProc: ChildProcess;
test.before(async () => {
  nsProc = spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 200));
});
test.after.always(() => nsProc.kill('SIGKILL'));

const ociState = (id = 'ctr1') =>
  JSON.stringify({ ociVersion: '1.0.2', id, status: 'creating', pid: nsProc.pid, bundle: '/b', annotations: { 'io.slimfast.id': id } });

test('create with no broker: exit 1, the state dir named, fast', async (t) => {
  const s = setup();
  const r = await hook(['create'], { input: ociState(), env: s.env });
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(
    r.stderr,
    new RegExp(
      `^slimfast-hook create: cannot start container ctr1 on SlimFast \\(state dir ${s.state}\\): no SlimFast broker at ${s.state}/slimfast\\.sock`,
    ),
  );
  // Well before the 10 s default timeout (a loaded machine starts Node slowly): nothing waited for it.
  t.true(r.ms < 9000, `${r.ms} ms`);
  t.true(r.closeLagMs < 3000, 'stdout and stderr close with the process');
  fs.rmSync(s.dir, { recursive: true });
});

test('create with no broker and allowWithoutBroker: exit 0 and a warning', async (t) => {
  const s = setup({ allowWithoutBroker: true });
  const r = await hook(['create'], { input: ociState(), env: s.env });
  t.is(r.code, 0);
  t.regex(r.stderr, /^slimfast-hook: warning: start container ctr1 without SlimFast/);
  fs.rmSync(s.dir, { recursive: true });
});

test('a broker that accepts but never answers: the timeout ends the hook, with the reason', async (t) => {
  const s = setup();
  fs.mkdirSync(s.state);
  const sockets: net.Socket[] = [];
  const server = net.createServer((c) => sockets.push(c)); // accepts, says nothing
  await new Promise<void>((r) => server.listen(path.join(s.state, 'slimfast.sock'), r));
  const r = await hook(['create'], { input: ociState(), env: { ...s.env, SLIMFAST_HOOK_TIMEOUT: '1' } });
  t.is(r.code, 1);
  t.regex(r.stderr, /slimfast-hook create: .*(timed out after 1 s|not answering)/);
  t.regex(r.stderr, new RegExp(s.state));
  t.true(r.ms < 9000, `${r.ms} ms: the 1 s timeout, not the 10 s default`);
  t.true(r.closeLagMs < 3000);
  for (const c of sockets) c.destroy();
  server.close();
  fs.rmSync(s.dir, { recursive: true });
});

test('stdin that never ends: the timeout ends the hook', async (t) => {
  const s = setup();
  const r = await hook(['poststop'], { input: '{"id":', keepStdinOpen: true, env: { ...s.env, SLIMFAST_HOOK_TIMEOUT: '1' } });
  t.is(r.code, 1);
  t.regex(r.stderr, /^slimfast-hook poststop: timed out after 1 s \(SLIMFAST_HOOK_TIMEOUT\)/);
  t.true(r.ms < 9000, `${r.ms} ms: the 1 s timeout, not the 10 s default`);
  const allowed = setup({ allowWithoutBroker: true });
  const r2 = await hook(['create'], { input: '{', keepStdinOpen: true, env: { ...allowed.env, SLIMFAST_HOOK_TIMEOUT: '0.5' } });
  t.is(r2.code, 0);
  t.regex(r2.stderr, /warning: .*timed out after 0\.5 s.*without SlimFast/);
  fs.rmSync(s.dir, { recursive: true });
  fs.rmSync(allowed.dir, { recursive: true });
});

test('usage errors and bad input', async (t) => {
  const s = setup();
  const r = await hook(['prestart'], { input: '', env: s.env });
  t.is(r.code, 2);
  t.regex(r.stderr, /unknown stage "prestart"/);
  const r2 = await hook(['create'], { input: 'not json', env: s.env });
  t.is(r2.code, 1);
  t.regex(r2.stderr, /stdin is not the OCI state JSON/);
  const r3 = await hook(['create'], { input: '{}', env: s.env });
  t.regex(r3.stderr, /has no container "id"/);
  const r4 = await hook(['create'], { input: '{}', env: { ...s.env, SLIMFAST_HOOK_TIMEOUT: 'x' } });
  t.is(r4.code, 1);
  t.is(r4.stderr, 'slimfast-hook create: SLIMFAST_HOOK_TIMEOUT="x" is not a positive number of seconds\n');
  fs.writeFileSync(s.env.SLIMFAST_CONFIG!, '{broken');
  const r5 = await hook(['create'], { input: ociState(), env: s.env });
  t.is(r5.code, 1);
  t.regex(r5.stderr, /^slimfast-hook create: .*config\.json is not valid JSON .*fix or remove it/);
  fs.rmSync(s.dir, { recursive: true });
});

test('a container that is not on SlimFast costs no broker contact, even with none running', async (t) => {
  const s = setup();
  const plain = JSON.stringify({ ociVersion: '1.0.2', id: 'plain', status: 'creating', pid: process.pid, annotations: {} });
  t.is((await hook(['create'], { input: plain, env: s.env })).code, 0);
  t.is((await hook(['poststop'], { input: plain, env: s.env })).code, 0);
  fs.rmSync(s.dir, { recursive: true });
});

test('precreate: configuration in, configuration with SlimFast out', async (t) => {
  const s = setup();
  const spec = baseSpec();
  spec.linux!.namespaces![1] = { type: 'network', path: '/run/netns/x' };
  const r = await hook(['precreate'], { input: JSON.stringify(spec), env: { ...s.env, SLIMFAST_PRELOAD: process.execPath }, cwd: s.dir });
  t.is(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.regex(out.annotations['io.slimfast.id'], /^sf-/);
  t.true(out.process.env.includes('SLIMFAST_SOCKET=/.slimfast/run/sf.sock'));
  const run = out.mounts.find((m: { destination: string }) => m.destination === '/.slimfast/run');
  t.true(run.source.startsWith(path.join(s.state, 'containers')));
  t.true(fs.statSync(run.source).isDirectory());
  fs.rmSync(s.dir, { recursive: true });
});
