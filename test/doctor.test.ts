// `slimfast doctor`: the pure verdicts (kernel versions, the TCP Fast Open sysctl, capabilities,
// mode bits, key sizes, port holders), then the real command on this machine: everything present,
// and one broken thing at a time (state dir, port, runc, etcd, cluster key); last, against real
// brokers with etcd and a cluster key in namespaces the test creates.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import type { HealthMsg } from '../common/api-types.js';
import {
  brokerCheck,
  CAP_BPF,
  CAP_NET_ADMIN,
  CAP_SYS_ADMIN,
  clusterKeyCheck,
  confinementCheck,
  descriptorsCheck,
  kernelCheck,
  nodeCheck,
  parseCapEff,
  parseKernelRelease,
  parseNofile,
  parseSsListeners,
  parseTfo,
  portCheck,
  privilegesCheck,
  stateDirCheck,
  steeringCheck,
  tfoCheck,
  versionAtLeast,
} from '../cli/doctor.js';
import { CLI, Topology } from '../lab/topology.js';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  detail: string;
  fix?: string;
  ms: number;
}
interface Report {
  ok: boolean;
  checks: Check[];
}

const NAMES = [
  'node',
  'privileges',
  'kernel',
  'tcp-fastopen',
  'addon',
  'bpf-steering',
  'confinement',
  'preload',
  'tools',
  'config',
  'runc',
  'slimfast-runc',
  'seccomp-keeper',
  'state-dir',
  'broker',
  'descriptors',
  'reserved-port',
  'etcd',
  'cluster-key',
];

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sfdoctor-'));
const scratch = tmp();
test.after.always(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Runs `slimfast doctor --json …` without this machine's config file or SlimFast variables. */
async function doctor(args: string[], env: Record<string, string> = {}, prefix: string[] = []) {
  const clean: Record<string, string | undefined> = { ...process.env, SLIMFAST_CONFIG: path.join(scratch, 'no-config.json') };
  for (const k of ['SLIMFAST_RUNC', 'SLIMFAST_STATE_DIR']) delete clean[k];
  const started = Date.now();
  const argv = [...prefix, process.execPath, CLI, 'doctor', '--json', ...args];
  const r = await execa(argv[0], argv.slice(1), { reject: false, timeout: 30_000, env: { ...clean, ...env }, extendEnv: false });
  let report: Report | undefined;
  try {
    report = JSON.parse(String(r.stdout)) as Report;
  } catch {
    // asserted below
  }
  const get = (name: string): Check => {
    const c = report?.checks.find((x) => x.name === name);
    if (!c) throw new Error(`no check "${name}" in: ${r.stdout}\n${r.stderr}`);
    return c;
  };
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr), report, get, ms: Date.now() - started };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '0.0.0.0', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function stateDir(mode = 0o755): string {
  const d = fs.mkdtempSync(path.join(scratch, 's-'));
  fs.chmodSync(d, mode);
  return d;
}

// ------------------------------------------------------------------------------------------------
// Pure checks

test('kernel releases: parse and compare', (t) => {
  t.deepEqual(parseKernelRelease('6.1.0-18-amd64'), [6, 1, 0]);
  t.deepEqual(parseKernelRelease('5.10.209'), [5, 10, 209]);
  t.deepEqual(parseKernelRelease('6.8'), [6, 8, 0]);
  t.is(parseKernelRelease('weird'), undefined);
  t.true(versionAtLeast([6, 1, 0], [6, 1]));
  t.true(versionAtLeast([6, 10, 0], [6, 9]));
  t.false(versionAtLeast([5, 15, 150], [6, 1]));
  t.false(versionAtLeast([5, 4, 0], [5, 10]));
  t.true(versionAtLeast([10, 0], [5, 10]));
});

test('kernel check: below 5.10 warns, a cluster key below 6.1 warns with what the broker does then, no netns fails', (t) => {
  t.is(kernelCheck('6.1.0-18-amd64', { netns: true, clusterKey: true }).status, 'ok');
  t.is(kernelCheck('5.15.0', { netns: true, clusterKey: false }).status, 'ok');
  t.regex(kernelCheck('5.15.0', { netns: true, clusterKey: false }).detail, /a cluster key would need 6\.1/);
  const old = kernelCheck('5.4.0', { netns: true, clusterKey: false });
  t.is(old.status, 'warn');
  t.regex(old.fix!, /5\.10/);
  const auth = kernelCheck('5.15.0', { netns: true, clusterKey: true });
  t.is(auth.status, 'warn');
  t.regex(auth.detail, /bpf_ktime_get_tai_ns.*the broker checks and hands over every connection itself/);
  t.is(kernelCheck('6.6.0', { netns: false, clusterKey: false }).status, 'fail');
});

