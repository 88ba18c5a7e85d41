// `slimfast install …` through the real command line (bin/slimfast).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';

const P = installPaths();
const cli = (args: string[]) => spawnSync(P.cli, args, { encoding: 'utf8', timeout: 30_000 });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sfinstall-'));

test('install docker: --dry-run prints a diff and writes nothing; then it writes with a backup; then nothing to do', (t) => {
  const dir = tmp();
  const file = path.join(dir, 'daemon.json');
  fs.writeFileSync(file, '{\n  "debug": true\n}\n');
  const dry = cli(['install', 'docker', '--config', file, '--dry-run']);
  t.is(dry.status, 0, dry.stderr);
  t.regex(dry.stdout, new RegExp(`^--- ${file}\\n\\+\\+\\+ ${file}\\n@@ `));
  t.regex(dry.stdout, /^\+ {4}"slimfast": \{$/m);
  t.regex(dry.stdout, /dry run: nothing was written/);
  t.deepEqual(fs.readdirSync(dir), ['daemon.json']);
  const r = cli(['install', 'docker', '--config', file]);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /daemon\.json: updated \(the previous version is in .*daemon\.json\.slimfast-backup-\d{8}T\d{6}Z\)/);
  t.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { debug: true, runtimes: { slimfast: { path: P.runc } } });
  t.regex(r.stderr, /note: Docker's default bridge \(172\.17\.0\.0\/16\) is outside SlimFast's subnets/);
  const again = cli(['install', 'docker', '--config', file]);
  t.regex(again.stdout, /already up to date/);
  t.is(fs.readdirSync(dir).length, 2);
  const bip = cli(['install', 'docker', '--config', file, '--subnet', '10.200.7.0/24']);
  t.is(bip.status, 0, bip.stderr);
  t.is(bip.stderr, '');
  t.regex(bip.stdout, /restart dockerd/);
  t.is(JSON.parse(fs.readFileSync(file, 'utf8')).bip, '10.200.7.1/24');
  fs.rmSync(dir, { recursive: true });
});

test('install docker on a malformed daemon.json: exit 1, a clear message, the file untouched, no backup', (t) => {
  const dir = tmp();
  const file = path.join(dir, 'daemon.json');
  fs.writeFileSync(file, '{"debug": true,,}');
  const r = cli(['install', 'docker', '--config', file]);
  t.is(r.status, 1);
  t.regex(r.stderr, /^slimfast install docker: .*daemon\.json is not valid JSON .*fix it first \(it was left unchanged\)/);
  t.is(fs.readFileSync(file, 'utf8'), '{"debug": true,,}');
  t.deepEqual(fs.readdirSync(dir), ['daemon.json']);
  fs.rmSync(dir, { recursive: true });
});

test('install containerd, crio and podman write their files', (t) => {
  const dir = tmp();
  const toml = path.join(dir, 'config.toml');
  t.is(cli(['install', 'containerd', '--config', toml]).status, 0);
  t.regex(fs.readFileSync(toml, 'utf8'), new RegExp(`BinaryName = "${P.runc}"`));
  const crio = path.join(dir, 'crio.conf.d', '99-slimfast.conf');
  t.is(cli(['install', 'crio', '--config', crio]).status, 0);
  t.regex(fs.readFileSync(crio, 'utf8'), new RegExp(`runtime_path = "${P.runc}"`));
  const hooks = path.join(dir, 'hooks.d');
  const r = cli(['install', 'podman', '--hooks-dir', hooks, '--state-dir', '/run/sf-elsewhere']);
  t.is(r.status, 0, r.stderr);
  t.is(fs.readdirSync(hooks).length, 2);
  t.regex(fs.readFileSync(path.join(hooks, '50-slimfast-createruntime.json'), 'utf8'), /"SLIMFAST_STATE_DIR=\/run\/sf-elsewhere"/);
  fs.rmSync(dir, { recursive: true });
});

test('usage errors exit 2; the usage lists install', (t) => {
  for (const args of [
    ['install'],
    ['install', 'lxc'],
    ['install', 'podman'],
    ['install', 'docker', '--hooks-dir', '/x'],
    ['install', 'docker', '--bogus'],
    ['install', 'containerd', '--subnet', '10.200.1.0/24'],
  ]) {
    const r = cli(args);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, /^slimfast install: /);
  }
  t.regex(cli(['--help']).stdout, /install podman --hooks-dir DIR/);
});
