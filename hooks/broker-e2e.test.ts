// slimfast-runc + slimfast-hook with a real broker (`slimfast daemon`) and the real runc: the createRuntime
// hook registers the container (IP read from its network namespace), the broker's socket appears inside
// the container at /.slimfast/run/sf.sock, and poststop unregisters it. The network namespace is a
// prepared one (as Podman, CNI and Docker's libnetwork make them) with an address in the broker's subnet.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';
import { makeBusyboxBundle } from '../runtime-wrapper/bundle-fixture.js';

const P = installPaths();
const NETNS = `sft${process.pid}xocihook`;
const ID = `sft${process.pid}xocireg`;
const ID2 = `sft${process.pid}xocishare`;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sft${process.pid}x`));
const state = path.join(dir, 'state');
let daemon: ChildProcess | undefined;
let daemonLog = '';

function sh(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const cli = (args: string[]) => spawnSync(P.cli, args, { encoding: 'utf8', timeout: 30_000 });

test.before(async () => {
  sh('ip', ['netns', 'add', NETNS]);
  // A veth pair, its host end left down: deleting the namespace deletes both ends.
  sh('ip', ['link', 'add', `sfo${process.pid}`, 'type', 'veth', 'peer', 'name', 'sf0', 'netns', NETNS]);
  sh('ip', ['-n', NETNS, 'addr', 'add', '10.88.7.2/16', 'dev', 'sf0']);
  sh('ip', ['-n', NETNS, 'link', 'set', 'sf0', 'up']);
  const port = String(20000 + (process.pid % 20000));
  daemon = spawn(P.cli, ['daemon', '--host-ip', '127.0.0.1', '--state-dir', state, '--port', port], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemon.stdout!.on('data', (d) => (daemonLog += d));
  daemon.stderr!.on('data', (d) => (daemonLog += d));
  for (let i = 0; i < 100; i++) {
    if (cli(['status', '--state-dir', state]).status === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`slimfast daemon did not start:\n${daemonLog}`);
});

test.after.always(async () => {
  spawnSync('runc', ['delete', '--force', ID2]);
  spawnSync('runc', ['delete', '--force', ID]);
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon!.once('exit', r));
  }
  spawnSync('ip', ['netns', 'del', NETNS]);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('create registers the container, its broker socket shows inside it (also in a second container sharing its network namespace), delete unregisters it', (t) => {
  const preload = path.join(dir, 'libslimfast.so');
  fs.writeFileSync(preload, '');
  const env = { ...process.env, SLIMFAST_STATE_DIR: state, SLIMFAST_PRELOAD: preload, SLIMFAST_CONFIG: path.join(dir, 'none.json') };
  const bundle = makeBusyboxBundle(path.join(dir, 'bundle'), ['sleep', '60']);
  const cfgFile = path.join(bundle, 'config.json');
  const spec = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) =>
    n.type === 'network' ? { type: 'network', path: `/run/netns/${NETNS}` } : n,
  );
  fs.writeFileSync(cfgFile, JSON.stringify(spec, null, '\t'));

  // The container inherits runc create's stdio: a file, not a pipe this test would wait on.
  const errFile = path.join(dir, 'create.err');
  const errFd = fs.openSync(errFile, 'w');
  const c = spawnSync(P.runc, ['create', '--bundle', bundle, ID], { env, stdio: ['ignore', 'ignore', errFd], timeout: 60_000 });
  fs.closeSync(errFd);
  t.is(c.status, 0, `${fs.readFileSync(errFile, 'utf8')}\n${daemonLog}`);
  const ls = cli(['container', 'ls', '--state-dir', state, '--json']);
  const list = JSON.parse(ls.stdout) as { id: string; ip: string; socket: string }[];
  t.is(list.length, 1, ls.stderr);
  t.is(list[0].id, ID);
  t.is(list[0].ip, '10.88.7.2', "the broker read the IP from the container's network namespace");
  const edited = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  const runDir = edited.mounts.find((m: { destination: string }) => m.destination === '/.slimfast/run').source;
  t.is(path.join(runDir, 'sf.sock'), list[0].socket, "the bind-mounted directory is the broker's socket directory");

  t.is(spawnSync(P.runc, ['start', ID], { env }).status, 0);
  const x = spawnSync(P.runc, ['exec', ID, 'sh', '-c', 'test -S /.slimfast/run/sf.sock && echo socket-in-container'], { env, encoding: 'utf8' });
  t.is(x.stdout, 'socket-in-container\n', x.stderr);

  // A second container in the same network namespace (a pod's app container, --network container:X):
  // it shares the first one's registration.
  const bundle2 = makeBusyboxBundle(path.join(dir, 'bundle2'), ['sh', '-c', 'test -S /.slimfast/run/sf.sock && echo shared-socket']);
  const spec2File = path.join(bundle2, 'config.json');
  const spec2 = JSON.parse(fs.readFileSync(spec2File, 'utf8'));
  spec2.linux.namespaces = spec2.linux.namespaces.map((n: { type: string }) =>
    n.type === 'network' ? { type: 'network', path: `/run/netns/${NETNS}` } : n,
  );
  fs.writeFileSync(spec2File, JSON.stringify(spec2));
  const r2 = spawnSync(P.runc, ['run', '--bundle', bundle2, ID2], { env, encoding: 'utf8', timeout: 60_000 });
  t.is(r2.status, 0, r2.stderr);
  t.is(r2.stdout, 'shared-socket\n');
  t.deepEqual(
    (JSON.parse(cli(['container', 'ls', '--state-dir', state, '--json']).stdout) as { id: string }[]).map((c) => c.id),
    [ID],
    "still one registration; the second container's exit did not remove it",
  );

  t.is(spawnSync(P.runc, ['delete', '--force', ID], { env }).status, 0);
  t.deepEqual(JSON.parse(cli(['container', 'ls', '--state-dir', state, '--json']).stdout), [], 'poststop unregistered it');
  t.false(fs.existsSync(runDir));
});