test('node version: 20.8 or newer', (t) => {
  t.is(nodeCheck('v20.8.0').status, 'ok');
  t.is(nodeCheck('v22.1.0').status, 'ok');
  t.is(nodeCheck('v20.7.9').status, 'fail');
  t.is(nodeCheck('v18.19.0').status, 'fail');
});

test('tcp_fastopen: client and server bits; the broker sets the server bit itself when it may', (t) => {
  t.is(parseTfo('3\n'), 3);
  t.is(parseTfo('0x203'), 0x203);
  t.is(parseTfo('junk'), undefined);
  t.is(parseTfo(undefined), undefined);
  t.is(tfoCheck('3\n', false).status, 'ok');
  t.is(tfoCheck('0x603', false).status, 'ok', 'other bits do not matter');
  const clientOnly = tfoCheck('1\n', true);
  t.is(clientOnly.status, 'ok', 'the default value, as root: the broker adds 0x2');
  t.regex(clientOnly.detail, /the broker sets it at start/);
  t.regex(clientOnly.detail, /leaves it set after it stops/, 'the broker does not restore the value it found');
  t.regex(tfoCheck('3', true).detail, /client and server bits set \(a broker that finds 0x2 missing sets it and leaves it set after it stops/);
  const unprivileged = tfoCheck('1\n', false);
  t.is(unprivileged.status, 'warn');
  t.regex(unprivileged.fix!, /sysctl -w net\.ipv4\.tcp_fastopen=3/);
  const serverOnly = tfoCheck('2', true);
  t.is(serverOnly.status, 'warn');
  t.regex(serverOnly.detail, /no client bit/);
  t.regex(tfoCheck('0x200', true).fix!, /tcp_fastopen=515/, 'the fix keeps the bits that are set');
  t.is(tfoCheck(undefined, true).status, 'warn');
  t.regex(tfoCheck('3', false).detail, /no cookies needed/);
});

test('capabilities: CapEff parse; setns and net admin are needed, root expected', (t) => {
  const all = parseCapEff('Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n');
  t.is(all, 0x1fffeffffffn);
  t.is(privilegesCheck(0, all).status, 'ok');
  const bit = (n: number) => 1n << BigInt(n);
  t.is(privilegesCheck(0, all & ~bit(CAP_SYS_ADMIN)).status, 'fail');
  t.regex(privilegesCheck(0, all & ~bit(CAP_SYS_ADMIN)).detail, /CAP_SYS_ADMIN.*setns/);
  t.is(privilegesCheck(0, all & ~bit(CAP_NET_ADMIN)).status, 'fail');
  t.is(privilegesCheck(1000, 0n).status, 'fail');
  t.regex(privilegesCheck(1000, 0n).fix!, /as root/);
  t.is(privilegesCheck(1000, bit(CAP_SYS_ADMIN) | bit(CAP_NET_ADMIN) | bit(CAP_BPF)).status, 'warn');
  t.is(parseCapEff('no such line'), 0n);
});

test('steering probe: a program that does not load is a warning naming the fallback', (t) => {
  t.is(steeringCheck('', '', true).status, 'ok');
  t.is(steeringCheck('', 'cannot load', false).status, 'ok');
  const auth = steeringCheck('', 'cannot load the steering program: Invalid argument', true);
  t.is(auth.status, 'warn');
  t.regex(auth.detail, /sf_steer_auth.*hands every connection over itself/);
  const plain = steeringCheck('cannot load the steering program: Operation not permitted', 'x', false);
  t.is(plain.status, 'warn');
  t.regex(plain.fix!, /CAP_BPF/);
  t.is(steeringCheck(undefined, undefined, false).status, 'skip');
});

test('confinement: a broker without its guard, or a host where it cannot attach, fails with what it means', (t) => {
  t.is(confinementCheck('').status, 'ok');
  t.is(confinementCheck(undefined, '').status, 'ok', 'a running broker with its guard');
  const running = confinementCheck(undefined, 'cannot attach sf_connect4 to the cgroup v2 root: Operation not permitted');
  t.is(running.status, 'fail');
  t.regex(running.detail, /sf_connect4.*no host socket is handed to any container/);
  const probe = confinementCheck('the kernel does not confine a marked socket: listen() after a disconnect succeeded');
  t.is(probe.status, 'fail');
  t.regex(probe.fix!, /cgroup v2/);
  t.is(confinementCheck(undefined).status, 'skip');
});

test('state dir mode bits: root-owned, not group/other-writable; control socket not open to others', (t) => {
  const dir = (mode: number, uid = 0) => ({ exists: true, isDir: true, isSocket: false, uid, mode: 0o040000 | mode });
  const none = { exists: false };
  const base = { containers: none, socket: none, writable: true };
  t.is(stateDirCheck('/run/sf', { ...base, dir: dir(0o755) }).status, 'ok');
  const closed = stateDirCheck('/run/sf', { ...base, dir: dir(0o700) });
  t.is(closed.status, 'warn', 'non-root processes could not reach their sockets');
  t.regex(closed.detail, /non-root processes .* cannot reach their broker sockets/);
  t.is(stateDirCheck('/run/sf', { ...base, dir: dir(0o755), containers: dir(0o711) }).status, 'ok');
  const oldContainers = stateDirCheck('/run/sf', { ...base, dir: dir(0o755), containers: dir(0o700) });
  t.is(oldContainers.status, 'warn');
  t.regex(oldContainers.detail, /\/run\/sf\/containers is mode 700/);
  const open = stateDirCheck('/run/sf', { ...base, dir: dir(0o777) });
  t.is(open.status, 'fail');
  t.regex(open.detail, /mode 777 is writable by anyone/);
  t.is(open.fix, 'chmod go-w /run/sf');
  t.regex(stateDirCheck('/run/sf', { ...base, dir: dir(0o775) }).detail, /writable by its group/);
  t.is(stateDirCheck('/run/sf', { ...base, dir: dir(0o1777) }).status, 'fail', 'a sticky bit does not stop new sockets');
  const foreign = stateDirCheck('/run/sf', { ...base, dir: dir(0o755, 1000) });
  t.is(foreign.status, 'fail');
  t.regex(foreign.fix!, /chown root:root \/run\/sf/);
  t.is(stateDirCheck('/run/sf', { ...base, dir: dir(0o755), containers: dir(0o777) }).status, 'fail');
  const sock = (mode: number) => ({ exists: true, isDir: false, isSocket: true, uid: 0, mode: 0o140000 | mode });
  t.is(stateDirCheck('/run/sf', { ...base, dir: dir(0o755), socket: sock(0o660) }).status, 'ok');
  t.regex(stateDirCheck('/run/sf', { ...base, dir: dir(0o755), socket: sock(0o660) }).detail, /control socket mode 660/);
  const worldSock = stateDirCheck('/run/sf', { ...base, dir: dir(0o755), socket: sock(0o666) });
  t.is(worldSock.status, 'fail');
  t.regex(worldSock.fix!, /chmod 660/);
  t.is(stateDirCheck('/run/sf', { ...base, dir: none }).status, 'ok');
  const cannot = stateDirCheck('/run/sf', { ...base, dir: none, creatable: '/run is not writable by this user (EACCES)' });
  t.is(cannot.status, 'fail');
  t.regex(cannot.fix!, /install -d -m 755 \/run\/sf/);
  t.is(stateDirCheck('/run/sf', { ...base, dir: { exists: true, isDir: false, uid: 0, mode: 0o100644 } }).status, 'fail');
});

test('cluster key sizes and modes', (t) => {
  const dir = tmp();
  const key = (name: string, content: Buffer | string, mode = 0o600) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, content, { mode });
    fs.chmodSync(f, mode);
    return f;
  };
  t.is(clusterKeyCheck(undefined).status, 'skip');
  const short = clusterKeyCheck(key('short', 'secret\n'));
  t.is(short.status, 'fail');
  t.regex(short.detail, /holds 7 bytes; it needs 16-64/);
  t.regex(short.fix!, /head -c 32 \/dev\/urandom/);
  t.is(clusterKeyCheck(key('16', Buffer.alloc(16, 7))).status, 'ok');
  t.regex(clusterKeyCheck(key('64', Buffer.alloc(64, 7))).detail, /64 bytes/);
  t.is(clusterKeyCheck(key('65', Buffer.alloc(65, 7))).status, 'fail');
  t.regex(clusterKeyCheck(key('hex', `${'ab'.repeat(32)}\n`)).detail, /32 bytes/, 'hex text');
  const readable = clusterKeyCheck(key('644', Buffer.alloc(32, 7), 0o644));
  t.is(readable.status, 'warn');
  t.is(readable.fix, `chmod 600 ${path.join(dir, '644')}`);
  t.is(clusterKeyCheck(path.join(dir, 'missing')).status, 'fail');
  const good = key('good', Buffer.alloc(32, 7));
  const mismatch = clusterKeyCheck(good, { etcd: { name: '/slimfast/v1/cluster-key', fingerprint: 'bbbbbbbbbbbb' } });
  t.is(mismatch.status, 'warn', 'the file is not the key brokers without --cluster-key take from etcd');
  t.regex(mismatch.detail, /is not the key in etcd at \/slimfast\/v1\/cluster-key \(fingerprint bbbbbbbbbbbb\)/);
  t.is(clusterKeyCheck(good, { etcd: { name: '/slimfast/v1/cluster-key', absent: true } }).status, 'ok');
  fs.rmSync(dir, { recursive: true, force: true });
});

