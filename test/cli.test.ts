// The command-line contract: clear errors for bad input, and the daemon's state-dir takeover.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { CLI, Topology } from '../lab/topology.js';
import { parseClusterKey } from '../common/cluster-key.js';
import { parseContainerLimits } from '../broker/daemon.js';

const cli = (args: string[], opts: { env?: Record<string, string> } = {}) =>
  execa(process.execPath, [CLI, ...args], { reject: false, timeout: 20_000, env: opts.env });

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sfcli-'));

test('paths --json names existing files of this install', async (t) => {
  const r = await cli(['paths', '--json']);
  t.is(r.exitCode, 0);
  const p = JSON.parse(r.stdout) as Record<string, string>;
  t.deepEqual(Object.keys(p).sort(), ['addon', 'cli', 'hook', 'preload', 'runc', 'seccompKeeper']);
  for (const v of Object.values(p)) t.true(path.isAbsolute(v));
  t.true(fs.existsSync(p.cli));
  t.true(fs.existsSync(p.preload), 'the preload library is built');
  t.true(fs.existsSync(p.addon), 'the addon is built');
  t.true(fs.existsSync(p.seccompKeeper), 'the seccomp keeper is built');
});

test('usage errors exit 2 and say what is wrong', async (t) => {
  const r1 = await cli(['daemon']);
  t.is(r1.exitCode, 2);
  t.regex(r1.stderr, /--host-ip is required/);
  const r2 = await cli(['frobnicate']);
  t.is(r2.exitCode, 2);
  t.regex(r2.stderr, /unknown command "frobnicate"/);
  const r3 = await cli(['container', 'add', '--id', 'x']);
  t.is(r3.exitCode, 2);
  t.regex(r3.stderr, /--netns is required/);
  const r4 = await cli(['daemon', '--host-ip', '127.0.0.1', '--port', '70000']);
  t.is(r4.exitCode, 2);
  t.regex(r4.stderr, /--port must be 1-65535/);
  for (const bad of ['-1', '65', '2.5', 'many']) {
    const r = await cli(['daemon', '--host-ip', '127.0.0.1', `--pool-depth=${bad}`]);
    t.is(r.exitCode, 2, bad);
    t.regex(r.stderr, /--pool-depth must be 0-64/, bad);
  }
  for (const bad of ['conns', 'conns=0', 'sockets=5', 'pools=1,x', '']) {
    const r = await cli(['daemon', '--host-ip', '127.0.0.1', `--container-limits=${bad}`]);
    t.is(r.exitCode, 2, bad);
    t.regex(r.stderr, /--container-limits/, bad);
  }
  const r5 = await cli(['daemon', '--host-ip', '127.0.0.1', '--fd-limit', '10']);
  t.is(r5.exitCode, 2);
  t.regex(r5.stderr, /--fd-limit must be 256-/);
});

test('--container-limits: NAME=N pairs', (t) => {
  t.deepEqual(parseContainerLimits('conns=200, pending=50'), { conns: 200, pending: 50 });
  t.deepEqual(parseContainerLimits('conns=1,pools=2,listeners=3,pending=4'), { conns: 1, pools: 2, listeners: 3, pending: 4 });
  t.throws(() => parseContainerLimits('conns=-1'), { message: /"conns=-1" is not NAME=N/ });
  t.throws(() => parseContainerLimits(','), { message: /needs at least one/ });
});

