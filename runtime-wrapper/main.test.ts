// The edit step of slimfast-runc (create/run: the bundle; exec: the --process file) and the direct mode
// (node dist/runtime-wrapper/main.js as a complete runtime).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { parseRuncArgs } from './args.js';
import { edit, editBundle } from './main.js';
import { SpecError } from './spec.js';

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfmain-'));
  const bundle = path.join(dir, 'bundle');
  fs.mkdirSync(bundle);
  const preload = path.join(dir, 'libslimfast.so');
  fs.writeFileSync(preload, '');
  const env = {
    ...process.env,
    SLIMFAST_STATE_DIR: path.join(dir, 'state'),
    SLIMFAST_PRELOAD: preload,
    SLIMFAST_CONFIG: path.join(dir, 'none.json'),
  };
  return { dir, bundle, preload, env, config: path.join(bundle, 'config.json') };
}

const SPEC = {
  ociVersion: '1.0.2-dev',
  process: { args: ['sh'], env: ['PATH=/bin'] },
  root: { path: 'rootfs' },
  linux: { namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'mount' }] },
};

test('create edits the bundle and makes the socket directory; run again, nothing changes', (t) => {
  const s = setup();
  fs.writeFileSync(s.config, JSON.stringify(SPEC, null, '\t'));
  const r = editBundle(s.bundle, 'web-1', s.env);
  t.true(r.changed);
  const spec = JSON.parse(fs.readFileSync(s.config, 'utf8'));
  const run = spec.mounts.find((m: { destination: string }) => m.destination === '/.slimfast/run');
  t.true(fs.statSync(run.source).isDirectory());
  t.true(run.source.startsWith(path.join(s.dir, 'state', 'containers') + path.sep));
  t.is(spec.mounts.find((m: { destination: string }) => m.destination === '/.slimfast/libslimfast.so').source, s.preload);
  t.deepEqual(spec.hooks.createRuntime[0].args, ['slimfast-hook', 'create']);
  t.is(spec.hooks.poststop, undefined, 'no poststop hook: the broker watches the init process');
  t.true(spec.hooks.createRuntime[0].env.includes(`SLIMFAST_STATE_DIR=${path.join(s.dir, 'state')}`));
  const text = fs.readFileSync(s.config, 'utf8');
  t.regex(text, /^\{\n\t"ociVersion"/, 'the original tab indentation is kept');
  t.false(editBundle(s.bundle, 'web-1', s.env).changed);
  t.is(fs.readFileSync(s.config, 'utf8'), text);
  fs.rmSync(s.dir, { recursive: true });
});

test('host-network and disabled containers are left untouched (file and state dir)', (t) => {
  const s = setup();
  const host = { ...SPEC, linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] } };
  const hostPath = { ...SPEC, linux: { namespaces: [{ type: 'network', path: `/proc/${process.pid}/ns/net` }] } };
  const disabled = { ...SPEC, annotations: { 'io.slimfast.disable': 'true' } };
  for (const spec of [host, hostPath, disabled]) {
    const text = JSON.stringify(spec);
    fs.writeFileSync(s.config, text);
    const r = editBundle(s.bundle, 'x', s.env);
    t.false(r.changed);
    t.regex(r.skipped!, /stays off SlimFast/);
    t.is(fs.readFileSync(s.config, 'utf8'), text);
  }
  t.false(fs.existsSync(path.join(s.dir, 'state')));
  fs.rmSync(s.dir, { recursive: true });
});

test('a missing preload library or config.json is a clear error', (t) => {
  const s = setup();
  fs.writeFileSync(s.config, JSON.stringify(SPEC));
  t.throws(() => editBundle(s.bundle, 'x', { ...s.env, SLIMFAST_PRELOAD: '/nonexistent/libslimfast.so' }), {
    instanceOf: SpecError,
    message: /preload library \/nonexistent\/libslimfast\.so is missing: build it/,
  });
  t.is(fs.readFileSync(s.config, 'utf8'), JSON.stringify(SPEC), 'nothing was written');
  t.throws(() => editBundle(path.join(s.dir, 'nobundle'), 'x', s.env), {
    instanceOf: SpecError,
    message: /cannot read the OCI configuration .*nobundle\/config\.json/,
  });
  fs.rmSync(s.dir, { recursive: true });
});