test("cluster key: the running broker's (insecure host keys warn), or etcd's shared one", (t) => {
  const health = (h: Partial<HealthMsg>) => ({ headerAuth: 'host keys', clusterKeySource: '', clusterKeyFingerprint: '', ...h }) as HealthMsg;
  const insecure = clusterKeyCheck(undefined, { running: health({ headerAuth: 'insecure host keys' }) });
  t.is(insecure.status, 'warn');
  t.regex(insecure.detail, /no cluster key \(--insecure-host-keys\).*can then pose as this host/);
  t.regex(
    insecure.fix!,
    /head -c 32 \/dev\/urandom > \/etc\/slimfast\/cluster\.key && chmod 600 \/etc\/slimfast\/cluster\.key.*--cluster-key \/etc\/slimfast\/cluster\.key instead of --insecure-host-keys/,
  );
  const keyed = health({ headerAuth: 'cluster key', clusterKeySource: 'etcd /slimfast/v1/cluster-key', clusterKeyFingerprint: 'aaaaaaaaaaaa' });
  const fromEtcd = clusterKeyCheck(undefined, { running: keyed, etcd: { name: '/slimfast/v1/cluster-key', fingerprint: 'aaaaaaaaaaaa' } });
  t.is(fromEtcd.status, 'ok');
  t.regex(fromEtcd.detail, /signs and checks every header with the cluster key from etcd \/slimfast\/v1\/cluster-key \(fingerprint aaaaaaaaaaaa\)/);
  const changed = clusterKeyCheck(undefined, { running: keyed, etcd: { name: '/slimfast/v1/cluster-key', fingerprint: 'bbbbbbbbbbbb' } });
  t.is(changed.status, 'warn', 'etcd holds another key than the broker signs with');
  t.is(clusterKeyCheck(undefined, { running: health({}) }).status, 'ok', 'a lone host needs none');
  t.is(clusterKeyCheck(undefined, { etcd: { name: '/k', absent: true } }).status, 'ok');
  t.regex(clusterKeyCheck(undefined, { etcd: { name: '/k', absent: true } }).detail, /the first broker started without --cluster-key creates one/);
  const bad = clusterKeyCheck(undefined, { etcd: { name: '/k', bad: 'not 16-64 bytes as hex digits: 5 characters' } });
  t.is(bad.status, 'fail');
  t.regex(bad.fix!, /etcdctl del \/k/);
  t.is(clusterKeyCheck(undefined, { etcd: { name: '/k', error: 'no answer' } }).status, 'skip');
  t.regex(clusterKeyCheck(undefined).detail, /--peers naming other hosts need one, or --insecure-host-keys/);
});

