import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { DEFAULT_CONTAINERD_CONFIG, planContainerd } from './containerd.js';
import { DEFAULT_CRIO_DROPIN } from './crio.js';
import { DEFAULT_DOCKER_CONFIG, DOCKER_HINT, DOCKER_RESTART_HINT, DOCKER_SUBNET_NOTE } from './docker.js';
import { type InstallFlags, type InstallInput, InstallUsageError } from './engine.js';
import { applyChange, readIfExists } from './file-change.js';
import { ENGINE_WRITERS, engineWriter } from './index.js';
import { DEFAULT_SYSTEMD_UNIT } from './systemd.js';

const PATHS = { runc: '/opt/slimfast/bin/slimfast-runc', hook: '/opt/slimfast/bin/slimfast-hook', cli: '/opt/slimfast/bin/slimfast' };
const input = (flags: InstallFlags, daemonArgs: string[] = []): InstallInput => ({ flags, daemonArgs, paths: PATHS, node: '/usr/bin/node' });
/** The flags that put each writer's files in dir, and the daemon flags systemd's unit needs. */
const inDir = (dir: string): Record<string, InstallInput> => ({
  podman: input({ 'hooks-dir': path.join(dir, 'hooks.d'), 'state-dir': '/run/sf' }),
  docker: input({ config: path.join(dir, 'daemon.json'), subnet: '10.200.1.0/24' }),
  containerd: input({ config: path.join(dir, 'config.toml') }),
  crio: input({ config: path.join(dir, 'crio.conf.d', '99-slimfast.conf') }),
  systemd: input({ unit: path.join(dir, 'slimfast.service') }, ['--host-ip', '10.0.0.1']),
});

test('one writer per engine, in the order the usage names them', (t) => {
  t.deepEqual(
    ENGINE_WRITERS.map((w) => w.name),
    ['podman', 'docker', 'containerd', 'crio', 'systemd'],
  );
  t.is(engineWriter('docker'), ENGINE_WRITERS[1]);
  t.is(engineWriter('lxc'), undefined);
  t.deepEqual(
    ENGINE_WRITERS.map((w) => w.runs),
    ['hook', 'runc', 'runc', 'runc', undefined],
  );
  t.deepEqual(
    ENGINE_WRITERS.filter((w) => w.takesDaemonArgs).map((w) => w.name),
    ['systemd'],
  );
});

test('without a place on the command line, a writer edits its default; podman needs --hooks-dir', (t) => {
  const defaults: Record<string, string> = {
    docker: DEFAULT_DOCKER_CONFIG,
    containerd: DEFAULT_CONTAINERD_CONFIG,
    crio: DEFAULT_CRIO_DROPIN,
    systemd: DEFAULT_SYSTEMD_UNIT,
  };
  for (const w of ENGINE_WRITERS) {
    if (w.name === 'podman') {
      t.is(w.defaultConfig, undefined);
      t.throws(() => w.options(input({})), { instanceOf: InstallUsageError, message: 'install podman needs --hooks-dir DIR' });
      continue;
    }
    t.is(w.defaultConfig, defaults[w.name], w.name);
    t.is(w.options(input({})).target, defaults[w.name], w.name);
  }
});

test('a writer refuses the flags of other engines with the message the command line prints', (t) => {
  const refused = (name: string, flags: InstallFlags) => {
    const err = t.throws(() => engineWriter(name)!.options(input({ ...(name === 'podman' ? { 'hooks-dir': '/h' } : {}), ...flags })), {
      instanceOf: InstallUsageError,
    });
    return err?.message;
  };
  for (const name of ['docker', 'containerd', 'crio']) {
    for (const f of ['hooks-dir', 'state-dir', 'when-annotation'])
      t.is(refused(name, { [f]: 'x' }), `--${f} is an option of install podman only`, `${name} --${f}`);
  }
  t.is(refused('podman', { config: 'x' }), '--config is not an option of install podman');
  t.is(refused('podman', { 'when-annotation': 'io.x' }), '--when-annotation takes KEY=REGEX');
  for (const f of ['config', 'hooks-dir', 'state-dir', 'when-annotation'])
    t.is(refused('systemd', { [f]: 'x' }), `--${f} is not an option of install systemd`);
});

test('every writer through the interface: its files written, then planning again changes nothing', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfwriters-'));
  try {
    for (const w of ENGINE_WRITERS) {
      const { target, opts } = w.options(inDir(dir)[w.name]);
      const changes = w.plan(target, readIfExists, opts);
      t.true(changes.length > 0 && changes.every((c) => applyChange(c).changed), w.name);
      t.true(
        w.plan(target, readIfExists, opts).every((c) => !applyChange(c).changed),
        `${w.name} is idempotent`,
      );
      t.true(w.hint(changes).length > 0, w.name);
    }
    const toml = path.join(dir, 'config.toml');
    t.is(fs.readFileSync(toml, 'utf8'), planContainerd(toml, undefined, PATHS.runc).after, 'the same text the writer function makes');
    t.true(
      fs
        .readFileSync(path.join(dir, 'slimfast.service'), 'utf8')
        .includes('ExecStart=/usr/bin/node /opt/slimfast/bin/slimfast daemon --state-dir /run/slimfast --host-ip 10.0.0.1'),
    );
    t.deepEqual(fs.readdirSync(path.join(dir, 'hooks.d')).sort(), ['50-slimfast-createruntime.json', '50-slimfast-precreate.json']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('docker: the hint asks for a restart when bip changes, the note comes with the change', (t) => {
  const docker = engineWriter('docker')!;
  const plain = docker.options(input({ config: '/nonexistent/daemon.json' }));
  const changes = docker.plan(plain.target, () => undefined, plain.opts);
  t.is(changes[0].note, DOCKER_SUBNET_NOTE);
  t.is(docker.hint(changes), DOCKER_HINT);
  const bip = docker.options(input({ config: '/nonexistent/daemon.json', subnet: '10.200.3.0/24' }));
  const withBip = docker.plan(bip.target, () => undefined, bip.opts);
  t.is(withBip[0].note, undefined);
  t.is(docker.hint(withBip), DOCKER_RESTART_HINT);
});