/** A runc whose `state ID` reports the annotations in $SF_STATE_DIR/ID.json (exit 1 when there is none). */
function fakeStateRunc(dir: string): string {
  const p = path.join(dir, 'runc');
  fs.writeFileSync(
    p,
    `#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --root) shift 2;; --*) shift;; *) break;; esac; done
[ "$1" = state ] || exit 3
[ -f "$SF_STATE_DIR/$2.json" ] || { echo 'container does not exist' >&2; exit 1; }
cat "$SF_STATE_DIR/$2.json"
`,
    { mode: 0o755 },
  );
  return p;
}

test('exec --process: SlimFast containers get the env, others are left alone', (t) => {
  const s = setup();
  const runc = fakeStateRunc(s.dir);
  const states = path.join(s.dir, 'states');
  fs.mkdirSync(states);
  fs.writeFileSync(path.join(states, 'on.json'), JSON.stringify({ id: 'on', annotations: { 'io.slimfast.id': 'on' } }));
  fs.writeFileSync(path.join(states, 'off.json'), JSON.stringify({ id: 'off', annotations: { other: 'x' } }));
  const env = { ...s.env, SLIMFAST_RUNC: runc, SF_STATE_DIR: states };
  const processFile = path.join(s.dir, 'process.json');
  const proc = { terminal: false, user: { uid: 0, gid: 0 }, args: ['ls'], env: ['PATH=/bin', 'LD_PRELOAD=/lib/x.so'], cwd: '/' };
  process.env.SF_STATE_DIR = states; // the fake runc is run with this process's environment
  try {
    for (const id of ['off', 'missing']) {
      fs.writeFileSync(processFile, JSON.stringify(proc));
      const r = edit(parseRuncArgs(['--root', '/run/x', 'exec', '--process', processFile, '--detach', id]), env);
      t.false(r.changed, id);
      t.is(fs.readFileSync(processFile, 'utf8'), JSON.stringify(proc));
    }
    const r = edit(parseRuncArgs(['--root', '/run/x', 'exec', '--process', processFile, '--detach', 'on']), env);
    t.true(r.changed);
    t.deepEqual(JSON.parse(fs.readFileSync(processFile, 'utf8')).env, [
      'PATH=/bin',
      'LD_PRELOAD=/lib/x.so:/.slimfast/libslimfast.so',
      'SLIMFAST_SOCKET=/.slimfast/run/sf.sock',
    ]);
    const noFile = edit(parseRuncArgs(['exec', '-t', 'on', 'sh']), env);
    t.false(noFile.changed);
    t.regex(noFile.skipped!, /no --process file/);
  } finally {
    delete process.env.SF_STATE_DIR;
  }
  fs.rmSync(s.dir, { recursive: true });
});

test('direct mode: edits, runs the real runc with the preserved fds, and returns its exit code', async (t) => {
  const s = setup();
  fs.writeFileSync(s.config, JSON.stringify(SPEC));
  const runc = path.join(s.dir, 'runc');
  fs.writeFileSync(runc, '#!/bin/sh\necho "args: $*"\necho "fd3" >&3\nexit 7\n', { mode: 0o755 });
  const child = spawn(process.execPath, [MAIN, 'run', '--preserve-fds', '1', '-b', s.bundle, 'direct-1'], {
    env: { ...s.env, SLIMFAST_RUNC: runc },
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let fd3 = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  (child.stdio[3] as NodeJS.ReadableStream).on('data', (d) => (fd3 += d));
  const code = await new Promise((resolve) => child.on('close', resolve));
  t.is(code, 7, err);
  t.is(out, `args: run --preserve-fds 1 -b ${s.bundle} direct-1\n`);
  t.is(fd3, 'fd3\n');
  t.is(JSON.parse(fs.readFileSync(s.config, 'utf8')).annotations['io.slimfast.id'], 'direct-1');
  fs.rmSync(s.dir, { recursive: true });
});