test('port holders from ss; the broker of the state dir counts as ok', (t) => {
  const ss =
    'LISTEN 0      511        127.0.0.1:4800      0.0.0.0:*    users:(("node",pid=4242,fd=21))\n' +
    'LISTEN 0      4096         0.0.0.0:4800      0.0.0.0:*\n';
  t.deepEqual(parseSsListeners(ss), [
    { local: '127.0.0.1:4800', pid: 4242, command: 'node' },
    { local: '0.0.0.0:4800', pid: undefined, command: undefined },
  ]);
  const health = { hostIp: '192.168.77.1', port: 4800, pid: 77 } as HealthMsg;
  const base = { port: 4800, holders: [], addresses: ['127.0.0.1', '10.0.0.5'] };
  t.is(portCheck({ ...base }).status, 'ok');
  const served = portCheck({ ...base, hostIp: '192.168.77.1', bindError: 'EADDRINUSE', broker: health });
  t.is(served.status, 'ok');
  t.regex(served.detail, /served by the SlimFast broker of the state dir, pid 77/);
  const held = portCheck({ ...base, hostIp: '127.0.0.1', bindError: 'EADDRINUSE', holders: parseSsListeners(ss).slice(0, 1) });
  t.is(held.status, 'fail');
  t.regex(held.detail, /in use by pid 4242 \(node\)/);
  t.regex(held.fix!, /stop pid 4242, or run the broker on another --port/);
  const hung = portCheck({ ...base, bindError: 'EADDRINUSE', holders: parseSsListeners(ss).slice(0, 1), stateDirPid: 4242 });
  t.regex(hung.detail, /the broker of the state dir, which does not answer/);
  const notMine = portCheck({ ...base, hostIp: '192.0.2.1', bindError: 'EADDRNOTAVAIL' });
  t.is(notMine.status, 'fail');
  t.regex(notMine.fix!, /127\.0\.0\.1, 10\.0\.0\.5/);
  t.is(portCheck({ ...base, hostIp: '192.168.77.1', broker: health }).status, 'warn', 'the broker serves it, but not in this namespace');
  t.regex(
    portCheck({ ...base, hostIp: '192.168.77.1', bindError: 'EADDRNOTAVAIL', broker: health }).detail,
    /192\.168\.77\.1 is no address in this network namespace/,
  );
});

