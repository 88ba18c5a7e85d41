// `slimfast install systemd`: the unit's text, its checks, and the real command with systemd's own verifier.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';
import { InstallError } from './file-change.js';
import { planSystemd, systemdUnit, systemdWord } from './systemd.js';

const P = installPaths();
const cli = (args: string[]) => spawnSync(P.cli, args, { encoding: 'utf8', timeout: 30_000 });

test('ExecStart words are quoted for systemd only when they need it', (t) => {
  t.is(systemdWord('/usr/bin/node'), '/usr/bin/node');
  t.is(systemdWord('http://10.0.0.5:2379,http://10.0.0.6:2379'), 'http://10.0.0.5:2379,http://10.0.0.6:2379');
  t.is(systemdWord('a b'), '"a b"');
  t.is(systemdWord('say "x"'), '"say \\"x\\""');
  t.is(systemdWord('100%'), '100%%');
  t.is(systemdWord('$HOME'), '"$$HOME"');
  t.is(systemdWord(''), '""');
});

test('the unit restarts the broker on failure and keeps /run/slimfast across restarts', (t) => {
  const unit = systemdUnit({
    node: '/usr/bin/node',
    cli: '/opt/slimfast/bin/slimfast',
    daemonArgs: ['--host-ip', '10.0.0.1', '--peers', '/etc/slimfast/peers.json'],
  });
  t.regex(
    unit,
    /^ExecStart=\/usr\/bin\/node \/opt\/slimfast\/bin\/slimfast daemon --state-dir \/run\/slimfast --host-ip 10\.0\.0\.1 --peers \/etc\/slimfast\/peers\.json$/m,
  );
  for (const line of ['Restart=on-failure', 'RuntimeDirectory=slimfast', 'RuntimeDirectoryPreserve=yes', 'WantedBy=multi-user.target']) {
    t.true(unit.split('\n').includes(line), line);
  }
});

test('the unit needs --host-ip and owns the state dir', (t) => {
  const o = { node: '/usr/bin/node', cli: '/x' };
  t.throws(() => planSystemd('/u', undefined, { ...o, daemonArgs: ['--peers', 'p.json'] }), { instanceOf: InstallError, message: /needs --host-ip/ });
  t.throws(() => planSystemd('/u', undefined, { ...o, daemonArgs: ['--host-ip', '1.2.3.4', '--state-dir', '/var/x'] }), {
    message: /--state-dir is not for the unit: its state dir is \/run\/slimfast/,
  });
  t.notThrows(() => planSystemd('/u', undefined, { ...o, daemonArgs: ['--host-ip=1.2.3.4'] }));
});

test('a unit with --peers needs a cluster key, or the explicit opt-out', (t) => {
  const o = { node: '/usr/bin/node', cli: '/x' };
  const peers = ['--host-ip', '1.2.3.4', '--peers', '/etc/slimfast/peers.json'];
  t.throws(() => planSystemd('/u', undefined, { ...o, daemonArgs: peers }), {
    instanceOf: InstallError,
    message: /--peers needs --cluster-key FILE, the same file on every host \(make it once: head -c 32 \/dev\/urandom/,
  });
  t.notThrows(() => planSystemd('/u', undefined, { ...o, daemonArgs: [...peers, '--cluster-key', '/etc/slimfast/cluster.key'] }));
  t.notThrows(() => planSystemd('/u', undefined, { ...o, daemonArgs: [...peers, '--cluster-key=/etc/slimfast/cluster.key'] }));
  t.notThrows(() => planSystemd('/u', undefined, { ...o, daemonArgs: [...peers, '--insecure-host-keys'] }));
  t.notThrows(
    () => planSystemd('/u', undefined, { ...o, daemonArgs: ['--host-ip', '1.2.3.4', '--etcd', 'http://10.0.0.5:2379'] }),
    'etcd shares a key',
  );
});

test('install systemd writes a unit systemd-analyze accepts; again with the same flags changes nothing', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfsystemd-'));
  try {
    const unit = path.join(dir, 'slimfast.service');
    const args = [
      'install',
      'systemd',
      '--unit',
      unit,
      '--',
      '--host-ip',
      '192.168.77.1',
      '--etcd',
      'http://192.168.77.254:2379',
      '--cluster-cidr',
      '10.200.0.0/16',
    ];
    const dry = cli([...args.slice(0, 4), '--dry-run', ...args.slice(4)]);
    t.is(dry.status, 0, dry.stderr);
    t.regex(dry.stdout, /^\+ExecStart=.* daemon --state-dir \/run\/slimfast --host-ip 192\.168\.77\.1 --etcd http:\/\/192\.168\.77\.254:2379/m);
    t.false(fs.existsSync(unit), 'a dry run writes nothing');
    const r = cli(args);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /systemctl daemon-reload && systemctl enable --now slimfast/);
    t.true(fs.readFileSync(unit, 'utf8').includes(`ExecStart=${process.execPath} ${P.cli} daemon`));
    t.regex(cli(args).stdout, /already up to date/);
    const bad = cli(['install', 'systemd', '--unit', unit, '--', '--peers', 'x']);
    t.is(bad.status, 1);
    t.regex(bad.stderr, /needs --host-ip/);
    const analyze = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 30_000 });
    if (analyze.error) {
      t.log(`systemd-analyze not run: ${analyze.error.message}`);
    } else {
      // It also reports on units the file refers to that this machine lacks; our own file must be clean.
      const ours = analyze.stderr.split('\n').filter((l) => l.includes('slimfast.service'));
      t.deepEqual(ours, [], analyze.stderr);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