test('a bad peers file is refused with the reason', async (t) => {
  const dir = tmp();
  const peers = path.join(dir, 'peers.json');
  fs.writeFileSync(peers, '{"hosts": [{"ip": "127.0.0.1", "subnet": "10.1.0.0/24"}, {"ip": "127.0.0.2", "subnet": "10.1.0.128/25"}]}');
  const r = await cli(['daemon', '--host-ip', '127.0.0.1', '--state-dir', path.join(dir, 's'), '--peers', peers]);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /overlap/);
  fs.writeFileSync(peers, '{"hosts": [{"ip": "127.0.0.2", "subnet": "10.1.0.0/24"}]}');
  const r2 = await cli(['daemon', '--host-ip', '127.0.0.1', '--state-dir', path.join(dir, 's'), '--peers', peers]);
  t.is(r2.exitCode, 1);
  t.regex(r2.stderr, /--host-ip 127\.0\.0\.1 is not one of the hosts/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('bad etcd options are refused with the reason, and an unreachable etcd without a cached view too', async (t) => {
  const dir = tmp();
  const base = ['daemon', '--host-ip', '127.0.0.1', '--state-dir', path.join(dir, 's')];
  const r1 = await cli([...base, '--lease-ttl', '5']);
  t.is(r1.exitCode, 2);
  t.regex(r1.stderr, /--lease-ttl needs --etcd/);
  const r2 = await cli([...base, '--etcd', 'http://127.0.0.1:1', '--lease-ttl', '1']);
  t.is(r2.exitCode, 2);
  t.regex(r2.stderr, /--lease-ttl must be 2-3600/);
  const r3 = await cli([...base, '--etcd', '127.0.0.1:2379']);
  t.is(r3.exitCode, 1);
  t.regex(r3.stderr, /--etcd 127\.0\.0\.1:2379: expected a URL like http:/);
  fs.writeFileSync(path.join(dir, 'peers.json'), '{"hosts": [{"ip": "127.0.0.1", "subnet": "10.1.0.0/24"}]}');
  const r4 = await cli([...base, '--etcd', 'http://127.0.0.1:1', '--peers', path.join(dir, 'peers.json')]);
  t.is(r4.exitCode, 1);
  t.regex(r4.stderr, /--etcd and --peers exclude each other/);
  // Port 1 on loopback: nothing listens there.
  const r5 = await cli([...base, '--etcd', 'http://127.0.0.1:1']);
  t.is(r5.exitCode, 1);
  t.regex(r5.stderr, /cannot reach etcd at http:\/\/127\.0\.0\.1:1 .* no cached membership/);
  t.false(fs.existsSync(path.join(dir, 's', 'slimfast.pid')), 'the state dir is released');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a missing or wrong-sized cluster key file is refused before anything is claimed', async (t) => {
  const dir = tmp();
  const base = ['daemon', '--host-ip', '127.0.0.1', '--state-dir', path.join(dir, 's'), '--port', '1'];
  const r1 = await cli([...base, '--cluster-key', path.join(dir, 'none.key')]);
  t.is(r1.exitCode, 1);
  t.regex(r1.stderr, /cannot read the cluster key .*none\.key: ENOENT/);
  fs.writeFileSync(path.join(dir, 'short.key'), 'secret\n', { mode: 0o600 });
  const r2 = await cli([...base, '--cluster-key', path.join(dir, 'short.key')]);
  t.is(r2.exitCode, 1);
  t.regex(r2.stderr, /short\.key holds 7 bytes; it needs 16-64 \(make one with: head -c 32 \/dev\/urandom/);
  t.false(fs.existsSync(path.join(dir, 's', 'slimfast.pid')), 'the state dir was not claimed');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a static daemon whose peers file lists other hosts refuses to start without a cluster key, and says how to make one', async (t) => {
  const dir = tmp();
  const peers = path.join(dir, 'peers.json');
  fs.writeFileSync(peers, '{"hosts": [{"ip": "127.0.0.1", "subnet": "10.1.1.0/24"}, {"ip": "127.0.0.2", "subnet": "10.1.2.0/24"}]}');
  const base = ['daemon', '--host-ip', '127.0.0.1', '--state-dir', path.join(dir, 's'), '--port', '1', '--peers', peers];
  const r = await cli(base);
  t.is(r.exitCode, 1);
  t.regex(
    r.stderr,
    new RegExp(
      `^slimfast: --peers ${peers} lists other hosts and no --cluster-key is given\\. Without a key the hosts share, anything that reaches a peer's reserved port from this host's address .* can announce a host key of its own and pose as this host`,
    ),
  );
  t.regex(
    r.stderr,
    /\n {2}head -c 32 \/dev\/urandom > \/etc\/slimfast\/cluster\.key && chmod 600 \/etc\/slimfast\/cluster\.key {3}# once; then copy the file to every host\n/,
  );
  t.regex(r.stderr, /--cluster-key \/etc\/slimfast\/cluster\.key\n/);
  t.regex(r.stderr, /--insecure-host-keys runs without one/);
  t.false(fs.existsSync(path.join(dir, 's', 'slimfast.pid')), 'the state dir was not claimed');
  const both = await cli([...base, '--insecure-host-keys', '--cluster-key', path.join(dir, 'k')]);
  t.is(both.exitCode, 2);
  t.regex(both.stderr, /--cluster-key and --insecure-host-keys exclude each other/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('in etcd mode a daemon that can neither read the shared cluster key nor find a cached copy refuses to start', async (t) => {
  const dir = tmp();
  const state = path.join(dir, 's');
  fs.mkdirSync(state);
  // A membership cached by an earlier run (etcd is unreachable now), but no copy of the key.
  fs.writeFileSync(
    path.join(state, 'membership.json'),
    JSON.stringify({ subnet: '10.1.1.0/24', overlay: '10.1.0.0/16', hosts: [{ ip: '127.0.0.2', subnet: '10.1.2.0/24', port: 4800 }] }),
  );
  const r = await cli(['daemon', '--host-ip', '127.0.0.1', '--state-dir', state, '--port', '1', '--etcd', 'http://127.0.0.1:1']);
  t.is(r.exitCode, 1);
  t.regex(
    r.stderr,
    /cannot reach etcd at http:\/\/127\.0\.0\.1:1 \(.*\) to read the cluster key \/slimfast\/v1\/cluster-key, and there is no copy of it cached in .*cluster-key\.json; this broker will not serve other hosts without it/,
  );
  t.regex(
    r.stderr,
    /etcdctl get --print-value-only \/slimfast\/v1\/cluster-key > cluster\.key && chmod 600 cluster\.key\) and pass --cluster-key FILE/,
  );
  t.false(fs.existsSync(path.join(state, 'slimfast.pid')), 'the state dir is released');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('cluster key files: raw bytes, or hex text of 16-64 bytes', (t) => {
  const raw = Buffer.from([...Array(32).keys()]);
  t.deepEqual(parseClusterKey(raw, 'k'), raw);
  t.deepEqual(parseClusterKey(Buffer.from(`${raw.toString('hex')}\n`), 'k'), raw, 'hex with a newline');
  t.deepEqual(
    parseClusterKey(Buffer.from('0123456789abcdef0123'), 'k'),
    Buffer.from('0123456789abcdef0123'),
    '20 hex digits are too few for hex: 20 raw bytes',
  );
  t.throws(() => parseClusterKey(Buffer.alloc(65, 1), 'k'), { message: /holds 65 bytes; it needs 16-64/ });
  t.throws(() => parseClusterKey(Buffer.from('ab'.repeat(65)), 'k'), { message: /holds 65 bytes/ }, '65 bytes as hex');
});

test('commands against a missing broker fail fast with a hint', async (t) => {
  const dir = tmp();
  const started = Date.now();
  const r = await cli(['status', '--state-dir', dir]);
  t.is(r.exitCode, 3);
  t.regex(r.stderr, /no SlimFast broker at .*slimfast\.sock/);
  t.true(Date.now() - started < 10_000);
  const r2 = await cli(['container', 'ls'], { env: { SLIMFAST_STATE_DIR: dir } });
  t.is(r2.exitCode, 3, 'SLIMFAST_STATE_DIR is honoured');
  t.regex(r2.stderr, new RegExp(dir));
  fs.rmSync(dir, { recursive: true, force: true });
});

test.serial('a state dir left by a killed daemon is taken over; registrations survive', async (t) => {
  const topo = await Topology.create({ hosts: 1, containers: [1] });
  try {
    const [h] = topo.hosts;
    const c = topo.container('c1');
    const bad = await topo.cli(['container', 'add', '--state-dir', h.stateDir, '--id', 'bad id', '--netns', c.netnsPath], { reject: false });
    t.is(bad.exitCode, 1);
    t.regex(bad.stderr, /container id "bad id" is invalid/);
    const dup = await topo.cli(['container', 'add', '--state-dir', h.stateDir, '--id', 'c1', '--netns', c.netnsPath], { reject: false });
    t.regex(dup.stderr, /already registered/);
    const second = await topo.cli(['daemon', '--host-ip', h.ip, '--state-dir', h.stateDir, '--port', String(topo.port + 1)], { reject: false });
    t.is(second.exitCode, 1, 'a second daemon on a live state dir is refused');
    t.regex(second.stderr, /another slimfast daemon .* is serving/);

    // containers/ gets its mode back at the next start: traversable by anyone (non-root processes of
    // a registered namespace reach their socket through it), listable and writable by root only.
    for (const mode of [0o755, 0o700]) {
      fs.chmodSync(path.join(h.stateDir, 'containers'), mode);
      await topo.stopBroker(h, 'SIGKILL');
      await topo.startBroker(h);
      t.is(fs.statSync(path.join(h.stateDir, 'containers')).mode & 0o777, 0o711, `containers/ is 711 again after ${mode.toString(8)}`);
    }
    const ls = JSON.parse((await topo.cli(['container', 'ls', '--json', '--state-dir', h.stateDir])).stdout) as { id: string; ip: string }[];
    t.deepEqual(
      ls.map((x) => [x.id, x.ip]),
      [['c1', c.ip]],
    );
    const rm = await topo.cli(['container', 'rm', '--state-dir', h.stateDir, '--id', 'c1']);
    t.is(rm.exitCode, 0);
    const rm2 = await topo.cli(['container', 'rm', '--state-dir', h.stateDir, '--id', 'c1'], { reject: false });
    t.is(rm2.exitCode, 1);
    t.regex(rm2.stderr, /no container "c1"/);
  } finally {
    await topo.destroy();
  }
});
