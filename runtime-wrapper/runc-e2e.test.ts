// slimfast-runc with the real runc on a busybox-static bundle, without a broker: what the container sees
// (env, read-only library mount, socket directory), the hooks' behaviour with and without
// allowWithoutBroker, exec with and without --process, and the container lifecycle commands.
// Needs root, runc and busybox-static (ci/packages.txt).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';
import { makeBusyboxBundle } from './bundle-fixture.js';
import { writeProcessFile } from '../lab/containers.js';

const RUNC = installPaths().runc;
let seq = 0;
const containerId = () => `sft${process.pid}xoci${++seq}`;

interface Env {
  dir: string;
  state: string;
  env: NodeJS.ProcessEnv;
  log: string;
}

function setup(allowWithoutBroker: boolean): Env {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sft${process.pid}x`));
  const preload = path.join(dir, 'libslimfast.so');
  fs.writeFileSync(preload, 'not really a library\n');
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ allowWithoutBroker }));
  const state = path.join(dir, 'state');
  return {
    dir,
    state,
    log: path.join(dir, 'log.json'),
    env: { ...process.env, SLIMFAST_STATE_DIR: state, SLIMFAST_CONFIG: config, SLIMFAST_PRELOAD: preload, SLIMFAST_HOOK_TIMEOUT: '5' },
  };
}

function sfRunc(e: Env, args: string[], opts: { cwd?: string; input?: string } = {}) {
  return spawnSync(RUNC, args, { env: e.env, cwd: opts.cwd, encoding: 'utf8', timeout: 60_000, input: opts.input });
}

function cleanup(e: Env, ids: string[]): void {
  for (const id of ids) spawnSync('runc', ['delete', '--force', id], { encoding: 'utf8' });
  fs.rmSync(e.dir, { recursive: true, force: true });
}

const SCRIPT = [
  'echo LD=$LD_PRELOAD',
  'echo SOCK=$SLIMFAST_SOCKET',
  'cat /.slimfast/libslimfast.so',
  'test -d /.slimfast/run && echo RUNDIR',
  '(echo x > /.slimfast/libslimfast.so) 2>/dev/null && echo WRITABLE || echo READONLY',
  '(echo x > /.slimfast/run/file) 2>/dev/null && echo WRITABLE || echo READONLY',
].join('; ');

test("slimfast-runc run without a broker but allowWithoutBroker: the container runs with SlimFast's env and mounts", (t) => {
  const e = setup(true);
  const bundle = makeBusyboxBundle(path.join(e.dir, 'bundle'), ['sh', '-c', SCRIPT]);
  const id = containerId();
  try {
    const r = sfRunc(e, ['run', id], { cwd: bundle });
    t.is(r.status, 0, r.stderr);
    t.is(r.stdout, 'LD=/.slimfast/libslimfast.so\nSOCK=/.slimfast/run/sf.sock\nnot really a library\nRUNDIR\nREADONLY\nREADONLY\n');
    // No broker, so nobody watched the container: its (empty) socket directory stays until a broker
    // starts on this state dir and removes directories no registration names (test/registry-lifetime).
    const left = fs.readdirSync(path.join(e.state, 'containers'));
    t.is(left.length, 1);
    t.deepEqual(fs.readdirSync(path.join(e.state, 'containers', left[0])), []);
  } finally {
    cleanup(e, [id]);
  }
});

test("without a broker and without allowWithoutBroker the container fails, with the reason in runc's JSON log", (t) => {
  const e = setup(false);
  const bundle = makeBusyboxBundle(path.join(e.dir, 'bundle'), ['true']);
  const id = containerId();
  try {
    const r = sfRunc(e, ['--log', e.log, '--log-format', 'json', 'run', '--bundle', bundle, id]);
    t.not(r.status, 0);
    const msgs = fs
      .readFileSync(e.log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    const msg = msgs.find((m) => m.includes('slimfast-hook create'));
    t.truthy(msg, msgs.join('\n'));
    t.regex(
      msg!,
      new RegExp(`cannot start container ${id} on SlimFast \\(state dir ${e.state}\\): no SlimFast broker at ${e.state}/slimfast\\.sock`),
    );
    t.regex(msg!, /"allowWithoutBroker": true/);
    t.false(
      msgs.some((m) => m.includes('slimfast-hook poststop')),
      'no second complaint from poststop',
    );
    t.notRegex(spawnSync('runc', ['list', '-q'], { encoding: 'utf8' }).stdout, new RegExp(`^${id}$`, 'm'));
    t.deepEqual(fs.readdirSync(path.join(e.state, 'containers')), [], 'the empty socket directory was removed');
  } finally {
    cleanup(e, [id]);
  }
});

test('create, start, exec (bundle process and --process file), kill, delete', (t) => {
  const e = setup(true);
  const bundle = makeBusyboxBundle(path.join(e.dir, 'bundle'), ['sleep', '60']);
  const id = containerId();
  try {
    const out = fs.openSync(path.join(e.dir, 'out'), 'w');
    const c = spawnSync(RUNC, ['--log', e.log, '--log-format', 'json', 'create', '--bundle', bundle, '--pid-file', path.join(e.dir, 'pid'), id], {
      env: e.env,
      stdio: ['ignore', out, out],
      timeout: 60_000,
    });
    fs.closeSync(out);
    t.is(c.status, 0, fs.readFileSync(path.join(e.dir, 'out'), 'utf8'));
    t.true(Number(fs.readFileSync(path.join(e.dir, 'pid'), 'utf8')) > 0);
    const state = JSON.parse(sfRunc(e, ['state', id]).stdout) as { status: string; annotations: Record<string, string> };
    t.is(state.status, 'created');
    t.is(state.annotations['io.slimfast.id'], id);
    t.is(sfRunc(e, ['start', id]).status, 0);

    const x1 = sfRunc(e, ['exec', id, 'sh', '-c', 'echo $LD_PRELOAD $SLIMFAST_SOCKET']);
    t.is(x1.stdout, '/.slimfast/libslimfast.so /.slimfast/run/sf.sock\n', x1.stderr);

    const processFile = writeProcessFile(
      path.join(e.dir, 'process.json'),
      ['sh', '-c', 'echo $LD_PRELOAD $SLIMFAST_SOCKET $A'],
      ['PATH=/bin', 'A=1'],
    );
    const x2 = sfRunc(e, ['exec', '--process', processFile, id]);
    t.is(x2.stdout, '/.slimfast/libslimfast.so /.slimfast/run/sf.sock 1\n', x2.stderr);

    t.is(sfRunc(e, ['kill', id, 'KILL']).status, 0);
    for (let i = 0; i < 50 && JSON.parse(sfRunc(e, ['state', id]).stdout).status !== 'stopped'; i++) spawnSync('sleep', ['0.1']);
    const d = sfRunc(e, ['delete', id]);
    t.is(d.status, 0, d.stderr);
    t.regex(sfRunc(e, ['state', id]).stderr, /container does not exist/);
    t.is(fs.readdirSync(path.join(e.state, 'containers')).length, 1, 'no broker: the socket directory waits for the next broker start');
  } finally {
    cleanup(e, [id]);
  }
});

test('a host-network container is not touched and runs as with runc', (t) => {
  const e = setup(false);
  const bundle = makeBusyboxBundle(path.join(e.dir, 'bundle'), ['sh', '-c', 'echo LD=$LD_PRELOAD; ls /.slimfast 2>&1 | head -1'], {
    hostNetwork: true,
  });
  const before = fs.readFileSync(path.join(bundle, 'config.json'), 'utf8');
  const id = containerId();
  try {
    const r = sfRunc(e, ['run', '-b', bundle, id]);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /^LD=\nls: \/\.slimfast: No such file or directory\n$/);
    t.is(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'), before);
    t.false(fs.existsSync(e.state));
  } finally {
    cleanup(e, [id]);
  }
});