test('broker facts', (t) => {
  t.is(brokerCheck({ dir: '/run/sf', socketExists: false }).status, 'skip');
  t.regex(brokerCheck({ dir: '/run/sf', socketExists: false, pidFilePid: 9, pidAlive: false }).detail, /left its pid file/);
  t.is(brokerCheck({ dir: '/run/sf', socketExists: true, pidFilePid: 9, pidAlive: true, error: 'deadline' }).status, 'fail');
  t.is(brokerCheck({ dir: '/run/sf', socketExists: false, pidFilePid: 9, pidAlive: true }).status, 'warn');
});

test("descriptors: the broker's limit from /proc/PID/limits; low or nearly used up warns", (t) => {
  const limits =
    'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1048576              1048576              files     \n';
  t.deepEqual(parseNofile(limits), [1048576, 1048576]);
  t.deepEqual(parseNofile('Max open files            unlimited            unlimited            files\n'), [Infinity, Infinity]);
  t.is(parseNofile('nothing'), undefined);
  const fine = descriptorsCheck({ broker: { pid: 7, open: 41, soft: 1048576, hard: 1048576 } });
  t.is(fine.status, 'ok');
  t.is(fine.detail, 'pid 7: 41 of 1048576 descriptors open (0 %)');
  const low = descriptorsCheck({ broker: { pid: 7, open: 41, soft: 1024, hard: 4096 } });
  t.is(low.status, 'warn');
  t.regex(low.detail, /below 65536 makes the broker scale its per-container limits down/);
  t.regex(low.fix!, /LimitNOFILE=1048576/);
  const busy = descriptorsCheck({ broker: { pid: 7, open: 900_000, soft: 1048576, hard: 1048576 } });
  t.is(busy.status, 'warn');
  t.regex(busy.detail, /900000 of 1048576 descriptors open \(86 %\): near the limit/);
  t.is(descriptorsCheck({ broker: { pid: 7, error: 'EACCES' } }).status, 'warn');
  t.is(descriptorsCheck({ hard: 4096, nrOpen: 1048576, canRaise: true }).status, 'ok', 'root raises the hard limit');
  t.regex(descriptorsCheck({ hard: 4096, nrOpen: 1048576, canRaise: true }).detail, /would raise RLIMIT_NOFILE to 1048576/);
  t.is(descriptorsCheck({ hard: 4096, nrOpen: 1048576, canRaise: false }).status, 'warn', 'without CAP_SYS_RESOURCE the hard limit stays');
  t.is(descriptorsCheck({}).status, 'skip');
});

// ------------------------------------------------------------------------------------------------
// The real command on this machine (one at a time: some of them time things)

test.serial('on this machine everything needed is there: exit 0, every check listed', async (t) => {
  const r = await doctor(['--state-dir', stateDir(), '--port', String(await freePort())]);
  t.is(r.exitCode, 0, r.stdout + r.stderr);
  t.true(r.report!.ok);
  t.deepEqual(
    r.report!.checks.map((c) => c.name),
    NAMES,
  );
  for (const c of r.report!.checks) t.true(['ok', 'warn', 'skip'].includes(c.status), `${c.name}: ${c.status} ${c.detail}`);
  for (const name of [
    'node',
    'privileges',
    'addon',
    'bpf-steering',
    'preload',
    'runc',
    'slimfast-runc',
    'seccomp-keeper',
    'state-dir',
    'reserved-port',
  ])
    t.is(r.get(name).status, 'ok', name);
  t.regex(r.get('runc').detail, /runc version/);
  t.is(r.get('etcd').status, 'skip');
  t.is(r.get('broker').status, 'skip');
});

test.serial('the table for people: every check, then what to fix', async (t) => {
  const dir = stateDir(0o777);
  const r = await execa(process.execPath, [CLI, 'doctor', '--state-dir', dir, '--port', String(await freePort())], {
    reject: false,
    timeout: 30_000,
  });
  t.is(r.exitCode, 1);
  for (const name of NAMES) t.regex(String(r.stdout), new RegExp(`^  ${name} +(ok|warn|fail|skip) `, 'm'), name);
  t.regex(String(r.stdout), new RegExp(`\\nto fix:\\n(.*\\n)*  state-dir: chmod go-w ${dir}\\n`));
  t.regex(String(r.stdout), /1 check\(s\) failed/);
});

test.serial('a state dir anyone can write fails with the fix', async (t) => {
  const dir = stateDir(0o777);
  const r = await doctor(['--state-dir', dir, '--port', String(await freePort())]);
  t.is(r.exitCode, 1);
  t.false(r.report!.ok);
  t.is(r.get('state-dir').status, 'fail');
  t.regex(r.get('state-dir').detail, /mode 777 is writable by anyone/);
  t.is(r.get('state-dir').fix, `chmod go-w ${dir}`);
  t.deepEqual(
    r.report!.checks.filter((c) => c.status === 'fail').map((c) => c.name),
    ['state-dir'],
  );
});

test.serial('a reserved port held by another process fails and names it', async (t) => {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  try {
    const r = await doctor(['--state-dir', stateDir(), '--host-ip', '127.0.0.1', '--port', String(port)]);
    t.is(r.exitCode, 1);
    const c = r.get('reserved-port');
    t.is(c.status, 'fail');
    t.regex(c.detail, new RegExp(`127\\.0\\.0\\.1:${port} is in use by pid ${process.pid} \\(node\\)`));
    t.regex(c.fix!, new RegExp(`stop pid ${process.pid}`));
    const other = await doctor(['--state-dir', stateDir(), '--host-ip', '192.0.2.1', '--port', String(port)]);
    t.is(other.get('reserved-port').status, 'fail');
    t.regex(other.get('reserved-port').detail, /192\.0\.2\.1 is not an address of this host/);
  } finally {
    srv.close();
  }
});

test.serial('a runc the wrapper cannot run fails with the fix', async (t) => {
  const missing = path.join(scratch, 'no-such-runc');
  const r = await doctor(['--state-dir', stateDir(), '--port', String(await freePort())], { SLIMFAST_RUNC: missing });
  t.is(r.exitCode, 1);
  t.is(r.get('runc').status, 'fail');
  t.regex(r.get('runc').detail, new RegExp(`SLIMFAST_RUNC=${missing} is not an executable file`));
  t.regex(r.get('runc').fix!, /install runc .* or point SLIMFAST_RUNC or "runc" in/);
  t.not(r.get('slimfast-runc').status, 'fail', 'one failure for one cause');

  const config = path.join(scratch, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ runc: missing }));
  const r2 = await doctor(['--state-dir', stateDir(), '--port', String(await freePort())], { SLIMFAST_CONFIG: config });
  t.is(r2.get('runc').status, 'fail');
  t.regex(r2.get('runc').detail, new RegExp(`"runc": "${missing}" in ${config}`));
  t.regex(r2.get('config').detail, /runc/);

  const broken = path.join(scratch, 'broken-runc');
  fs.writeFileSync(broken, '#!/bin/sh\necho "runc: broken" >&2\nexit 3\n', { mode: 0o755 });
  const r3 = await doctor(['--state-dir', stateDir(), '--port', String(await freePort())], { SLIMFAST_RUNC: broken });
  t.is(r3.get('runc').status, 'fail');
  t.regex(r3.get('runc').detail, /--version exits 3: runc: broken/);
  t.not(r3.get('slimfast-runc').status, 'fail', "the failure is runc's, not the launcher's");
});

test.serial('a config file that is not JSON fails', async (t) => {
  const config = path.join(scratch, 'bad-config.json');
  fs.writeFileSync(config, '{"stateDir": ');
  const r = await doctor(['--port', String(await freePort())], { SLIMFAST_CONFIG: config });
  t.is(r.exitCode, 1);
  t.is(r.get('config').status, 'fail');
  t.regex(r.get('config').detail, /is not valid JSON/);
  t.regex(r.get('config').fix!, /fix or remove/);
});

test.serial('etcd on a closed port or one that never answers fails in a few seconds', async (t) => {
  const closed = await doctor(['--state-dir', stateDir(), '--port', String(await freePort()), '--etcd', 'http://127.0.0.1:1']);
  t.is(closed.exitCode, 1);
  const c = closed.get('etcd');
  t.is(c.status, 'fail');
  t.regex(c.detail, /no answer from http:\/\/127\.0\.0\.1:1 \(.*ECONNREFUSED/);
  t.regex(c.fix!, /start etcd there, or fix --etcd/);
  t.true(c.ms < 5000, `${c.ms} ms`);

  // Accepts connections and says nothing: the TCP handshake succeeds, gRPC's never does.
  const silent = net.createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as net.AddressInfo;
  try {
    const r = await doctor(['--state-dir', stateDir(), '--port', String(await freePort()), '--etcd', `http://127.0.0.1:${port}`]);
    t.is(r.exitCode, 1);
    t.is(r.get('etcd').status, 'fail');
    t.regex(r.get('etcd').detail, /no answer in 3 s/);
    t.true(r.get('etcd').ms < 5000, `${r.get('etcd').ms} ms`);
    t.true(r.ms < 15_000, `the whole command: ${r.ms} ms`);
  } finally {
    silent.close();
  }
  const bad = await doctor(['--state-dir', stateDir(), '--etcd', '127.0.0.1:2379']);
  t.is(bad.get('etcd').status, 'fail');
  t.regex(bad.get('etcd').detail, /expected a URL like http:/);
});

test.serial('a short cluster key fails; a good one passes', async (t) => {
  const short = path.join(scratch, 'short.key');
  fs.writeFileSync(short, 'secret\n', { mode: 0o600 });
  const r = await doctor(['--state-dir', stateDir(), '--port', String(await freePort()), '--cluster-key', short]);
  t.is(r.exitCode, 1);
  t.is(r.get('cluster-key').status, 'fail');
  t.regex(r.get('cluster-key').detail, /holds 7 bytes/);
  const good = path.join(scratch, 'good.key');
  fs.writeFileSync(good, Buffer.alloc(32, 9), { mode: 0o600 });
  const r2 = await doctor(['--state-dir', stateDir(), '--port', String(await freePort()), '--cluster-key', good]);
  t.is(r2.exitCode, 0, r2.stdout);
  t.is(r2.get('cluster-key').status, 'ok');
});

test.serial('usage errors exit 2', async (t) => {
  for (const args of [['--port', '0'], ['--host-ip', 'nowhere'], ['--etcd-prefix', '/x'], ['--bogus']]) {
    const r = await execa(process.execPath, [CLI, 'doctor', ...args], { reject: false, timeout: 20_000 });
    t.is(r.exitCode, 2, args.join(' '));
    t.regex(String(r.stderr), /usage:/);
  }
  const help = await execa(process.execPath, [CLI, '--help'], { reject: false });
  t.regex(String(help.stdout), /doctor \[--state-dir DIR\]/);
});

// ------------------------------------------------------------------------------------------------
// Against real brokers: etcd and a cluster key, in namespaces this test creates

test.serial('with a running broker: its port is served by it, etcd answers with the cluster config', async (t) => {
  const topo = await Topology.create({ hosts: 2, containers: [0, 0], etcd: {}, clusterKey: 'file' });
  try {
    const [h] = topo.hosts;
    const health = (await topo.status(h)).health as HealthMsg;
    const inHost = ['ip', 'netns', 'exec', h.ns];
    const args = ['--state-dir', h.stateDir, '--etcd', topo.etcdUrl, '--cluster-key', topo.clusterKeyFile!];
    const r = await doctor(args, {}, inHost);
    t.is(r.exitCode, 0, r.stdout + r.stderr);
    t.is(r.get('broker').status, 'ok');
    t.regex(
      r.get('broker').detail,
      new RegExp(`pid ${health.pid} serves .*host ${h.ip}:${topo.port}.*membership etcd \\(connected\\), headers cluster key`),
    );
    // The broker raised its soft limit to the hard one, and (with CAP_SYS_RESOURCE) that to 1048576.
    const self = fs.readFileSync('/proc/self/limits', 'utf8');
    const hard = Number(/^Max open files\s+\S+\s+(\d+)/m.exec(self)![1]);
    const canRaise = ((parseCapEff(fs.readFileSync('/proc/self/status', 'utf8')) >> 24n) & 1n) === 1n;
    t.is(health.fdLimit, canRaise ? Math.max(hard, Math.min(Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8')), 1048576)) : hard);
    t.is(r.get('descriptors').status, health.fdLimit >= 65536 ? 'ok' : 'warn', r.get('descriptors').detail);
    t.regex(r.get('descriptors').detail, new RegExp(`^pid ${health.pid}: \\d+ of ${health.fdLimit} descriptors open`));
    t.is(r.get('reserved-port').status, 'ok');
    t.regex(r.get('reserved-port').detail, new RegExp(`${h.ip}:${topo.port} is served by the SlimFast broker of the state dir, pid ${health.pid}`));
    t.is(r.get('etcd').status, 'ok');
    t.regex(r.get('etcd').detail, /answers; \/slimfast\/v1\/config = \{"network":"10\.200\.0\.0\/16","subnetLen":24\}; 2 host\(s\) hold a subnet/);
    t.is(r.get('cluster-key').status, 'ok');
    t.is(r.get('state-dir').status, 'ok');
    t.regex(r.get('state-dir').detail, /control socket mode 660/);

    const explicit = await doctor(['--state-dir', h.stateDir, '--host-ip', h.ip, '--port', String(topo.port)], {}, inHost);
    t.regex(explicit.get('reserved-port').detail, new RegExp(`served by the SlimFast broker of the state dir, pid ${health.pid}`));

    // From the root namespace the broker's port is free: said, not failed.
    const outside = await doctor(['--state-dir', h.stateDir]);
    t.is(outside.get('reserved-port').status, 'warn');
    t.regex(
      outside.get('reserved-port').detail,
      new RegExp(`pid ${health.pid}\\) says it serves ${h.ip}:${topo.port}, but ${h.ip} is no address in this network namespace`),
    );

    // An address on the underlay nobody holds: the SYN goes nowhere (no ARP answer).
    const hole = await doctor(['--state-dir', h.stateDir, '--etcd', 'http://192.168.77.200:2379'], {}, inHost);
    t.is(hole.exitCode, 1);
    t.is(hole.get('etcd').status, 'fail');
    t.true(hole.get('etcd').ms < 5000, `${hole.get('etcd').ms} ms`);

    const prefix = await doctor(['--state-dir', h.stateDir, '--etcd', topo.etcdUrl, '--etcd-prefix', '/elsewhere'], {}, inHost);
    t.is(prefix.get('etcd').status, 'warn');
    t.regex(prefix.get('etcd').detail, /no SlimFast network at \/elsewhere\/config/);
    t.regex(prefix.get('etcd').fix!, /--cluster-cidr/);
    // Without --cluster-key: the key the running broker signs with.
    t.is(prefix.get('cluster-key').status, 'ok');
    t.regex(
      prefix.get('cluster-key').detail,
      new RegExp(
        `the running broker signs and checks every header with the cluster key from file ${topo.clusterKeyFile} \\(fingerprint [0-9a-f]{12}\\)`,
      ),
    );
  } finally {
    await topo.destroy();
  }
});
